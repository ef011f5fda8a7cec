//! Taking backups: [`Maintainer::backup_all`] and [`Maintainer::backup_one`]. A run holds the
//! maintenance lock, backs the tables up one after the other (a failing table does not stop
//! the others), applies retention after each success and publishes `backup_complete`, plus
//! `backup_failed` when a table failed.
//!
//! One table ([`Maintainer::backup_table`]):
//!
//! 1. The owner hands out a read snapshot (refused when the table is not serving); its
//!    records are copied into a fresh work file `.<id>.redb.tmp`, never a copy of the live
//!    file, which could tear while it is written. The table keeps serving meanwhile.
//! 2. The work file is opened with redb's integrity check and its record count compared with
//!    the copy's; only then is it hashed (blake3), fsynced, renamed to `<id>.redb` and the
//!    directory fsynced.
//! 3. The manifest is written the same way (temporary file, fsync, rename, directory fsync).
//!    On any failure the work file, and the backup file when it has no manifest, are removed.
//!
//! Every step that moves the file's bytes (the copy, the check, the hash) is paced by the
//! tables' shared I/O pacer ([`store_owners::Stores::pacer`]).

use std::time::{Duration, Instant, SystemTime};

use store_core::{CopyError, fsutil};
use store_owners::{MaintenanceError, TABLE_NAMES};

use super::error::{BackupError, BackupRequestError};
use super::manifest::{BackupManifest, MANIFEST_FORMAT, backup_id_at};
use super::verify::{hash_file, integrity_and_count};
use crate::events::Event;
use crate::maintainer::Maintainer;
use crate::operations::OperationKind;
use crate::report::{BackupFailure, BackupRun, BackupTrigger, TableBackup};

/// How a backup run is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackupOptions {
    /// Recorded in the run and its events.
    pub trigger: BackupTrigger,
    /// Wait for a maintenance operation in progress to end, instead of failing with
    /// [`BackupRequestError::Busy`].
    pub wait: bool,
}

/// Remove the dot-files a crashed backup or verification left in a table's backup dir (each
/// up to a table's size: given back gradually, paced by `pacer`).
fn remove_work_files(dir: &std::path::Path, pacer: &store_core::Pacer) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            tracing::info!(file = %entry.path().display(), "removing a leftover backup work file");
            let _ = fsutil::remove_file_gradually(&entry.path(), pacer);
        }
    }
}

impl Maintainer {
    /// Back up every table, one after the other. A table that fails does not stop the others.
    /// Publishes `backup_complete` with the whole run, and `backup_failed` with the failures
    /// when there are any.
    pub fn backup_all(&self, options: BackupOptions) -> Result<BackupRun, BackupRequestError> {
        let _guard = self
            .op_lock
            .take(options.wait)
            .map_err(|_busy| BackupRequestError::Busy)?;
        Ok(self.backup_run(&TABLE_NAMES, options.trigger))
    }

    /// Back up one table. Same events as [`Maintainer::backup_all`].
    pub fn backup_one(
        &self,
        table: &str,
        options: BackupOptions,
    ) -> Result<BackupRun, BackupRequestError> {
        let name = TABLE_NAMES
            .iter()
            .copied()
            .find(|t| *t == table)
            .ok_or_else(|| BackupRequestError::UnknownTable(table.to_string()))?;
        let _guard = self
            .op_lock
            .take(options.wait)
            .map_err(|_busy| BackupRequestError::Busy)?;
        Ok(self.backup_run(&[name], options.trigger))
    }

