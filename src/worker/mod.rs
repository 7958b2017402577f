//! The long-running worker: pollers receive messages, each job runs the pipeline under a
//! visibility heartbeat, and its result becomes a disposition (delete, retry later,
//! dead-letter, release). [`crate::cli::run`] wires it to AWS.
//!
//! - [`pool`]: N long-poll loops, the in-flight limit, shutdown.
//! - [`job`]: one message's job: handler, heartbeat, disposition, carrying it out.
//! - [`deleter`]: batched deletes of finished messages.
//! - [`events`]: what the worker observes, each a log line and its metrics together.
//! - [`heartbeat`]: keeps an in-flight message invisible while its job runs.
//! - [`disposition`]: what a job's result means for its message.
//! - [`dead_letter`]: sending to the dead-letter queue, with fallbacks that always end.

pub mod dead_letter;
pub mod deleter;
pub mod disposition;
pub mod events;
pub mod heartbeat;
pub mod job;
pub mod pool;
