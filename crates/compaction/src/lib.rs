//! Orchestration of compaction, backups and recovery over the nine table owners.
//!
//! # Layout
//!
//! - [`maintainer`]: [`Maintainer`], the façade the daemon drives; one operation at a time.
//! - [`config`]: compaction and backup settings.
//! - [`events`]: the "backups" topic (publish/subscribe, never blocking maintenance).
//! - [`history`]: the last 20 compaction runs, persisted in the data dir.
//! - [`backup`]: hot, verified backups with manifests, retention and a schedule.
//! - [`recovery`]: restore from a backup, automatic recovery from corruption, degraded mode.

pub mod backup;
pub mod config;
pub mod events;
pub mod history;
pub mod maintainer;
pub mod recovery;

pub use config::{BackupConfig, CompactionConfig, MaintenanceConfig, Strategy};
pub use events::{Envelope, Event, EventBus};
pub use maintainer::Maintainer;
pub use backup::{BackupInfo, BackupOptions, BackupRun, BackupState, BackupTrigger};
pub use recovery::{BackupSelector, RecoveryReport, RecoveryTrigger, RestoreError};
