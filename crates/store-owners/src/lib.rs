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
//! - [`tables`]: the nine table specs and their typed handles (mailbox, history, channels,
//!   config, threads, tasks).
//! - [`stores`]: [`Stores::open`], which opens all nine tables of a data dir under a lock.
//! - [`error`]: typed errors of calls, maintenance commands and opening.
//!
//! The `testing` feature adds the test hooks of online compaction (`OnlineConfig::hook`,
//! `StepHook`, `Step`); shipped builds leave it off.

pub mod error;
pub mod online;
pub mod owner;
pub mod report;
pub mod shared;
pub mod stores;
pub mod tables;

pub use error::{CallError, MaintenanceError, OpenStoresError, panic_text};
pub use online::OnlineConfig;
#[cfg(feature = "testing")]
pub use online::{Step, StepHook};
pub use owner::{OwnerConfig, OwnerHandle, PendingWrite};
pub use report::{CompactReport, ReplaceReport, ReplaceRequest};
pub use shared::{Shared, TableStatus};
pub use stores::{Stores, StoresOptions};
pub use tables::TABLE_NAMES;
