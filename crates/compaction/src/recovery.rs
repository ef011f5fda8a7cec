//! Restoring a table from a backup, by hand or automatically when corruption is detected, and
//! degraded mode when no good backup exists.
//!
//! # Restore
//!
//! 1. The backup is chosen (the newest one that verifies, or the id an operator gave, which
//!    must be a well-formed id of an existing backup of that table).
//! 2. It is verified while it is copied into a work file in the data dir
//!    (`.restore-<table>-<id>.tmp`, fsynced): checksum, redb integrity check, record count.
//! 3. The owner swaps the work file in: the current table file is moved (never deleted) to
//!    `<data_dir>/quarantine/<table>.<UTC timestamp>.redb`, the work file renamed in, the table
//!    reopened and its record count compared with the manifest. If any of that fails, the
//!    owner puts the previous file back and it keeps serving.
//!
//! # Automatic recovery
//!
//! [`Maintainer::start_auto_recovery`] listens to the tables' corruption reports (at open with
//! the integrity check on, or at run time). A reported table that is still corrupt or
//! unavailable is restored from the newest verified backup. When no backup verifies, the table
//! enters degraded mode: its corrupt file is moved to quarantine, an empty table serves in its
//! place so the hub keeps running, the table's status says degraded, and `recovery_failed`
//! says that data was lost.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, bounded, select};
use serde::{Deserialize, Serialize};
use store_core::fsutil;
use store_owners::{MaintenanceError, ReplaceRequest, TableStatus};

use crate::backup::{
    BackupManifest, VerifyError, backup_id_at, create_private_dir, is_valid_backup_id,
};
use crate::events::Event;
use crate::maintainer::Maintainer;

/// Which backup to restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupSelector {
    /// The newest backup that passes verification (older ones are tried in turn).
    LatestVerified,
    /// This backup id, which must exist and verify.
    Id(String),
}

/// What started a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryTrigger {
    /// An operator.
    Manual,
    /// Corruption was detected.
    Auto,
}

/// How a recovery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryOutcome {
    /// The table serves the backup's data.
    Restored,
    /// No good backup: the table serves an empty file; its data was lost (the corrupt file is
    /// in quarantine).
    Degraded,
    /// Nothing changed: the previous file keeps serving (or the table stays unavailable).
    Failed,
}

/// A backup that was considered and refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedBackup {
    /// Its id.
    pub id: String,
    /// Why it was refused.
    pub reason: String,
}

/// What a recovery did; the payload of `recovery_complete` and `recovery_failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryReport {
    /// The table.
    pub table: String,
    /// Manual or auto.
    pub trigger: RecoveryTrigger,
    /// Restored, degraded or failed.
    pub outcome: RecoveryOutcome,
    /// The backup restored, if any.
    pub backup_id: Option<String>,
    /// Records in the table afterwards.
    pub records: u64,
    /// Where the previous table file went.
    pub quarantined: Option<PathBuf>,
    /// True when the table's data was lost (degraded mode).
    pub data_lost: bool,
    /// Backups refused on the way (failed verification).
    pub rejected: Vec<RejectedBackup>,
    /// What went wrong, when the outcome is not `restored`.
    pub error: Option<String>,
    /// When the recovery started.
    #[serde(with = "humantime_serde")]
    pub started_at: SystemTime,
    /// How long it took.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
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
    Replace(MaintenanceError),
}

/// A fault to inject into the next restores, for tests of what survives a restore that fails
/// half-way. Fired after the backup was verified and staged, before the owner swaps it in.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreFault {
    /// Overwrite the staged copy with garbage: the owner's reopen fails.
    GarbleStagedCopy,
    /// Truncate the staged copy to nothing: it reopens as an empty table, whose record count
    /// does not match.
    TruncateStagedCopy,
}

/// The running automatic recovery. Dropping it (or [`AutoRecovery::stop`]) stops the thread,
/// after a recovery in progress ends.
#[derive(Debug)]
pub struct AutoRecovery {
    // Field order matters: the stop sender drops before the join, so the thread sees it.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AutoRecovery {
    /// Stop listening and wait for the thread.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for AutoRecovery {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starting automatic recovery failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AutoRecoveryError {
    /// The recovery thread could not be spawned.
    #[error("cannot start the recovery thread: {0}")]
    Spawn(std::io::Error),
}

struct Attempt {
    table: String,
    trigger: RecoveryTrigger,
    started_at: SystemTime,
    started: Instant,
    rejected: Vec<RejectedBackup>,
}

impl Attempt {
    fn report(&self, outcome: RecoveryOutcome) -> RecoveryReport {
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
        }
    }
}

