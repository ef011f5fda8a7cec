//! Point-in-time restores ([`Maintainer::restore_at`], [`Maintainer::restore_all_at`]): the
//! newest verified backup taken at or before the instant, staged as a work copy, the change
//! log replayed into the copy up to the last group committed at or before the instant, then
//! swapped in as the state wanted. The owner logs the difference to the current table as
//! writes, so the log stays the table's whole history and a later replay (a crash, a restore
//! from an earlier backup) arrives at the restored state.

use std::time::{SystemTime, UNIX_EPOCH};

use store_core::changelog::{ReplayLimit, replay};
use store_core::{RedbStore, StoreOptions, TableStore};
use store_owners::{LogState, TABLE_NAMES};

use super::restore::{Attempt, RestoreError};
use crate::backup::BackupManifest;
use crate::maintainer::Maintainer;
use crate::operations::OperationKind;
use crate::report::{RecoveryOutcome, RecoveryReport, RecoveryTrigger, RejectedBackup};

/// The instants a table can be brought back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestorableRange {
    /// The oldest backup the change log still reaches back to, if any.
    pub earliest: Option<SystemTime>,
    /// Now: the log holds every acknowledged write.
    pub latest: SystemTime,
}

impl Maintainer {
    /// The instants `table` can be restored to.
    pub fn restorable_range(&self, table: &str) -> Result<RestorableRange, RestoreError> {
        let (_, usable) = self.usable_backups(table)?;
        Ok(RestorableRange {
            earliest: usable.iter().map(|m| m.created_at).min(),
            latest: SystemTime::now(),
        })
    }

    /// Bring `table` back to its state at `at` (see the module doc). Refused, naming the
    /// restorable range, when `at` is before the oldest usable backup or in the future.
    pub fn restore_at(
        &self,
        table: &str,
        at: SystemTime,
        trigger: RecoveryTrigger,
    ) -> Result<RecoveryReport, RestoreError> {
        self.check_instant(table, at)?;
        let _guard = self.op_lock.wait();
        let mut attempt = Attempt::new(table, trigger);
        let result = self.restore_at_locked(table, at, &mut attempt);
        self.publish_restore(&attempt, &result);
        result
    }

    /// Bring all nine tables back to their state at the one instant `at`. Every table's
    /// range is checked before any is touched; the reports come in [`TABLE_NAMES`] order,
    /// and the first failure stops the run (the tables before it are restored).
    pub fn restore_all_at(
        &self,
        at: SystemTime,
        trigger: RecoveryTrigger,
    ) -> Result<Vec<RecoveryReport>, RestoreError> {
        for table in TABLE_NAMES {
            self.check_instant(table, at)?;
        }
        let _guard = self.op_lock.wait();
        let mut reports = Vec::new();
        for table in TABLE_NAMES {
            let mut attempt = Attempt::new(table, trigger);
            let result = self.restore_at_locked(table, at, &mut attempt);
            self.publish_restore(&attempt, &result);
            reports.push(result?);
        }
        Ok(reports)
    }

    fn check_instant(&self, table: &str, at: SystemTime) -> Result<(), RestoreError> {
        let range = self.restorable_range(table)?;
        let before = range.earliest.is_none_or(|e| at < e);
        if before || at > range.latest {
            return Err(RestoreError::OutOfRange {
                table: table.to_string(),
                at,
                earliest: range.earliest,
                latest: range.latest,
            });
        }
        Ok(())
    }

    /// The table's change log and its backups a replay can start from (a log position the
    /// log still reaches), newest first.
    fn usable_backups(&self, table: &str) -> Result<(LogState, Vec<BackupManifest>), RestoreError> {
        let owner = self
            .owner_of(table)
            .ok_or_else(|| RestoreError::UnknownTable(table.to_string()))?;
        let log = owner
            .shared()
            .log()
            .ok_or_else(|| RestoreError::NoChangeLog(table.to_string()))?;
        let usable = self
            .backups_of(table, false)
            .map_err(RestoreError::ListBackups)?
            .into_iter()
            .filter_map(|b| b.manifest)
            .filter(|m| {
                m.log_position
                    .is_some_and(|p| log.first.is_none_or(|first| first <= p + 1))
            })
            .collect();
        Ok((log, usable))
    }

