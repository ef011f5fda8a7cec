//! The nine tables of the agent-communication hub, each owned by one thread.
//!
//! # Layout
//!
//! - [`owner`]: the generic owner thread and its [`OwnerHandle`]: a bounded command channel,
//!   group commit of queued writes, panics contained per command, maintenance commands, the
//!   table file's replacement and reopening.
//! - [`online`]: online compaction by copy, driven by the owner's loop.
//! - [`report`]: what maintenance commands are asked and answer.
//! - [`shared`]: counters and status an owner publishes without a round trip; only the owner
//!   writes them.
//! - [`latency`]: the histogram of each table's group-commit latencies, published in its
//!   [`Shared`] state (counted here, exposed as Prometheus metrics by the daemon).
//! - [`tables`]: the nine table specs and their typed handles (mailbox, history, channels,
//!   config, threads, tasks).
//! - [`stores`]: [`Stores::open`], which opens all nine tables of a data dir under a lock.
//! - [`error`]: typed errors of calls, maintenance commands and opening.
//!
//! The typed handles ([`AgentMailbox`], [`AgentcomConfig`], [`TaskQueue`]...) and the records
//! they read and write ([`MailboxMessage`], [`ConfigEntry`], [`NewTask`]...) are re-exported
//! here; they also stay reachable under [`tables`].
//!
//! The `testing` feature adds the test hooks of online compaction (`OnlineConfig::hook`,
//! `StepHook`, `Step`); shipped builds leave it off.
//!
//! # Example
//!
//! Open the nine tables of a data dir, write and read through typed handles, then compact a
//! table online while it keeps serving:
//!
//! ```
//! use store_owners::{MailboxMessage, NewTask, OnlineConfig, Stores, StoresOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let stores = Stores::open(&dir.path().join("data"), StoresOptions::default())?;
//!
//! // A mailbox: enqueue, poll after the last number seen, ack what was handled.
//! let message = MailboxMessage {
//!     from: "planner".into(),
//!     body: "hello".into(),
//!     sent_at_ms: 1_700_000_000_000,
//! };
//! let seq = stores.agent_mailbox.enqueue("worker-1", message.clone())?;
//! let polled = stores.agent_mailbox.poll("worker-1", 0, 10)?;
//! assert_eq!((polled[0].seq, &polled[0].record), (seq, &message));
//! assert_eq!(stores.agent_mailbox.ack("worker-1", seq)?, 1);
//!
//! // Configuration, with a default for unset keys.
//! stores.agentcom_config.put("poll_interval", "5s", 1_700_000_000_000)?;
//! assert_eq!(stores.agentcom_config.get_or("poll_interval", "1s")?, "5s");
//! assert_eq!(stores.agentcom_config.get_or("unset", "1s")?, "1s");
//!
//! // A task: submit, hand to a worker, complete.
//! let id = stores.task_queue.submit(NewTask {
//!     kind: "summarize".into(),
//!     payload: b"thread-7".to_vec(),
//!     max_retries: 2,
//!     submitted_at_ms: 1_700_000_000_000,
//! })?;
//! let task = stores.task_queue.assign("worker-1")?.expect("one task is pending");
//! assert_eq!(task.id, id);
//! stores.task_queue.complete(id)?;
//!
//! // Online compaction: a command to the table's owner thread, which keeps serving reads
//! // and writes during the copy and pauses only for the final swap.
//! let report = stores
//!     .agentcom_config
//!     .owner()
//!     .compact_online(OnlineConfig::default())?;
//! assert_eq!(report.records, 1);
//! assert_eq!(stores.agentcom_config.get_or("poll_interval", "1s")?, "5s");
//!
//! // The same owner, by table name.
//! assert!(stores.owner("task_queue").is_some());
//!
//! // Closing waits for every owner to finish its queue and close its file.
//! stores.close();
//! # Ok(())
//! # }
//! ```
//!
//! Backups, restores, scheduled compaction and health are one level up, in the `compaction`
//! crate (`crates/compaction/src/lib.rs`): its `Maintainer` wraps these [`Stores`] and its
//! crate doc continues this example. How the crates fit together, and the invariants each
//! keeps, is in `ARCHITECTURE.md` at the root of the workspace.

pub mod error;
pub mod latency;
pub mod online;
pub mod owner;
pub mod report;
pub mod shared;
pub mod stores;
pub mod tables;

pub use error::{CallError, MaintenanceError, OpenStoresError, panic_text};
pub use latency::{COMMIT_LATENCY_BOUNDS, CommitLatency, LatencySnapshot};
pub use online::OnlineConfig;
#[cfg(feature = "testing")]
pub use online::{Step, StepHook};
pub use owner::{JournalConfig, OwnerConfig, OwnerHandle, PendingWrite};
pub use report::{CompactReport, ReplaceReport, ReplaceRequest};
pub use shared::{LogGap, LogState, Shared, TableStatus};
pub use stores::{Stores, StoresOptions};
pub use tables::TABLE_NAMES;
// The typed handles and the records a hub reads and writes through them, also reachable as
// `tables::*` and `tables::<area>::*`.
pub use tables::{
    AgentChannels, AgentMailbox, AgentcomConfig, ChannelHistory, ChannelMessage, ConfigEntry,
    DeadTask, FailOutcome, HistoryMessage, MailboxMessage, MessageHistory, NewTask, Reply,
    ReplyRecord, Sequenced, Subscription, Task, TaskDeadLetter, TaskError, TaskQueue, TaskState,
    ThreadMessage, ThreadMessages, ThreadReplies,
};