impl Maintainer {
    /// Inject a fault into the following restores (`None` disarms). For tests.
    #[doc(hidden)]
    pub fn inject_restore_fault(&self, fault: Option<RestoreFault>) {
        *self.restore_fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

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
    /// bad id). Waits for any maintenance operation in progress.
    pub fn restore(
        &self,
        table: &str,
        which: BackupSelector,
        trigger: RecoveryTrigger,
    ) -> Result<RecoveryReport, RestoreError> {
        self.validate_request(table, &which)?;
        let _guard = self.lock_ops(true);
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

    fn publish_restore(&self, attempt: &Attempt, result: &Result<RecoveryReport, RestoreError>) {
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
                .map_err(|e| RestoreError::Io {
                    what: "listing backups".into(),
                    source: std::io::Error::other(e.to_string()),
                })?
                .into_iter()
                .map(|b| b.id)
                .collect(),
        };
        let staged = self.data_dir().join(format!(".restore-{table}.tmp"));
        let mut chosen: Option<(String, BackupManifest)> = None;
        for id in candidates {
            match self.verify_found_into(table, &id, &staged) {
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
        let result = self.swap_in(table, Some(&staged), Some(manifest.records), false);
        let _ = std::fs::remove_file(&staged);
        let replaced = result?;
        let mut report = attempt.report(RecoveryOutcome::Restored);
        report.backup_id = Some(id);
        report.records = replaced.records;
        report.quarantined = replaced.quarantined;
        tracing::info!(table, backup = ?report.backup_id, records = report.records, "table restored");
        Ok(report)
    }

    /// Ask the owner to replace the table file with `staged` (or an empty table, serving
    /// degraded when `degraded`), then bound the quarantine.
    fn swap_in(
        &self,
        table: &str,
        staged: Option<&Path>,
        expected_records: Option<u64>,
        degraded: bool,
    ) -> Result<store_owners::ReplaceReport, RestoreError> {
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
        if let Some(dir) = quarantine.parent() {
            create_private_dir(dir).map_err(|source| RestoreError::Io {
                what: format!("creating {}", dir.display()),
                source,
            })?;
        }
        if let Some(staged) = staged {
            fsutil::sync_parent_dir(staged).map_err(|source| RestoreError::Io {
                what: "fsync of the data dir".into(),
                source,
            })?;
            let fault = *self.restore_fault.lock().unwrap_or_else(|p| p.into_inner());
            match fault {
                Some(RestoreFault::GarbleStagedCopy) => {
                    let len = std::fs::metadata(staged).map(|m| m.len()).unwrap_or(4096);
                    let _ = std::fs::write(staged, vec![0xA5u8; len as usize]);
                }
                Some(RestoreFault::TruncateStagedCopy) => {
                    let _ = std::fs::write(staged, b"");
                }
                None => {}
            }
        }
        let result = owner
            .replace(ReplaceRequest {
                replacement: staged.map(Path::to_path_buf),
                quarantine,
                expected_records,
                degraded,
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
        let _guard = self.lock_ops(true);
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
        // No good backup: keep the hub running on an empty table.
        let result = self.swap_in(table, None, None, true);
        let replaced = match result {
            Ok(r) => r,
            Err(e) => {
                let result = Err(e);
                self.publish_restore(&attempt, &result);
                return result;
            }
        };
        let detail = self
            .owner_of(table)
            .map(|o| o.shared().status().to_string())
            .unwrap_or_default();
        tracing::error!(table, %detail, "table degraded");
        let mut report = attempt.report(RecoveryOutcome::Degraded);
        report.records = replaced.records;
        report.quarantined = replaced.quarantined;
        report.data_lost = true;
        report.error = Some(detail);
        self.bus.publish(Event::RecoveryFailed {
            report: report.clone(),
        });
        Ok(report)
    }

    /// Listen to corruption reports (the `corruption_reports` channel given to the tables) and
    /// recover each reported table that is still corrupt or unavailable, with trigger auto.
    /// Reports queued before the call are handled too. The thread holds the maintainer
    /// weakly and ends once it is gone, or when the handle is dropped.
    pub fn start_auto_recovery(
        self: &Arc<Self>,
        reports: Receiver<&'static str>,
    ) -> Result<AutoRecovery, AutoRecoveryError> {
        let (stop, stopped) = bounded::<()>(0);
        // Held weakly, like the schedules: the thread never keeps the tables open.
        let weak: Weak<Maintainer> = Arc::downgrade(self);
        let thread = std::thread::Builder::new()
            .name("auto-recovery".into())
            .spawn(move || {
                loop {
                    let table = select! {
                        recv(reports) -> table => match table {
                            Ok(table) => table,
                            Err(_) => break,
                        },
                        recv(stopped) -> _ => break,
                    };
                    let Some(maintainer) = weak.upgrade() else {
                        break;
                    };
                    let Some(owner) = maintainer.owner_of(table) else {
                        continue;
                    };
                    let status = owner.shared().status();
                    if !status.needs_restore() {
                        tracing::info!(table, %status, "report ignored: table serving");
                        continue;
                    }
                    // A file that merely did not open (busy, a transient I/O error) may open
                    // now: a restore would roll back its writes since the last backup.
                    if matches!(status, TableStatus::Unavailable(_)) && owner.reopen().is_ok() {
                        tracing::info!(table, "table reopened; no restore needed");
                        continue;
                    }
                    if let Err(e) = maintainer.recover_corrupt_table(table) {
                        tracing::error!(table, error = %e, "automatic recovery failed");
                    }
                }
            })
            .map_err(AutoRecoveryError::Spawn)?;
        Ok(AutoRecovery {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}
