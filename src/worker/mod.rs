//! The long-running worker: pollers receive messages, each job runs the pipeline under a
//! visibility heartbeat, and its result becomes a disposition (delete, retry later,
//! dead-letter, release). [`crate::cli::run`] wires it to AWS.
//!
//! - [`pool`]: N long-poll loops, the in-flight limit, jobs, batched deletes, shutdown.
//! - [`heartbeat`]: keeps an in-flight message invisible while its job runs.
//! - [`disposition`]: what a job's result means for its message.
//! - [`dead_letter`]: sending to the dead-letter queue, with fallbacks that always end.

pub mod dead_letter;
pub mod disposition;
pub mod heartbeat;
pub mod pool;
