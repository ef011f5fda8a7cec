//! Hot, verified backups of each table, with a manifest beside every backup file, retention,
//! and a schedule.
//!
//! # Layout on disk
//!
//! `<backup_dir>/<table>/<id>.redb` and `<backup_dir>/<table>/<id>.json`, where `<id>` is the
//! UTC time the backup was taken, `20261125T230102.123Z`. Directories are mode 0700, files
//! 0600. Work files start with a dot (`.<id>.redb.tmp`, `.verify-<id>.tmp`) and are never
//! listed; leftovers of a crash are removed by the next backup of the table.
//!
//! # How a backup is made
//!
//! 1. The owner hands out a read snapshot; the backup copies the snapshot's records into a
//!    fresh file (never a copy of the live file, which could tear while it is written). The
//!    table keeps serving meanwhile.
//! 2. The fresh file is opened with redb's integrity check and its record count compared with
//!    the snapshot's; only then is it hashed (blake3), fsynced, renamed to `<id>.redb` and the
//!    directory fsynced.
//! 3. The manifest is written the same way (temporary file, fsync, rename, directory fsync).
//!
//! # Verification
//!
//! [`Maintainer::verify_backup`] checks that the file's checksum matches the manifest, that
//! redb's integrity check passes and that the record count matches. The integrity check
//! commits to the file it checks, so it runs on a work copy written while hashing (a backup
//! file is never modified after its manifest was written).
//!
//! # Retention
//!
//! After each successful backup of a table, its backups are sorted newest first and each is
//! checked against its manifest (size and checksum: since a manifest is written only after its
//! file passed the full verification, a matching checksum proves the bytes are the verified
//! ones). The newest [`crate::BackupConfig::keep`] good ones are kept (at least one), older
//! good ones are deleted. A bad backup (corrupt, or without a usable manifest) is deleted only
//! when it is older than the oldest kept good one, so only when a newer verified backup
//! exists; bad backups newer than that are left for an operator to inspect. When no good
//! backup exists nothing is deleted.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard, TryLockError, Weak};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use store_core::{CopyError, OpenError, RedbStore, StoreOptions, TableStore, fsutil};
use store_owners::{MaintenanceError, OwnerHandle, TABLE_NAMES};

use crate::events::Event;
use crate::maintainer::Maintainer;
use crate::scheduler::{Schedule, StartScheduleError};

/// Version of the manifest format written by this code.
pub const MANIFEST_FORMAT: u32 = 1;

/// Mode of backup files and manifests.
pub const FILE_MODE: u32 = fsutil::FILE_MODE;

/// What started a backup run: the same type as a compaction run's trigger (`manual` or
/// `schedule`).
pub type BackupTrigger = crate::compact::Trigger;

/// How a backup run is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackupOptions {
    /// Recorded in the run and its events.
    pub trigger: BackupTrigger,
    /// Wait for a maintenance operation in progress to end, instead of failing with
    /// [`BackupRequestError::Busy`].
    pub wait: bool,
}

/// The manifest written beside each backup file (`<id>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// Manifest format version ([`MANIFEST_FORMAT`]).
    pub format: u32,
    /// The backup id (the file stem).
    pub id: String,
    /// The table the backup was taken from.
    pub table: String,
    /// Records in the backup.
    pub records: u64,
    /// Size of the backup file in bytes.
    pub bytes: u64,
    /// blake3 checksum of the backup file, lowercase hex.
    pub blake3: String,
    /// When the snapshot was taken.
    #[serde(with = "humantime_serde")]
    pub created_at: SystemTime,
}

/// What is known about one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum BackupState {
    /// Checksum, integrity check and record count all verified just now.
    Verified,
    /// The manifest is readable and the file has the size it records; not verified further.
    Unchecked,
    /// The backup cannot be used, and why.
    Corrupt(String),
}

/// One backup as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The table it was taken from.
    pub table: String,
    /// Its id (UTC timestamp).
    pub id: String,
    /// The backup file.
    pub path: PathBuf,
    /// Its manifest, when readable.
    pub manifest: Option<BackupManifest>,
    /// Verified, unchecked or corrupt.
    #[serde(flatten)]
    pub state: BackupState,
}