    fn backup_run(&self, tables: &[&'static str], trigger: BackupTrigger) -> BackupRun {
        let started_at = SystemTime::now();
        let started = Instant::now();
        let mut run = BackupRun {
            trigger,
            started_at,
            duration: Duration::ZERO,
            backups: Vec::new(),
            failures: Vec::new(),
        };
        for &table in tables {
            match self.backup_table(table) {
                Ok(mut backup) => {
                    backup.removed = self.apply_retention(table);
                    self.prune_change_log(table);
                    tracing::info!(table, id = %backup.id, records = backup.records, bytes = backup.bytes, "backup written");
                    run.backups.push(backup);
                }
                Err(e) => {
                    tracing::error!(table, error = %e, "backup failed");
                    let corruption = matches!(e, BackupError::Corrupted(_));
                    run.failures.push(BackupFailure {
                        table: table.to_string(),
                        error: e.to_string(),
                        corruption,
                    });
                }
            }
        }
        run.duration = started.elapsed();
        self.bus.publish(Event::BackupComplete { run: run.clone() });
        if !run.failures.is_empty() {
            self.bus.publish(Event::BackupFailed {
                failures: run.failures.clone(),
            });
        }
        run
    }

    /// Delete the change-log segments of `table` that no kept backup needs: those before the
    /// oldest kept backup's log position (a backup without one keeps the whole log), and,
    /// with `[remote]`, shipped off-site already.
    fn prune_change_log(&self, table: &str) {
        let Some(owner) = self.owner_of(table) else {
            return;
        };
        if owner.shared().log().is_none() {
            return;
        }
        let kept = match super::verify::list_table_backups(&self.backup_dir, table) {
            Ok(kept) => kept,
            Err(e) => {
                tracing::warn!(table, error = %e, "change log not pruned: backups not listed");
                return;
            }
        };
        let oldest = kept
            .iter()
            .map(|b| {
                b.manifest
                    .as_ref()
                    .and_then(|m| m.log_position)
                    .unwrap_or(0)
            })
            .min()
            .unwrap_or(0);
        // With off-site shipping, never past what is shipped.
        let oldest = self
            .log_prune_bound(table)
            .map_or(oldest, |shipped| oldest.min(shipped));
        match owner.prune_log(oldest) {
            Ok(0) => {}
            Ok(freed) => tracing::info!(table, freed, through = oldest, "change log pruned"),
            Err(e) => tracing::warn!(table, error = %e, "change log not pruned"),
        }
    }

    /// Back up one table (the caller holds the maintenance lock); see the module doc.
    fn backup_table(&self, table: &str) -> Result<TableBackup, BackupError> {
        let started = Instant::now();
        let owner = self
            .owner_of(table)
            .ok_or_else(|| BackupError::UnknownTable(table.to_string()))?;
        let dir = self.table_backup_dir(table);
        fsutil::create_dir_durably(&self.backup_dir)
            .and_then(|_| fsutil::create_dir_durably(&dir))
            .map_err(|source| BackupError::Io {
                what: format!("creating {}", dir.display()),
                source,
            })?;
        remove_work_files(&dir, self.stores.pacer());

        let snapshot = owner.snapshot().map_err(|e| match e {
            MaintenanceError::Corrupted(d) => BackupError::Corrupted(d),
            other => BackupError::Snapshot(other),
        })?;
        let created_at = SystemTime::now();
        let log_position = owner.shared().log().map(|_| snapshot.log_position());
        let mut id = backup_id_at(created_at);
        let mut bump = 1;
        while dir.join(format!("{id}.redb")).exists() || dir.join(format!("{id}.json")).exists() {
            id = backup_id_at(created_at + Duration::from_millis(bump));
            bump += 1;
        }
        let tmp = dir.join(format!(".{id}.redb.tmp"));
        let final_path = dir.join(format!("{id}.redb"));
        let manifest_path = dir.join(format!("{id}.json"));

        let pacer = self.stores.pacer();
        // Listed while it runs. Its bytes: the copy (the live bytes), then the check and the
        // hash (the copy's file, each): estimated from the live bytes until the copy's size
        // is known.
        let operation = self.operations.begin(OperationKind::Backup, table, "copy");
        let progress = operation.progress();
        progress.estimate_total(3 * owner.shared().counters().live_bytes);
        let result = (|| {
            let stats = snapshot
                .copy_to_file(&tmp, &|_| true, pacer, progress)
                .map_err(|e| match e {
                    CopyError::Corrupted(d) => BackupError::Corrupted(d),
                    other => BackupError::Copy(other),
                })?;
            // Release the snapshot promptly: it holds back page reuse in the live file.
            drop(snapshot);
            progress.set_total(progress.read().bytes_done + 2 * stats.file_bytes);
            progress.set_phase("check");
            let records =
                integrity_and_count(&tmp, pacer, progress).map_err(BackupError::Verify)?;
            if records != stats.records {
                return Err(BackupError::CountMismatch {
                    copied: stats.records,
                    found: records,
                });
            }
            let io = |what: &str| {
                let what = format!("{what} {}", tmp.display());
                move |source| BackupError::Io { what, source }
            };
            progress.set_phase("hash");
            let (blake3, bytes) = hash_file(&tmp, None, pacer, progress).map_err(io("hashing"))?;
            fsutil::sync_file(&tmp).map_err(io("fsync of"))?;
            fsutil::replace_file(&tmp, &final_path).map_err(io("renaming"))?;
            let manifest = BackupManifest {
                format: MANIFEST_FORMAT,
                id: id.clone(),
                table: table.to_string(),
                records,
                bytes,
                blake3: blake3.clone(),
                created_at,
                log_position,
            };
            let json = serde_json::to_vec_pretty(&manifest).map_err(BackupError::EncodeManifest)?;
            fsutil::write_file_atomically(&manifest_path, &json).map_err(|source| {
                BackupError::Io {
                    what: format!("writing {}", manifest_path.display()),
                    source,
                }
            })?;
            Ok(TableBackup {
                table: table.to_string(),
                id: id.clone(),
                path: final_path.clone(),
                records,
                bytes,
                blake3,
                duration: started.elapsed(),
                removed: Vec::new(),
            })
        })();
        if result.is_err() {
            let _ = fsutil::remove_file_gradually(&tmp, self.stores.pacer());
            if !manifest_path.exists() {
                let _ = fsutil::remove_file_gradually(&final_path, self.stores.pacer());
            }
        }
        result
    }
}
