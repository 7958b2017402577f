//! An in-memory work queue and dead-letter queue, for unit tests of the worker: it hands
//! out the bodies it was given, records what it was asked to do (receives, deletes,
//! visibility changes, dead letters), and has knobs for the failures the worker must
//! survive (failed or refused visibility changes, a small or refusing dead-letter queue).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::ports::{DeadLetter, MessageAttribute, Queue, Received, StoreError, StoreErrorKind};
use crate::worker::dead_letter::message_bytes;

/// What the queue was asked to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Delete(Vec<String>),
    /// A visibility change that succeeded: message id, timeout in seconds.
    Visibility(String, u64),
    /// Message id, error class and error of a dead letter (from its attributes), taken or
    /// refused.
    DeadLetter(String, String, String),
}

/// One dead letter sent, taken or refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Letter {
    pub body: String,
    pub attributes: Vec<MessageAttribute>,
    pub accepted: bool,
}

/// The `n`th message handed out: id `m{n}`, first delivery.
pub fn received(n: usize, body: String) -> Received {
    Received {
        message_id: format!("m{n}"),
        receipt_handle: format!("r{n}"),
        body,
        receive_count: 1,
        received_at: std::time::Instant::now(),
        sent_at_ms: None,
    }
}

/// Hands out messages whose bodies it was given ([`MemoryQueue::new`]), then nothing
/// (a receive with nothing to hand out waits its `wait`). Every delete succeeds.
pub struct MemoryQueue {
    /// When the queue was made: [`MemoryQueue::extensions`] counts from here.
    created: Instant,
    bodies: Mutex<Vec<String>>,
    handed: AtomicUsize,
    /// (max messages, visibility seconds) of each receive.
    pub asked: Mutex<Vec<(i32, u64)>>,
    calls: Mutex<Vec<Call>>,
    /// Visibility changes that succeeded: (seconds since `created`, timeout seconds).
    extensions: Mutex<Vec<(u64, u64)>>,
    /// How many visibility changes fail next (throttled, a transient error).
    visibility_failures: Mutex<u32>,
    /// After this many successful visibility changes, the receipt handle is gone.
    gone_after: usize,
    /// The largest dead letter taken (body and attributes, as SQS counts); none if unset.
    dead_letter_limit: Option<usize>,
    /// The dead-letter queue refuses every message with this kind of error.
    refuse_dead_letters: Option<StoreErrorKind>,
    letters: Mutex<Vec<Letter>>,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        MemoryQueue {
            created: Instant::now(),
            bodies: Mutex::new(Vec::new()),
            handed: AtomicUsize::new(0),
            asked: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
            extensions: Mutex::new(Vec::new()),
            visibility_failures: Mutex::new(0),
            gone_after: usize::MAX,
            dead_letter_limit: None,
            refuse_dead_letters: None,
            letters: Mutex::new(Vec::new()),
        }
    }
}

impl MemoryQueue {
    /// A queue that hands out `bodies` in order.
    pub fn new(bodies: Vec<&str>) -> MemoryQueue {
        MemoryQueue {
            bodies: Mutex::new(bodies.into_iter().rev().map(str::to_owned).collect()),
            ..MemoryQueue::default()
        }
    }

    /// Fails the next `n` visibility changes as throttled (a transient error).
    pub fn failing_visibility_changes(self, n: u32) -> MemoryQueue {
        MemoryQueue {
            visibility_failures: Mutex::new(n),
            ..self
        }
    }

    /// After `extensions` successful visibility changes, says the message is gone
    /// (`NotFound`, as SQS does for a receipt handle no longer valid).
    pub fn gone_after(self, extensions: usize) -> MemoryQueue {
        MemoryQueue {
            gone_after: extensions,
            ..self
        }
    }

    /// Takes dead letters up to `bytes` (body and attributes, as SQS counts); a larger one
    /// is refused as SQS refuses it.
    pub fn dead_letter_limit(self, bytes: usize) -> MemoryQueue {
        MemoryQueue {
            dead_letter_limit: Some(bytes),
            ..self
        }
    }

