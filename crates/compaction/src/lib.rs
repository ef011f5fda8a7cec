//! Orchestration of compaction, backups and recovery over the nine table owners.
//!
//! # Layout
//!
//! - [`maintainer`]: [`Maintainer`], the façade the daemon drives; one operation at a time.
//! - [`config`]: compaction and backup settings.
//! - [`events`]: the "backups" topic (publish/subscribe, never blocking maintenance).
//! - [`history`]: the last 20 compaction runs, persisted in the data dir.

pub mod config;
pub mod events;
pub mod history;
pub mod maintainer;

pub use config::{BackupConfig, CompactionConfig, MaintenanceConfig, Strategy};
pub use events::{Envelope, Event, EventBus};
pub use maintainer::Maintainer;
