//! Restoring a table from a backup ([`Maintainer::restore`]), and degraded mode when no
//! backup of a corrupt table verifies ([`Maintainer::recover_corrupt_table`]). Both hold the
//! maintenance lock, publish `recovery_complete` or `recovery_failed`, and hand the file swap
//! to the table's owner through a [`ReplaceRequest`], which keeps the previous file in
//! quarantine and puts it back when the swap fails.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};
use store_core::{IoRate, Pacer, fsutil};
use store_owners::{MaintenanceError, ReplaceReport, ReplaceRequest};

use crate::backup::{
    BackupManifest, ListBackupsError, VerifyError, backup_id_at, is_valid_backup_id,
};
use crate::events::Event;
use crate::maintainer::Maintainer;
use crate::operations::OperationKind;
use crate::report::{RecoveryOutcome, RecoveryReport, RecoveryTrigger, RejectedBackup};

/// Which backup to restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupSelector {
    /// The newest backup that passes verification (older ones are tried in turn).
    LatestVerified,
    /// This backup id, which must exist and verify.
    Id(String),
}

/// A restore was refused or failed; the table's previous file keeps serving in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// Not one of the nine tables.
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    /// The id is not a well-formed backup id (path traversal, for instance).
    #[error("invalid backup id {0:?}")]
    InvalidBackupId(String),
    /// No backup with this id exists for the table.
    #[error("no backup {id} of table {table}")]
    BackupNotFound {
        /// The table.
        table: String,
        /// The id asked for.
        id: String,
    },
    /// No backup of the table verifies.
    #[error("no verified backup of table {table} ({} rejected)", rejected.len())]
    NoVerifiedBackup {
        /// The table.
        table: String,
        /// The backups that were tried and refused.
        rejected: Vec<RejectedBackup>,
    },
    /// The backup asked for does not verify.
    #[error("backup {id} does not verify: {source}")]
    Verify {
        /// The backup.
        id: String,
        /// Why.
        source: VerifyError,
    },
    /// The backups could not be listed (a latest-verified restore lists them first).
    #[error("listing backups: {0}")]
    ListBackups(#[source] ListBackupsError),
    /// Preparing the restore (quarantine dir, work file) failed.
    #[error("{what}: {source}")]
    Io {
        /// The step.
        what: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The owner could not swap the backup in; it put the previous file back.
    #[error("the table refused the backup: {0}")]
    Replace(#[source] MaintenanceError),
    /// Another maintenance operation is running and the request did not ask to wait
    /// ([`Maintainer::try_restore`]).
    #[error("another maintenance operation is running")]
    Busy,
    /// A point-in-time restore of a table without a change log.
    #[error("table {0} has no change log: a point-in-time restore needs one ([changelog])")]
    NoChangeLog(String),
    /// The instant asked for is not one the backups and the change log can bring back.
    #[error(
        "cannot restore {table} to {}: restorable from {} to {}",
        humantime::format_rfc3339_millis(*at),
        earliest.map_or("(no backup with a change-log position)".to_string(), |e| humantime::format_rfc3339_millis(e).to_string()),
        humantime::format_rfc3339_millis(*latest)
    )]
    OutOfRange {
        /// The table.
        table: String,
        /// The instant asked for.
        at: SystemTime,
        /// The earliest restorable instant (the oldest usable backup), if any.
        earliest: Option<SystemTime>,
        /// The latest (now).
        latest: SystemTime,
    },
    /// The change log cannot be read up to the instant asked for.
    #[error("the change log of {table} cannot be replayed to that instant: {source}")]
    LogIncomplete {
        /// The table.
        table: String,
        /// Where and why the replay stopped.
        source: store_core::changelog::LogError,
    },
    /// The staged copy of the backup did not open for the replay.
    #[error("opening the staged copy of the backup: {0}")]
    StagedCopy(#[source] store_core::OpenError),
    /// Replaying the change log into the restored copy failed.
    #[error("replaying the change log into the restored copy: {0}")]
    Replay(#[source] store_core::WriteError),
}

/// A work file in the data dir, fully verified as backup `id` holding `records` records,
/// after `rejected` were refused: what [`Maintainer::restore_verified_file`] swaps in.
pub(crate) struct VerifiedFile<'a> {
    pub(crate) id: &'a str,
    pub(crate) staged: &'a Path,
    pub(crate) records: u64,
    pub(crate) rejected: Vec<RejectedBackup>,
}

/// One recovery under way: what its report starts from.
pub(super) struct Attempt {
    pub(super) table: String,
    pub(super) trigger: RecoveryTrigger,
    pub(super) started_at: SystemTime,
    pub(super) started: Instant,
    pub(super) rejected: Vec<RejectedBackup>,
}

impl Attempt {
    pub(super) fn new(table: &str, trigger: RecoveryTrigger) -> Attempt {
        Attempt {
            table: table.to_string(),
            trigger,
            started_at: SystemTime::now(),
            started: Instant::now(),
            rejected: Vec::new(),
        }
    }

    pub(super) fn report(&self, outcome: RecoveryOutcome) -> RecoveryReport {
        RecoveryReport {
            table: self.table.clone(),
            trigger: self.trigger,
            outcome,
            backup_id: None,
            records: 0,
            quarantined: None,
            data_lost: false,
            rejected: self.rejected.clone(),
            error: None,
            started_at: self.started_at,
            duration: self.started.elapsed(),
            log_replayed: 0,
            log_unrecovered: None,
            restored_to: None,
        }
    }

    /// The report of a replacement the owner made.
    pub(super) fn replaced(
        &self,
        outcome: RecoveryOutcome,
        replaced: ReplaceReport,
    ) -> RecoveryReport {
        let mut report = self.report(outcome);
        report.records = replaced.records;
        report.quarantined = replaced.quarantined;
        report.log_replayed = replaced.log_replayed;
        if let Some(gap) = replaced.log_unrecovered {
            report.data_lost = true;
            report.error = Some(gap.to_string());
            report.log_unrecovered = Some(gap);
        }
        report
    }
}

impl Maintainer {
    fn quarantine_path(&self, table: &str) -> PathBuf {
        let dir = self.data_dir().join("quarantine");
        let stamp = backup_id_at(SystemTime::now());
        let mut path = dir.join(format!("{table}.{stamp}.redb"));
        let mut n = 1;
        while path.exists() {
            path = dir.join(format!("{table}.{stamp}-{n}.redb"));
            n += 1;
        }
        path
    }

    /// Restore `table` from a backup (see the module doc). Publishes `recovery_complete` on
    /// success and `recovery_failed` otherwise (except for refused requests: unknown table,
    /// bad id). Waits for any maintenance operation in progress; see
    /// [`Maintainer::try_restore`] for one that answers [`RestoreError::Busy`] instead.
    pub fn restore(
        &self,
        table: &str,
        which: BackupSelector,
        trigger: RecoveryTrigger,
    ) -> Result<RecoveryReport, RestoreError> {
        self.restore_with(table, which, trigger, true)
    }

    /// [`Maintainer::restore`], but refused with [`RestoreError::Busy`] at once (no event
    /// published) when another maintenance operation is running: what an operator's restore
    /// does, like a compaction or backup asked with `wait: false`.
    pub fn try_restore(
        &self,
        table: &str,
        which: BackupSelector,
        trigger: RecoveryTrigger,
    ) -> Result<RecoveryReport, RestoreError> {
        self.restore_with(table, which, trigger, false)
    }

    fn restore_with(
        &self,
        table: &str,
        which: BackupSelector,
        trigger: RecoveryTrigger,
        wait: bool,
    ) -> Result<RecoveryReport, RestoreError> {
        self.validate_request(table, &which)?;
        let _guard = self
            .op_lock
            .take(wait)
            .map_err(|_busy| RestoreError::Busy)?;
        let mut attempt = Attempt {
            table: table.to_string(),
            trigger,
            started_at: SystemTime::now(),
            started: Instant::now(),
            rejected: Vec::new(),
        };
        let result = self.restore_locked(table, &which, &mut attempt);
        self.publish_restore(&attempt, &result);
        result
    }

    fn validate_request(&self, table: &str, which: &BackupSelector) -> Result<(), RestoreError> {
        if self.owner_of(table).is_none() {
            return Err(RestoreError::UnknownTable(table.to_string()));
        }
        if let BackupSelector::Id(id) = which {
            if !is_valid_backup_id(id) {
                return Err(RestoreError::InvalidBackupId(id.clone()));
            }
            let dir = self.table_backup_dir(table);
            if !dir.join(format!("{id}.redb")).exists() {
                return Err(RestoreError::BackupNotFound {
                    table: table.to_string(),
                    id: id.clone(),
                });
            }
        }
        Ok(())
    }

    pub(super) fn publish_restore(
        &self,
        attempt: &Attempt,
        result: &Result<RecoveryReport, RestoreError>,
    ) {
        match result {
            Ok(report) => self.bus.publish(Event::RecoveryComplete {
                report: report.clone(),
            }),
            Err(e) => {
                let mut report = attempt.report(RecoveryOutcome::Failed);
                report.error = Some(e.to_string());
                self.bus.publish(Event::RecoveryFailed { report });
            }
        }
    }

    /// Pick, verify, stage and swap in a backup. The caller holds the maintenance lock.
    fn restore_locked(
        &self,
        table: &str,
        which: &BackupSelector,
        attempt: &mut Attempt,
    ) -> Result<RecoveryReport, RestoreError> {
        let candidates: Vec<String> = match which {
            BackupSelector::Id(id) => vec![id.clone()],
            BackupSelector::LatestVerified => self
                .backups_of(table, false)
                .map_err(RestoreError::ListBackups)?
                .into_iter()
                .map(|b| b.id)
                .collect(),
        };
        let staged = self.data_dir().join(format!(".restore-{table}.tmp"));
        let mut chosen: Option<(String, BackupManifest)> = None;
        // Not paced: a restore brings a table back into service, and the sooner the better.
        let unpaced = std::sync::Arc::new(Pacer::new(IoRate::Unlimited));
        // Listed until the restore ends, swap included.
        let operation = self.operations.begin(OperationKind::Restore, table, "hash");
        for id in candidates {
            match self.verify_found_into(table, &id, &staged, &unpaced, operation.progress()) {
                Ok(manifest) => {
                    chosen = Some((id, manifest));
                    break;
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&staged);
                    tracing::warn!(table, id = %id, error = %e, "backup refused for restore");
                    attempt.rejected.push(RejectedBackup {
                        id: id.clone(),
                        reason: e.to_string(),
                    });
                    // Only a backup that is damaged is skipped for an older one: a failure
                    // of the environment (I/O, full disk) must never lead to degraded mode.
                    let skip = e.is_corruption() || matches!(e, VerifyError::NotFound { .. });
                    if matches!(which, BackupSelector::Id(_)) || !skip {
                        return Err(RestoreError::Verify { id, source: e });
                    }
                }
            }
        }
        let Some((id, manifest)) = chosen else {
            return Err(RestoreError::NoVerifiedBackup {
                table: table.to_string(),
                rejected: attempt.rejected.clone(),
            });
        };
        let result = self.swap_in(table, Some(&staged), Some(manifest.records), false, true);
        let _ = std::fs::remove_file(&staged);
        let replaced = result?;
        let mut report = attempt.replaced(RecoveryOutcome::Restored, replaced);
        report.backup_id = Some(id);
        tracing::info!(table, backup = ?report.backup_id, records = report.records, replayed = report.log_replayed, "table restored");
        Ok(report)
    }

    /// Swap in `staged`, a work file in the data dir already fully verified as backup `id`
    /// holding `records` records (an off-site backup fetched by [`crate::remote`]), after
    /// `rejected` were refused. Same lock, swap and events as [`Maintainer::restore`]. With
    /// `as_of`, `staged` is the table as of that instant (the shipped log applied up to it).
    pub(crate) fn restore_verified_file(
        &self,
        table: &str,
        file: VerifiedFile<'_>,
        trigger: RecoveryTrigger,
        as_of: Option<SystemTime>,
    ) -> Result<RecoveryReport, RestoreError> {
        let VerifiedFile {
            id,
            staged,
            records,
            rejected,
        } = file;
        if self.owner_of(table).is_none() {
            return Err(RestoreError::UnknownTable(table.to_string()));
        }
        let _guard = self
            .op_lock
            .take(false)
            .map_err(|_busy| RestoreError::Busy)?;
        let attempt = Attempt {
            table: table.to_string(),
            trigger,
            started_at: SystemTime::now(),
            started: Instant::now(),
            rejected,
        };
        // As of an instant, the file is the state wanted: the owner logs the difference
        // instead of replaying its log after it.
        let result = self
            .swap_in(table, Some(staged), Some(records), false, as_of.is_none())
            .map(|replaced| {
                let mut report = attempt.replaced(RecoveryOutcome::Restored, replaced);
                report.backup_id = Some(id.to_string());
                report.restored_to = as_of;
                report
            });
        self.publish_restore(&attempt, &result);
        result
    }

    /// Ask the owner to replace the table file with `staged` (or an empty table, serving
    /// degraded when `degraded`), then bound the quarantine. With `replay_log` the owner
    /// replays the change log after the file's position; without, the file is the state
    /// wanted (a point-in-time restore).
    pub(super) fn swap_in(
        &self,
        table: &str,
        staged: Option<&Path>,
        expected_records: Option<u64>,
        degraded: bool,
        replay_log: bool,
    ) -> Result<ReplaceReport, RestoreError> {
        let owner = self
            .owner_of(table)
            .ok_or_else(|| RestoreError::UnknownTable(table.to_string()))?;
        let quarantine = self.quarantine_path(table);
        let degraded = degraded.then(|| {
            if std::fs::symlink_metadata(&owner.shared().path).is_ok() {
                format!(
                    "no verified backup; data lost, previous file kept at {}",
                    quarantine.display()
                )
            } else {
                "no verified backup; data lost (the table file was missing)".to_string()
            }
        });
        // The owner creates the quarantine dir (durably) when it keeps a file aside.
        if let Some(staged) = staged {
            fsutil::sync_parent_dir(staged).map_err(|source| RestoreError::Io {
                what: "fsync of the data dir".into(),
                source,
            })?;
            #[cfg(feature = "testing")]
            self.hooks.damage_staged_copy(staged);
        }
        let result = owner
            .replace(ReplaceRequest {
                replacement: staged.map(Path::to_path_buf),
                quarantine,
                expected_records,
                degraded,
                replay_log,
            })
            .map_err(RestoreError::Replace);
        self.prune_quarantine();
        result
    }

    /// Recover a table reported corrupt: restore its newest verified backup, or, when none
    /// verifies, enter degraded mode (corrupt file to quarantine, empty table, status
    /// degraded). Publishes `recovery_complete`, or `recovery_failed` (degraded mode included,
    /// with `data_lost`). Returns the report of a restore or of degraded mode.
    pub fn recover_corrupt_table(&self, table: &str) -> Result<RecoveryReport, RestoreError> {
        self.validate_request(table, &BackupSelector::LatestVerified)?;
        let _guard = self.op_lock.wait();
        let mut attempt = Attempt {
            table: table.to_string(),
            trigger: RecoveryTrigger::Auto,
            started_at: SystemTime::now(),
            started: Instant::now(),
            rejected: Vec::new(),
        };
        match self.restore_locked(table, &BackupSelector::LatestVerified, &mut attempt) {
            Err(RestoreError::NoVerifiedBackup { .. }) => {}
            other => {
                self.publish_restore(&attempt, &other);
                return other;
            }
        }
        // No good backup: keep the hub running on an empty table (and whatever the change log
        // still holds from its first group on, replayed into it).
        let result = self.swap_in(table, None, None, true, true);
        let replaced = match result {
            Ok(r) => r,
            Err(e) => {
                let result = Err(e);
                self.publish_restore(&attempt, &result);
                return result;
            }
        };
        if replaced.log_unrecovered.is_none() && replaced.log_replayed > 0 {
            // The change log held the table's whole history: nothing was lost.
            let report = attempt.replaced(RecoveryOutcome::Restored, replaced);
            tracing::info!(
                table,
                replayed = report.log_replayed,
                "no verified backup: table rebuilt from its change log"
            );
            let result = Ok(report);
            self.publish_restore(&attempt, &result);
            return result;
        }
        let detail = self
            .owner_of(table)
            .map(|o| o.shared().status().to_string())
            .unwrap_or_default();
        tracing::error!(table, %detail, "table degraded");
        let mut report = attempt.replaced(RecoveryOutcome::Degraded, replaced);
        report.data_lost = true;
        report.error = Some(detail);
        self.bus.publish(Event::RecoveryFailed {
            report: report.clone(),
        });
        Ok(report)
    }
}