    /// Refuses every dead letter with an error of `kind` (as a dead-letter queue that is
    /// gone, or unreachable, would).
    pub fn refusing_dead_letters(self, kind: StoreErrorKind) -> MemoryQueue {
        MemoryQueue {
            refuse_dead_letters: Some(kind),
            ..self
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The ids of every message deleted, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .flat_map(|c| match c {
                Call::Delete(ids) => ids,
                _ => Vec::new(),
            })
            .collect()
    }

    /// Visibility changes that succeeded: (seconds since the queue was made, timeout
    /// seconds).
    pub fn extensions(&self) -> Vec<(u64, u64)> {
        self.extensions.lock().unwrap().clone()
    }

    /// The dead letters taken: body and attributes.
    pub fn accepted(&self) -> Vec<(String, Vec<MessageAttribute>)> {
        let letters = self.letters.lock().unwrap();
        letters
            .iter()
            .filter(|l| l.accepted)
            .map(|l| (l.body.clone(), l.attributes.clone()))
            .collect()
    }

    /// How many dead letters were sent, taken or refused.
    pub fn tries(&self) -> usize {
        self.letters.lock().unwrap().len()
    }
}

impl Queue for MemoryQueue {
    async fn receive(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, StoreError> {
        self.asked.lock().unwrap().push((max, visibility.as_secs()));
        let mut out = Vec::new();
        while out.len() < max as usize {
            let Some(body) = self.bodies.lock().unwrap().pop() else {
                break;
            };
            let n = self.handed.fetch_add(1, Ordering::SeqCst);
            out.push(received(n, body));
        }
        if out.is_empty() {
            tokio::time::sleep(wait).await;
        }
        Ok(out)
    }

    async fn delete_batch(&self, messages: &[Received]) -> Result<Vec<String>, StoreError> {
        let ids = messages.iter().map(|m| m.message_id.clone()).collect();
        self.calls.lock().unwrap().push(Call::Delete(ids));
        Ok(Vec::new())
    }

    async fn change_visibility(
        &self,
        message: &Received,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        {
            let mut failures = self.visibility_failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(StoreError::new(
                    "SQS ChangeMessageVisibility",
                    StoreErrorKind::Transient,
                    "throttled",
                ));
            }
        }
        let mut extensions = self.extensions.lock().unwrap();
        if extensions.len() >= self.gone_after {
            return Err(StoreError::new(
                "SQS ChangeMessageVisibility",
                StoreErrorKind::NotFound,
                "gone",
            ));
        }
        extensions.push((self.created.elapsed().as_secs(), timeout.as_secs()));
        let call = Call::Visibility(message.message_id.clone(), timeout.as_secs());
        self.calls.lock().unwrap().push(call);
        Ok(())
    }

    async fn dead_letter(&self, letter: &DeadLetter<'_>) -> Result<(), StoreError> {
        let attribute = |name: &str| {
            letter
                .attributes
                .iter()
                .find(|a| a.name == name)
                .map(|a| a.value.clone())
                .unwrap_or_default()
        };
        let call = Call::DeadLetter(
            attribute("lakeworker.message_id"),
            attribute("lakeworker.error_class"),
            attribute("lakeworker.error"),
        );
        self.calls.lock().unwrap().push(call);
        let fits = self
            .dead_letter_limit
            .is_none_or(|limit| message_bytes(letter.body, &letter.attributes) <= limit);
        let refusal = match self.refuse_dead_letters {
            Some(kind) => Some(StoreError::new("SQS SendMessage", kind, "refused")),
            None if !fits => Some(StoreError::new(
                "SQS SendMessage",
                StoreErrorKind::Rejected,
                "InvalidParameterValue: Message must be shorter than the limit",
            )),
            None => None,
        };
        self.letters.lock().unwrap().push(Letter {
            body: letter.body.to_owned(),
            attributes: letter.attributes.clone(),
            accepted: refusal.is_none(),
        });
        refusal.map_or(Ok(()), Err)
    }
}
