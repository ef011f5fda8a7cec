//! Orchestration of compaction, backups and recovery over the nine table owners.
//!
//! # Layout
//!
//! - [`maintainer`]: [`Maintainer`], the façade the daemon drives; one operation at a time.
//!   The operations are `impl Maintainer` blocks in the modules below, which import it.
//! - [`compact`]: compaction runs over the tables ([`Maintainer::compact_all`]), one table at
//!   a time, threshold, retry once, events, history.
//! - [`backup`]: hot, verified backups with manifests (`backup/run.rs`), listing and
//!   verification (`backup/verify.rs`), retention (`backup/retention.rs`).
//! - [`recovery`]: restore from a backup (`recovery/restore.rs`), automatic recovery from
//!   corruption and degraded mode (`recovery/auto.rs`).
//! - [`quarantine`]: the replaced table files, kept and bounded by age and size.
//! - [`health`]: [`Maintainer::health_metrics`], per-table size, fragmentation and status.
//! - [`schedules`]: the compaction and backup schedules of a maintainer.
//!
//! Leaves, which import no other module of the crate but [`report`] and [`config`]:
//!
//! - [`scheduler`]: [`Schedule`], a job on a fixed interval that never piles runs up.
//! - [`report`]: what runs are started by ([`Trigger`]) and what they report.
//! - [`events`]: the "backups" topic (publish/subscribe, never blocking maintenance).
//! - [`history`]: the last 20 compaction runs, persisted in the data dir.
//! - [`config`]: compaction, backup and quarantine settings.
//! - `lock`: the maintenance lock.
//! - `testing` (feature `testing` only): test hooks, never in the daemon's build.
//!
//! Modules import each other without a circle: an operation module imports the maintainer
//! and the leaves, the maintainer imports only leaves.

pub mod backup;
pub mod compact;
pub mod config;
pub mod events;
pub mod health;
pub mod history;
mod lock;
pub mod maintainer;
pub mod quarantine;
pub mod recovery;
pub mod report;
pub mod scheduler;
pub mod schedules;
#[cfg(feature = "testing")]
pub mod testing;

pub use backup::{BackupInfo, BackupOptions, BackupRun, BackupState, BackupTrigger};
pub use compact::{CompactOptions, CompactRequestError};
pub use config::{BackupConfig, CompactionConfig, MaintenanceConfig, QuarantineConfig, Strategy};
pub use events::{Envelope, Event, EventBus};
pub use health::{HealthReport, HealthStatus, TableHealth};
pub use history::{History, SaveHistoryError};
pub use maintainer::Maintainer;
pub use quarantine::QuarantinedFile;
pub use recovery::{BackupSelector, RestoreError};
pub use report::{
    CompactionRun, RecoveryReport, RecoveryTrigger, TableOutcome, TableResult, Trigger,
};
pub use scheduler::{Schedule, StartScheduleError};
