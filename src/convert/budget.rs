//! Keeping a conversion within its [`MemoryBudget`]: [`InFlight`] holds the rows between
//! the splitter and the writer under the budget's share; the Parquet share is kept by
//! [`super::LakeParts`] and [`super::ParquetFile`].

use std::sync::{Condvar, Mutex, MutexGuard};

pub use crate::config::MemoryBudget;

/// Bytes of rows between the splitter and the writer, under a limit. The splitter waits in
/// [`InFlight::admit`] while a chunk would not fit; the writer frees bytes as it writes.
/// Only the splitter ever waits: a typing thread or the writer waiting could deadlock the
/// ordered writer on the one chunk it needs next.
pub(super) struct InFlight {
    limit: u64,
    state: Mutex<Gate>,
    freed: Condvar,
}

#[derive(Default)]
struct Gate {
    held: u64,
    /// Splitters waiting for room (0 or 1).
    waiting: usize,
    /// A later stage stopped: nothing more will be freed.
    closed: bool,
}

impl InFlight {
    pub(super) fn new(limit: u64) -> Self {
        InFlight {
            limit,
            state: Mutex::new(Gate::default()),
            freed: Condvar::new(),
        }
    }

    fn gate(&self) -> MutexGuard<'_, Gate> {
        // A panicking holder cannot leave the counter half-updated.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until `bytes` more fit under the limit, or nothing is held (one chunk always
    /// goes, whatever its size), then holds them. False if the gate was closed.
    pub(super) fn admit(&self, bytes: u64) -> bool {
        let mut gate = self.gate();
        while !gate.closed && gate.held > 0 && gate.held.saturating_add(bytes) > self.limit {
            gate.waiting += 1;
            gate = self
                .freed
                .wait(gate)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            gate.waiting -= 1;
        }
        if gate.closed {
            return false;
        }
        gate.held = gate.held.saturating_add(bytes);
        true
    }

    /// Holds `to` instead of `from` (a chunk turned into its typed batch); never waits.
    pub(super) fn exchange(&self, from: u64, to: u64) {
        let mut gate = self.gate();
        gate.held = gate.held.saturating_sub(from).saturating_add(to);
        drop(gate);
        self.freed.notify_all();
    }

    /// Frees `bytes` (a typed batch written).
    pub(super) fn release(&self, bytes: u64) {
        self.exchange(bytes, 0);
    }

    /// Stops every wait for good: a later stage has stopped and frees nothing more.
    pub(super) fn close(&self) {
        self.gate().closed = true;
        self.freed.notify_all();
    }

    #[cfg(test)]
    pub(super) fn held(&self) -> u64 {
        self.gate().held
    }

    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.gate().waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_splitter_waits_until_the_writer_frees_room() {
        let gate = Arc::new(InFlight::new(100));
        assert!(gate.admit(60));
        assert!(gate.admit(40));
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.admit(30))
        };
        while gate.waiting() == 0 && !waiter.is_finished() {
            std::thread::yield_now();
        }
        assert!(!waiter.is_finished(), "30 more bytes do not fit yet");
        assert_eq!(gate.held(), 100);
        gate.exchange(60, 20); // a chunk typed into a smaller batch
        assert!(waiter.join().unwrap());
        assert_eq!(gate.held(), 90);
        gate.release(90);
        // With nothing held, one chunk goes whatever its size.
        assert!(gate.admit(1000));
    }

    #[test]
    fn a_closed_gate_lets_the_splitter_go() {
        let gate = Arc::new(InFlight::new(10));
        assert!(gate.admit(10));
        let waiting = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.admit(5))
        };
        gate.close();
        assert!(!waiting.join().unwrap());
        assert!(!gate.admit(1));
    }
}
