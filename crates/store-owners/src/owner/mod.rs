//! The generic owner: one named thread per table that owns its store, serves commands from a
//! bounded channel, commits queued writes together (group commit), and runs the maintenance
//! commands (metrics, online and in-place compaction, snapshots, file replacement, integrity).
//!
//! # Layout
//!
//! - [`handle`]: [`OwnerHandle`], the client side: start, reads, writes, [`PendingWrite`],
//!   maintenance commands.
//! - `command`: what travels on the channel (commands, read and write jobs).
//! - `thread`: the owner thread's loop: drain, serve reads, group commit, maintenance
//!   dispatch, online compaction driven between commands ([`crate::online`]).
//! - `commit`: one group of writes in one durable transaction; panics contained per job.
//! - `file`: the table file and its status: replacement, reopening after an I/O error.

mod aside;
mod command;
mod commit;
mod file;
pub mod handle;
mod journal;
mod thread;
mod watched;

pub use handle::{OwnerHandle, PendingWrite};
pub use thread::{JournalConfig, OwnerConfig};
