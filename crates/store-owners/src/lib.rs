//! The nine tables of the agent-communication hub, each owned by one thread.
//!
//! # Layout
//!
//! - [`owner`]: the generic owner thread and its [`OwnerHandle`]: a bounded command channel,
//!   group commit of queued writes, panics contained per command, maintenance commands.
//! - [`online`]: online compaction by copy, driven by the owner's loop.
//! - [`shared`]: counters and status an owner publishes without a round trip.
//! - [`tables`]: the nine table specs and their typed handles (mailbox, history, channels,
//!   config, threads, tasks).
//! - [`stores`]: [`Stores::open`], which opens all nine tables of a data dir under a lock.
//! - [`error`]: typed errors of calls, maintenance commands and opening.

pub mod error;
pub mod online;
pub mod owner;
mod replace;
pub mod shared;
pub mod stores;
pub mod tables;

pub use error::{CallError, MaintenanceError, OpenStoresError};
pub use online::{OnlineConfig, Step, StepHook};
pub use owner::{
    CompactReport, OwnerConfig, OwnerHandle, PendingWrite, ReplaceReport, ReplaceRequest,
};
pub use shared::{Shared, TableStatus};
pub use stores::{Stores, StoresOptions};
pub use tables::TABLE_NAMES;