    fn restore_at_locked(
        &self,
        table: &str,
        at: SystemTime,
        attempt: &mut Attempt,
    ) -> Result<RecoveryReport, RestoreError> {
        let (log, usable) = self.usable_backups(table)?;
        let staged = self.data_dir().join(format!(".restore-{table}.tmp"));
        let until_micros = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        // Not paced, like every restore: the sooner the table serves again, the better.
        let unpaced = std::sync::Arc::new(store_core::Pacer::new(store_core::IoRate::Unlimited));
        // Listed until the restore ends, replay and swap included.
        let operation = self.operations.begin(OperationKind::Restore, table, "hash");
        for manifest in usable.into_iter().filter(|m| m.created_at <= at) {
            let id = manifest.id.clone();
            let progress = operation.progress();
            if let Err(e) = self.verify_found_into(table, &id, &staged, &unpaced, progress) {
                let _ = std::fs::remove_file(&staged);
                tracing::warn!(table, id = %id, error = %e, "backup refused for a point-in-time restore");
                attempt.rejected.push(RejectedBackup {
                    id: id.clone(),
                    reason: e.to_string(),
                });
                if e.is_corruption() {
                    continue;
                }
                return Err(RestoreError::Verify { id, source: e });
            }
            let replayed = replay_into_copy(&staged, &log, until_micros);
            let replayed = match replayed {
                Ok(r) => r,
                Err(e) => {
                    let _ = std::fs::remove_file(&staged);
                    return Err(e.with_table(table));
                }
            };
            let result = self.swap_in(table, Some(&staged), None, false, false);
            let _ = std::fs::remove_file(&staged);
            let mut report = attempt.replaced(RecoveryOutcome::Restored, result?);
            report.backup_id = Some(id);
            report.log_replayed = replayed;
            report.restored_to = Some(at);
            tracing::info!(table, backup = ?report.backup_id, replayed, at = %humantime::format_rfc3339_millis(at), "table restored to a point in time");
            return Ok(report);
        }
        Err(RestoreError::NoVerifiedBackup {
            table: table.to_string(),
            rejected: attempt.rejected.clone(),
        })
    }
}

/// Replay the log into the staged copy up to `until_micros`; returns the groups applied.
fn replay_into_copy(
    staged: &std::path::Path,
    log: &LogState,
    until_micros: u64,
) -> Result<u64, ReplayFailure> {
    let options = StoreOptions {
        create_if_missing: false,
        ..StoreOptions::default()
    };
    let mut store = RedbStore::open(staged, &options).map_err(ReplayFailure::Open)?;
    let outcome = replay(
        &mut store,
        &log.dir,
        ReplayLimit {
            until_micros: Some(until_micros),
            through: Some(log.head),
        },
    )
    .map_err(ReplayFailure::Store)?;
    let _ = store.close();
    match outcome.stopped {
        // Stopped before the instant: what was asked for cannot be rebuilt.
        Some(e) if outcome.position < log.head => Err(ReplayFailure::Log(e)),
        _ => Ok(outcome.groups),
    }
}

enum ReplayFailure {
    Open(store_core::OpenError),
    Log(store_core::changelog::LogError),
    Store(store_core::WriteError),
}

impl ReplayFailure {
    fn with_table(self, table: &str) -> RestoreError {
        match self {
            ReplayFailure::Open(e) => RestoreError::StagedCopy(e),
            ReplayFailure::Log(source) => RestoreError::LogIncomplete {
                table: table.to_string(),
                source,
            },
            ReplayFailure::Store(e) => RestoreError::Replay(e),
        }
    }
}
