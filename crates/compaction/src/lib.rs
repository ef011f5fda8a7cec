//! Orchestration of compaction, backups and recovery over the nine table owners.
//!
//! # Layout
//!
//! - [`maintainer`]: [`Maintainer`], the façade the daemon drives; one operation at a time.
//! - [`config`]: compaction and backup settings.
//! - [`events`]: the "backups" topic (publish/subscribe, never blocking maintenance).
//! - [`history`]: the last 20 compaction runs, persisted in the data dir.
//! - [`compact`]: compaction runs over the tables ([`Maintainer::compact_all`]), one table at
//!   a time, threshold, retry once, events, history.
//! - [`scheduler`]: [`Schedule`], a job on a fixed interval that never piles runs up.
//! - [`health`]: [`Maintainer::health_metrics`], per-table size, fragmentation and status.
//! - [`backup`]: hot, verified backups with manifests, retention and a schedule.
//! - [`recovery`]: restore from a backup, automatic recovery from corruption, degraded mode.
//! - [`quarantine`]: the replaced table files, kept and bounded by age and size.

pub mod backup;
pub mod compact;
pub mod config;
pub mod events;
pub mod health;
pub mod history;
pub mod maintainer;
pub mod quarantine;
pub mod recovery;
pub mod scheduler;

pub use backup::{BackupInfo, BackupOptions, BackupRun, BackupState, BackupTrigger};
pub use compact::{CompactOptions, CompactRequestError, Trigger};
pub use config::{BackupConfig, CompactionConfig, MaintenanceConfig, Strategy};
pub use events::{Envelope, Event, EventBus};
pub use health::{HealthReport, HealthStatus, TableHealth};
pub use history::{CompactionRun, History, TableOutcome, TableResult};
pub use maintainer::Maintainer;
pub use quarantine::{QuarantineConfig, QuarantinedFile};
pub use recovery::{BackupSelector, RecoveryReport, RecoveryTrigger, RestoreError};
pub use scheduler::{Schedule, StartScheduleError};