/// One backup a run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableBackup {
    /// The table.
    pub table: String,
    /// The new backup's id.
    pub id: String,
    /// The new backup file.
    pub path: PathBuf,
    /// Records copied.
    pub records: u64,
    /// Size of the backup file.
    pub bytes: u64,
    /// blake3 checksum of the backup file.
    pub blake3: String,
    /// Wall time of the backup, verification included.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Ids of older backups that retention deleted.
    pub removed: Vec<String>,
}

/// One table a run failed to back up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFailure {
    /// The table.
    pub table: String,
    /// What went wrong.
    pub error: String,
    /// Whether the live table's snapshot turned out to be corrupt.
    pub corruption: bool,
}

/// The result of [`Maintainer::backup_all`] or [`Maintainer::backup_one`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRun {
    /// What started it.
    pub trigger: BackupTrigger,
    /// When it started.
    #[serde(with = "humantime_serde")]
    pub started_at: SystemTime,
    /// How long it took.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Backups made, in table order.
    pub backups: Vec<TableBackup>,
    /// Tables that failed, in table order.
    pub failures: Vec<BackupFailure>,
}

/// A backup run could not start (per-table failures are in [`BackupRun::failures`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupRequestError {
    /// Another maintenance operation is running and the request did not ask to wait.
    #[error("another maintenance operation is running")]
    Busy,
    /// Not one of the nine tables.
    #[error("unknown table {0:?}")]
    UnknownTable(String),
}

/// Backing up one table failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The owner could not hand out a snapshot.
    #[error("cannot take a snapshot: {0}")]
    Snapshot(MaintenanceError),
    /// The live table is corrupt: its snapshot did not read back.
    #[error("the table is corrupt: {0}")]
    Corrupted(String),
    /// Copying the snapshot into the backup file failed.
    #[error("copying the snapshot failed: {0}")]
    Copy(String),
    /// The fresh backup file did not pass its own verification.
    #[error("the new backup does not verify: {0}")]
    Verify(String),
    /// A file-system step failed.
    #[error("{what}: {source}")]
    Io {
        /// The step.
        what: String,
        /// The failure.
        source: io::Error,
    },
}

/// Verifying a backup failed, or found it unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not one of the nine tables.
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    /// The id has characters a backup id never has (path traversal, for instance).
    #[error("invalid backup id {0:?}")]
    InvalidBackupId(String),
    /// No backup file with this id.
    #[error("no backup {id} of table {table}")]
    NotFound {
        /// The table.
        table: String,
        /// The id asked for.
        id: String,
    },
    /// The manifest is missing or does not parse.
    #[error("manifest unusable: {0}")]
    Manifest(String),
    /// The manifest is of a format this build does not read (written by a newer version).
    #[error("manifest format {found} is not supported (this build reads format {supported})")]
    UnsupportedFormat {
        /// From the manifest.
        found: u32,
        /// [`MANIFEST_FORMAT`].
        supported: u32,
    },
    /// The file size differs from the manifest.
    #[error("size is {actual} bytes, manifest says {expected}")]
    SizeMismatch {
        /// From the manifest.
        expected: u64,
        /// On disk.
        actual: u64,
    },
    /// The checksum differs from the manifest.
    #[error("checksum is {actual}, manifest says {expected}")]
    ChecksumMismatch {
        /// From the manifest.
        expected: String,
        /// Computed now.
        actual: String,
    },
    /// redb's integrity check failed.
    #[error("integrity check failed: {0}")]
    Corrupted(String),
    /// The record count differs from the manifest.
    #[error("holds {actual} records, manifest says {expected}")]
    RecordCountMismatch {
        /// From the manifest.
        expected: u64,
        /// Counted now.
        actual: u64,
    },
    /// A file-system step failed.
    #[error("{what}: {source}")]
    Io {
        /// The step.
        what: String,
        /// The failure.
        source: io::Error,
    },
}

