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
//! - [`remote`]: off-site backups in S3-compatible storage ([`remote::Offsite`]): uploads
//!   after each backup run ([`remote::Uploader`]), listing, verification, restores from the
//!   bucket and the recovery of a whole data dir ([`remote::recover_data_dir`]). The only
//!   async code of the workspace, kept inside `remote/bucket.rs`.
//! - [`quarantine`]: the replaced table files, kept and bounded by age and size.
//! - [`health`]: [`Maintainer::health_metrics`], per-table size, fragmentation and status.
//! - [`schedules`]: the compaction and backup schedules of a maintainer.
//!
//! Leaves, which import no other module of the crate but [`report`] and [`config`]:
//!
//! - [`scheduler`]: [`Schedule`], a job on a fixed interval that never piles runs up.
//! - [`report`]: what runs are started by ([`Trigger`]) and what they report.
//! - [`operations`]: the running operations and their progress
//!   ([`Maintainer::operations`]), each listed exactly while it runs.
//! - [`events`]: the "backups" topic (publish/subscribe, never blocking maintenance).
//! - [`history`]: the last 20 compaction runs, persisted in the data dir.
//! - [`config`]: compaction, backup and quarantine settings.
//! - `lock`: the maintenance lock.
//! - `testing` (feature `testing` only): test hooks, never in the daemon's build.
//!
//! Modules import each other without a circle: an operation module imports the maintainer
//! and the leaves, the maintainer imports only leaves.
//!
//! The tables themselves (opening a data dir, the typed handles, the owner threads, online
//! compaction of one table) are the [`store_owners`] crate, `crates/store-owners/src/lib.rs`,
//! whose crate doc opens, writes, reads and compacts a table; this one takes it from there.
//! How the crates fit together is in `ARCHITECTURE.md` at the root of the workspace.
//!
//! # Example
//!
//! Wrap opened tables in a [`Maintainer`], back them up, compact them, list the backups and
//! restore a table from the newest verified one:
//!
//! ```
//! use std::sync::Arc;
//!
//! use compaction::recovery::RecoveryOutcome;
//! use compaction::{
//!     BackupOptions, BackupSelector, CompactOptions, HealthStatus, MaintenanceConfig, Maintainer,
//!     RecoveryTrigger, TableOutcome,
//! };
//! use store_owners::{Stores, StoresOptions, TABLE_NAMES};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let stores = Arc::new(Stores::open(&dir.path().join("data"), StoresOptions::default())?);
//! stores.agentcom_config.put("poll_interval", "5s", 1_700_000_000_000)?;
//!
//! // Backups go to `<data_dir>/backups` unless `MaintenanceConfig::backup.dir` says otherwise.
//! let maintainer = Maintainer::new(Arc::clone(&stores), MaintenanceConfig::default());
//! let wait = BackupOptions { wait: true, ..BackupOptions::default() };
//!
//! // One table, then all nine: each backup is copied from a read snapshot while the table
//! // keeps serving, verified, and written with a checksummed manifest.
//! let run = maintainer.backup_one("agentcom_config", wait)?;
//! assert!(run.failures.is_empty(), "{:?}", run.failures);
//! assert_eq!(run.backups[0].records, 1);
//! let run = maintainer.backup_all(wait)?;
//! assert!(run.failures.is_empty(), "{:?}", run.failures);
//! assert_eq!(run.backups.len(), TABLE_NAMES.len());
//!
//! // Compact every table; `force` skips the fragmentation threshold.
//! let run = maintainer.compact_all(CompactOptions { force: true, ..CompactOptions::default() })?;
//! assert_eq!(run.results.len(), TABLE_NAMES.len());
//! assert!(run.results.iter().all(|r| !matches!(r.outcome, TableOutcome::Failed(_))));
//!
//! // List the backups (`true`: verify each one fully), newest first within a table.
//! let backups = maintainer.list_backups(true)?;
//! assert_eq!(backups.len(), TABLE_NAMES.len() + 1);
//! assert_eq!(maintainer.backups_of("agentcom_config", false)?.len(), 2);
//!
//! // A later change, then a restore: the table serves the backup's data again, and the file
//! // it replaced is kept in `<data_dir>/quarantine`, never deleted.
//! stores.agentcom_config.put("poll_interval", "1h", 1_700_000_001_000)?;
//! let report = maintainer.restore(
//!     "agentcom_config",
//!     BackupSelector::LatestVerified,
//!     RecoveryTrigger::Manual,
//! )?;
//! assert_eq!(report.outcome, RecoveryOutcome::Restored);
//! assert!(report.quarantined.is_some());
//! assert_eq!(stores.agentcom_config.get_or("poll_interval", "1s")?, "5s");
//!
//! // Health without a round trip to the owners.
//! let health = maintainer.health_metrics();
//! assert!(health.tables.iter().all(|t| t.status == HealthStatus::Ok));
//! # Ok(())
//! # }
//! ```

pub mod backup;
pub mod compact;
pub mod config;
pub mod events;
pub mod health;
pub mod history;
mod lock;
pub mod maintainer;
pub mod operations;
pub mod quarantine;
pub mod recovery;
pub mod remote;
pub mod report;
pub mod scheduler;
pub mod schedules;
pub mod scrub;
#[cfg(feature = "testing")]
pub mod testing;

pub use backup::{BackupInfo, BackupOptions, BackupRun, BackupState, BackupTrigger};
pub use compact::{CompactOptions, CompactRequestError};
pub use config::{
    BackupConfig, CompactionConfig, Compression, MaintenanceConfig, PacingConfig, QuarantineConfig,
    RemoteConfig, ScrubConfig, Strategy,
};
pub use events::{Envelope, Event, EventBus};
pub use health::{HealthReport, HealthStatus, PacingReport, TableHealth};
pub use history::{History, SaveHistoryError};
pub use maintainer::Maintainer;
pub use operations::{OperationInfo, OperationKind};
pub use quarantine::QuarantinedFile;
pub use recovery::{BackupSelector, RestoreError};
pub use report::{
    CompactionRun, RecoveryReport, RecoveryTrigger, TableOutcome, TableResult, Trigger,
};
pub use report::{ScrubOutcome, ScrubProgress, ScrubResult, ScrubRun};
pub use scheduler::{Schedule, StartScheduleError};
pub use scrub::ScrubRequestError;