impl VerifyError {
    /// True when the backup itself is bad (as opposed to the request or the file system).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            VerifyError::Manifest(_)
                | VerifyError::UnsupportedFormat { .. }
                | VerifyError::SizeMismatch { .. }
                | VerifyError::ChecksumMismatch { .. }
                | VerifyError::Corrupted(_)
                | VerifyError::RecordCountMismatch { .. }
        )
    }
}

/// Listing backups failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListBackupsError {
    /// Not one of the nine tables.
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    /// A backup dir could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The dir.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

/// Whether `id` has the shape of a backup id: `[0-9A-Za-z._-]`, not starting with a dot, at
/// most 64 characters. Rejects every path (`../x`, `a/b`) and every work file.
pub fn is_valid_backup_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The backup id for `time`: its UTC timestamp, `20261125T230102.123Z`.
pub fn backup_id_at(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time)
        .to_string()
        .replace(['-', ':'], "")
}

/// Create `dir` (and parents) with mode 0700, each new one made durable (its parent
/// fsynced), and make sure an existing one is 0700 too.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    fsutil::create_dir_durably(dir).map(drop)
}

/// Stream `src` into blake3, and into `copy` (created new, mode 0600, fsynced) when given.
/// Returns the hex checksum and the number of bytes read.
pub(crate) fn hash_file(src: &Path, copy: Option<&Path>) -> io::Result<(String, u64)> {
    let mut input = File::open(src)?;
    let mut output = match copy {
        Some(path) => Some(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(path)?,
        ),
        None => None,
    };
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        if let Some(out) = &mut output {
            out.write_all(&buffer[..n])?;
        }
        total += n as u64;
    }
    if let Some(out) = output {
        out.sync_all()?;
    }
    Ok((hasher.finalize().to_hex().to_string(), total))
}

/// Open `path` (a copy nobody else uses) with redb's integrity check and return its record
/// count. The check commits to the file.
pub(crate) fn integrity_and_count(path: &Path) -> Result<u64, VerifyError> {
    let options = StoreOptions {
        check_integrity_on_open: true,
        cache_bytes: 16 << 20,
        ..StoreOptions::default()
    };
    let store = RedbStore::open(path, &options).map_err(|e| match e {
        OpenError::Corrupted { detail, .. } => VerifyError::Corrupted(detail),
        // Not classified as damage: most likely the environment (a full disk: the check
        // commits). Never reason enough to call a backup corrupt.
        other => VerifyError::Io {
            what: format!("opening {}", path.display()),
            source: io::Error::other(other.to_string()),
        },
    })?;
    let records = store.counters().records;
    if let Err(e) = store.close() {
        return Err(VerifyError::Io {
            what: "closing the verified copy".into(),
            source: io::Error::other(e.to_string()),
        });
    }
    Ok(records)
}

fn read_manifest(path: &Path) -> Result<BackupManifest, VerifyError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(VerifyError::Manifest("manifest missing".into()));
        }
        Err(e) => {
            return Err(VerifyError::Io {
                what: format!("reading {}", path.display()),
                source: e,
            });
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| VerifyError::Manifest(e.to_string()))
}

/// Remove the dot-files a crashed backup or verification left in a table's backup dir.
fn remove_work_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            tracing::info!(file = %entry.path().display(), "removing a leftover backup work file");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// One backup found on disk, before any check.
struct Found {
    id: String,
    file: PathBuf,
    manifest: PathBuf,
}

impl Maintainer {
    /// The dir holding `table`'s backups.
    pub fn table_backup_dir(&self, table: &str) -> PathBuf {
        self.backup_dir.join(table)
    }

    pub(crate) fn owner_of(&self, table: &str) -> Option<&OwnerHandle> {
        self.stores.owner(table)
    }

    /// Take the maintenance lock, waiting for it or not.
    pub(crate) fn lock_ops(&self, wait: bool) -> Option<MutexGuard<'_, ()>> {
        if wait {
            Some(self.op_lock.lock().unwrap_or_else(|p| p.into_inner()))
        } else {
            match self.op_lock.try_lock() {
                Ok(guard) => Some(guard),
                Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            }
        }
    }

    /// Back up every table, one after the other. A table that fails does not stop the others.
    /// Publishes `backup_complete` with the whole run, and `backup_failed` with the failures
    /// when there are any.
    pub fn backup_all(&self, options: BackupOptions) -> Result<BackupRun, BackupRequestError> {
        let _guard = self
            .lock_ops(options.wait)
            .ok_or(BackupRequestError::Busy)?;
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
            .lock_ops(options.wait)
            .ok_or(BackupRequestError::Busy)?;
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

    /// Back up one table (the caller holds the maintenance lock).
    fn backup_table(&self, table: &str) -> Result<TableBackup, BackupError> {
        let started = Instant::now();
        let owner = self.owner_of(table).ok_or_else(|| {
            BackupError::Snapshot(MaintenanceError::Unavailable(format!(
                "unknown table {table}"
            )))
        })?;
        let dir = self.table_backup_dir(table);
        create_private_dir(&self.backup_dir)
            .and_then(|()| create_private_dir(&dir))
            .map_err(|source| BackupError::Io {
                what: format!("creating {}", dir.display()),
                source,
            })?;
        remove_work_files(&dir);

        let snapshot = owner.snapshot().map_err(|e| match e {
            MaintenanceError::Corrupted(d) => BackupError::Corrupted(d),
            other => BackupError::Snapshot(other),
        })?;
        let created_at = SystemTime::now();
        let mut id = backup_id_at(created_at);
        let mut bump = 1;
        while dir.join(format!("{id}.redb")).exists() || dir.join(format!("{id}.json")).exists() {
            id = backup_id_at(created_at + Duration::from_millis(bump));
            bump += 1;
        }
        let tmp = dir.join(format!(".{id}.redb.tmp"));
        let final_path = dir.join(format!("{id}.redb"));
        let manifest_path = dir.join(format!("{id}.json"));

        let result = (|| {
            let stats = snapshot
                .copy_to_file(&tmp, &|_| true)
                .map_err(|e| match e {
                    CopyError::Corrupted(d) => BackupError::Corrupted(d),
                    other => BackupError::Copy(other.to_string()),
                })?;
            // Release the snapshot promptly: it holds back page reuse in the live file.
            drop(snapshot);
            let records =
                integrity_and_count(&tmp).map_err(|e| BackupError::Verify(e.to_string()))?;
            if records != stats.records {
                return Err(BackupError::Verify(format!(
                    "holds {records} records, {} were copied",
                    stats.records
                )));
            }
            let io = |what: &str| {
                let what = format!("{what} {}", tmp.display());
                move |source| BackupError::Io { what, source }
            };
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(FILE_MODE))
                .map_err(io("setting the mode of"))?;
            let (blake3, bytes) = hash_file(&tmp, None).map_err(io("hashing"))?;
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
            };
            let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Io {
                what: "encoding the manifest".into(),
                source: io::Error::other(e),
            })?;
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
            let _ = std::fs::remove_file(&tmp);
            if !manifest_path.exists() {
                let _ = std::fs::remove_file(&final_path);
            }
        }
        result
    }

    /// The backups of `table` on disk, newest first, unchecked.
    fn found_backups(&self, table: &str) -> Result<Vec<Found>, ListBackupsError> {
        let dir = self.table_backup_dir(table);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(ListBackupsError::Io { path: dir, source }),
        };
        let mut ids = std::collections::BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(|source| ListBackupsError::Io {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let stem = name
                .strip_suffix(".redb")
                .or_else(|| name.strip_suffix(".json"));
            if let Some(stem) = stem
                && is_valid_backup_id(stem)
            {
                ids.insert(stem.to_string());
            }
        }
        Ok(ids
            .into_iter()
            .rev()
            .map(|id| Found {
                file: dir.join(format!("{id}.redb")),
                manifest: dir.join(format!("{id}.json")),
                id,
            })
            .collect())
    }

    /// Cheap check: manifest readable, consistent, file present with the recorded size.
    fn shallow_check(&self, table: &str, found: &Found) -> Result<BackupManifest, VerifyError> {
        let manifest = read_manifest(&found.manifest)?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(VerifyError::UnsupportedFormat {
                found: manifest.format,
                supported: MANIFEST_FORMAT,
            });
        }
        if manifest.id != found.id || manifest.table != table {
            return Err(VerifyError::Manifest(format!(
                "manifest is for backup {} of table {}",
                manifest.id, manifest.table
            )));
        }
        let actual = match std::fs::metadata(&found.file) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VerifyError::NotFound {
                    table: table.to_string(),
                    id: found.id.clone(),
                });
            }
            Err(source) => {
                return Err(VerifyError::Io {
                    what: format!("stat {}", found.file.display()),
                    source,
                });
            }
        };
        if actual != manifest.bytes {
            return Err(VerifyError::SizeMismatch {
                expected: manifest.bytes,
                actual,
            });
        }
        Ok(manifest)
    }

    /// Shallow check plus checksum; used by retention (see the module doc for why that is
    /// enough there).
    fn checksum_check(&self, table: &str, found: &Found) -> Result<BackupManifest, VerifyError> {
        let manifest = self.shallow_check(table, found)?;
        let (actual, _) = hash_file(&found.file, None).map_err(|source| VerifyError::Io {
            what: format!("reading {}", found.file.display()),
            source,
        })?;
        if actual != manifest.blake3 {
            return Err(VerifyError::ChecksumMismatch {
                expected: manifest.blake3,
                actual,
            });
        }
        Ok(manifest)
    }

    /// Full verification of one found backup, through a work copy at `work` (created here;
    /// the caller removes it, or uses it: it holds exactly the verified bytes, as checked).
    pub(crate) fn verify_found_into(
        &self,
        table: &str,
        id: &str,
        work: &Path,
    ) -> Result<BackupManifest, VerifyError> {
        if !is_valid_backup_id(id) {
            return Err(VerifyError::InvalidBackupId(id.to_string()));
        }
        let dir = self.table_backup_dir(table);
        let found = Found {
            id: id.to_string(),
            file: dir.join(format!("{id}.redb")),
            manifest: dir.join(format!("{id}.json")),
        };
        if !found.file.exists() && !found.manifest.exists() {
            return Err(VerifyError::NotFound {
                table: table.to_string(),
                id: id.to_string(),
            });
        }
        let manifest = self.shallow_check(table, &found)?;
        let _ = std::fs::remove_file(work);
        let (actual, _) = hash_file(&found.file, Some(work)).map_err(|source| VerifyError::Io {
            what: format!("copying {} to {}", found.file.display(), work.display()),
            source,
        })?;
        if actual != manifest.blake3 {
            return Err(VerifyError::ChecksumMismatch {
                expected: manifest.blake3,
                actual,
            });
        }
        let records = integrity_and_count(work)?;
        if records != manifest.records {
            return Err(VerifyError::RecordCountMismatch {
                expected: manifest.records,
                actual: records,
            });
        }
        Ok(manifest)
    }

    /// Verify backup `id` of `table`: the checksum matches the manifest, redb's integrity
    /// check passes, the record count matches. The backup file itself is only read.
    pub fn verify_backup(&self, table: &str, id: &str) -> Result<BackupInfo, VerifyError> {
        if self.owner_of(table).is_none() {
            return Err(VerifyError::UnknownTable(table.to_string()));
        }
        if !is_valid_backup_id(id) {
            return Err(VerifyError::InvalidBackupId(id.to_string()));
        }
        let work = self
            .table_backup_dir(table)
            .join(format!(".verify-{id}.tmp"));
        let result = self.verify_found_into(table, id, &work);
        let _ = std::fs::remove_file(&work);
        let manifest = result?;
        Ok(BackupInfo {
            table: table.to_string(),
            id: id.to_string(),
            path: self.table_backup_dir(table).join(format!("{id}.redb")),
            manifest: Some(manifest),
            state: BackupState::Verified,
        })
    }

    /// The backups of `table`, newest first. With `verify`, each is fully verified (slow: reads
    /// every file); without, only its manifest and size are checked.
    pub fn backups_of(
        &self,
        table: &str,
        verify: bool,
    ) -> Result<Vec<BackupInfo>, ListBackupsError> {
        if self.owner_of(table).is_none() {
            return Err(ListBackupsError::UnknownTable(table.to_string()));
        }
        let found = self.found_backups(table)?;
        Ok(found
            .into_iter()
            .map(|f| {
                let manifest = read_manifest(&f.manifest).ok();
                let state = if verify {
                    match self.verify_backup(table, &f.id) {
                        Ok(_) => BackupState::Verified,
                        Err(e) => BackupState::Corrupt(e.to_string()),
                    }
                } else {
                    match self.shallow_check(table, &f) {
                        Ok(_) => BackupState::Unchecked,
                        Err(e) => BackupState::Corrupt(e.to_string()),
                    }
                };
                BackupInfo {
                    table: table.to_string(),
                    id: f.id,
                    path: f.file,
                    manifest,
                    state,
                }
            })
            .collect())
    }

    /// The backups of every table, table by table (in [`TABLE_NAMES`] order), newest first.
    pub fn list_backups(&self, verify: bool) -> Result<Vec<BackupInfo>, ListBackupsError> {
        let mut all = Vec::new();
        for table in TABLE_NAMES {
            all.extend(self.backups_of(table, verify)?);
        }
        Ok(all)
    }

    /// The newest backup of `table` whose manifest and size check out (not fully verified).
    pub fn last_backup(&self, table: &str) -> Option<BackupInfo> {
        self.owner_of(table)?;
        let found = self.found_backups(table).ok()?;
        found.into_iter().find_map(|f| {
            let manifest = self.shallow_check(table, &f).ok()?;
            Some(BackupInfo {
                table: table.to_string(),
                id: f.id,
                path: f.file,
                manifest: Some(manifest),
                state: BackupState::Unchecked,
            })
        })
    }

    /// Apply retention to `table`'s backups (see the module doc); returns the ids deleted.
    fn apply_retention(&self, table: &str) -> Vec<String> {
        let keep = self.config.backup.keep.max(1);
        let Ok(found) = self.found_backups(table) else {
            return Vec::new();
        };
        let checked: Vec<(Found, bool)> = found
            .into_iter()
            .map(|f| {
                let good = match self.checksum_check(table, &f) {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(table, id = %f.id, error = %e, "backup does not verify");
                        false
                    }
                };
                (f, good)
            })
            .collect();
        let n_good = checked.iter().filter(|(_, good)| *good).count();
        if n_good == 0 {
            return Vec::new();
        }
        let mut removed = Vec::new();
        let mut kept_good = 0;
        for (f, good) in checked {
            let delete = if good {
                kept_good += 1;
                kept_good > keep
            } else {
                // Older than the oldest kept good backup iff we already kept `keep` of them or
                // every good one is newer.
                kept_good >= keep.min(n_good)
            };
            if delete {
                let _ = std::fs::remove_file(&f.file);
                let _ = std::fs::remove_file(&f.manifest);
                tracing::info!(table, id = %f.id, verified = good, "backup removed by retention");
                removed.push(f.id);
            }
        }
        if !removed.is_empty() {
            let _ = fsutil::sync_parent_dir(&self.table_backup_dir(table).join("x"));
        }
        removed
    }

    /// Start the backup schedule: every [`crate::BackupConfig::interval`], back up all tables
    /// with trigger `schedule` (waiting for a maintenance operation in progress to end). The
    /// first run is one interval from now. The schedule holds the maintainer weakly: once the
    /// maintainer is gone, runs do nothing.
    pub fn start_backup_schedule(self: &Arc<Self>) -> Result<Schedule, StartScheduleError> {
        let maintainer: Weak<Maintainer> = Arc::downgrade(self);
        Schedule::start("backup-schedule", self.config.backup.interval, move || {
            let Some(maintainer) = maintainer.upgrade() else {
                return;
            };
            let options = BackupOptions {
                trigger: BackupTrigger::Schedule,
                wait: true,
            };
            if let Err(e) = maintainer.backup_all(options) {
                tracing::error!(error = %e, "scheduled backup did not run");
            }
        })
    }
}
