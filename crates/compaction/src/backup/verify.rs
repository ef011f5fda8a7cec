//! Listing and verifying backups. Three depths of check, each a superset of the last:
//!
//! - shallow ([`Maintainer::last_backup`], listings without `verify`): the manifest reads, is
//!   of a known format, describes this backup, and the file has the size it records;
//! - checksum (retention): shallow, plus the file's blake3 matches the manifest;
//! - full ([`Maintainer::verify_backup`], listings with `verify`, every restore): checksum,
//!   redb's integrity check and the record count. The integrity check commits to the file it
//!   checks, so it runs on a work copy written while hashing (`.verify-<id>.tmp`, or the staged
//!   restore file): a backup file is never modified after its manifest was written.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use store_core::{OpenError, Pacer, Progress, RedbStore, StoreOptions, TableStore};
use store_owners::TABLE_NAMES;

use super::error::{ListBackupsError, VerifyError};
use super::manifest::{
    BackupFiles, BackupManifest, FILE_MODE, is_valid_backup_id, read_checked_manifest,
    read_manifest,
};
use crate::maintainer::Maintainer;
use crate::operations::OperationKind;

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
    /// When the backup was last fully verified (checksum, integrity check, record count): by
    /// the last `verify`, else when it was made (a backup is verified before it is listed).
    /// `None` when its manifest cannot be read.
    #[serde(default, with = "humantime_serde")]
    pub verified_at: Option<std::time::SystemTime>,
}

/// Where the time of a backup's last full verification is kept, beside it.
pub(super) fn verified_marker(dir: &Path, id: &str) -> std::path::PathBuf {
    dir.join(format!("{id}.verified"))
}

/// The last full verification of backup `id` in `dir`: the marker a `verify` wrote, else the
/// backup's creation (it was verified before its manifest was written).
fn last_verified(
    dir: &Path,
    id: &str,
    manifest: Option<&BackupManifest>,
) -> Option<std::time::SystemTime> {
    let marked = std::fs::read_to_string(verified_marker(dir, id))
        .ok()
        .and_then(|text| humantime::parse_rfc3339(text.trim()).ok());
    marked.or(manifest.map(|m| m.created_at))
}

/// Stream `src` into blake3, and into `copy` (created new, mode 0600, fsynced) when given,
/// paced by `pacer` (bytes read, plus bytes written when copying) and advancing `progress` by
/// the bytes read. Returns the hex checksum and the number of bytes read.
pub(super) fn hash_file(
    src: &Path,
    copy: Option<&Path>,
    pacer: &Pacer,
    progress: &Progress,
) -> io::Result<(String, u64)> {
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
        let mut moved = n as u64;
        if let Some(out) = &mut output {
            out.write_all(&buffer[..n])?;
            moved += n as u64;
        }
        total += n as u64;
        pacer.pace(moved);
        progress.advance(n as u64);
    }
    if let Some(out) = output {
        out.sync_all()?;
    }
    Ok((hasher.finalize().to_hex().to_string(), total))
}

/// Open `path` (a copy nobody else uses) with redb's integrity check and return its record
/// count. The check reads the whole file and commits to it, every byte paid to `pacer` as it
/// goes; `progress` advances by the file's size once it is done.
pub(crate) fn integrity_and_count(
    path: &Path,
    pacer: &Arc<Pacer>,
    progress: &Progress,
) -> Result<u64, VerifyError> {
    let options = StoreOptions {
        check_integrity_on_open: true,
        cache_bytes: 16 << 20,
        ..StoreOptions::default()
    };
    let store = RedbStore::open_paced(path, &options, pacer.clone()).map_err(|e| match e {
        OpenError::Corrupted { detail, .. } => VerifyError::Corrupted(detail),
        // Not classified as damage: most likely the environment (a full disk: the check
        // commits). Never reason enough to call a backup corrupt.
        source => VerifyError::Open {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let records = store.counters().records;
    store.close().map_err(VerifyError::Close)?;
    progress.advance(std::fs::metadata(path).map_or(0, |m| m.len()));
    Ok(records)
}

/// The backups in a table's backup dir `dir`, newest first, unchecked.
fn found_in(dir: &Path) -> Result<Vec<BackupFiles>, ListBackupsError> {
    let dir = dir.to_path_buf();
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
        .map(|id| BackupFiles::new(&dir, id))
        .collect())
}

/// The manifest of `found` reads and matches `table`, and the file has the size it records.
fn shallow_check(table: &str, found: &BackupFiles) -> Result<BackupManifest, VerifyError> {
    let manifest = read_checked_manifest(table, found)?;
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

/// The backups of `table` in `backup_dir` (`<backup_dir>/<table>/`), newest first, each
/// checked shallowly (manifest and size), without opening any table: what `backups` lists
/// when no daemon runs.
pub fn list_table_backups(
    backup_dir: &Path,
    table: &str,
) -> Result<Vec<BackupInfo>, ListBackupsError> {
    if !TABLE_NAMES.contains(&table) {
        return Err(ListBackupsError::UnknownTable(table.to_string()));
    }
    let dir = backup_dir.join(table);
    Ok(found_in(&dir)?
        .into_iter()
        .map(|f| {
            // A backup that fails the check still shows its manifest, if it reads.
            let (manifest, state) = match shallow_check(table, &f) {
                Ok(m) => (Some(m), BackupState::Unchecked),
                Err(e) => (
                    read_manifest(&f.manifest).ok(),
                    BackupState::Corrupt(e.to_string()),
                ),
            };
            BackupInfo {
                table: table.to_string(),
                verified_at: last_verified(&dir, &f.id, manifest.as_ref()),
                id: f.id,
                path: f.file,
                manifest,
                state,
            }
        })
        .collect())
}

/// [`list_table_backups`] of the nine tables, in [`TABLE_NAMES`] order.
pub fn list_all_backups(backup_dir: &Path) -> Result<Vec<BackupInfo>, ListBackupsError> {
    let mut all = Vec::new();
    for table in TABLE_NAMES {
        all.extend(list_table_backups(backup_dir, table)?);
    }
    Ok(all)
}

impl Maintainer {
    /// The backups of `table` on disk, newest first, unchecked.
    pub(super) fn found_backups(&self, table: &str) -> Result<Vec<BackupFiles>, ListBackupsError> {
        found_in(&self.table_backup_dir(table))
    }

    /// Shallow check plus checksum; used by retention (see [`super::retention`] for why that
    /// is enough there). Listed as a verification while it reads.
    pub(super) fn checksum_check(
        &self,
        table: &str,
        found: &BackupFiles,
    ) -> Result<BackupManifest, VerifyError> {
        let manifest = shallow_check(table, found)?;
        let operation = self.operations.begin(OperationKind::Verify, table, "hash");
        operation.progress().set_total(manifest.bytes);
        let (actual, _) = hash_file(&found.file, None, self.stores.pacer(), operation.progress())
            .map_err(|source| VerifyError::Io {
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
    /// Its reads and writes are paced by `pacer`; `progress` is set to the bytes it reads (the
    /// backup file's, twice: the copy and hash, then the integrity check of the copy).
    pub(crate) fn verify_found_into(
        &self,
        table: &str,
        id: &str,
        work: &Path,
        pacer: &Arc<Pacer>,
        progress: &Progress,
    ) -> Result<BackupManifest, VerifyError> {
        if !is_valid_backup_id(id) {
            return Err(VerifyError::InvalidBackupId(id.to_string()));
        }
        let found = BackupFiles::new(&self.table_backup_dir(table), id.to_string());
        if !found.file.exists() && !found.manifest.exists() {
            return Err(VerifyError::NotFound {
                table: table.to_string(),
                id: id.to_string(),
            });
        }
        let manifest = shallow_check(table, &found)?;
        let _ = store_core::fsutil::remove_file_gradually(work, pacer);
        progress.set_total(progress.read().bytes_done + 2 * manifest.bytes);
        progress.set_phase("hash");
        let (actual, _) =
            hash_file(&found.file, Some(work), pacer, progress).map_err(|source| {
                VerifyError::Io {
                    what: format!("copying {} to {}", found.file.display(), work.display()),
                    source,
                }
            })?;
        if actual != manifest.blake3 {
            return Err(VerifyError::ChecksumMismatch {
                expected: manifest.blake3,
                actual,
            });
        }
        progress.set_phase("check");
        let records = integrity_and_count(work, pacer, progress)?;
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
        let operation = self.operations.begin(OperationKind::Verify, table, "hash");
        let result =
            self.verify_found_into(table, id, &work, self.stores.pacer(), operation.progress());
        drop(operation);
        let _ = store_core::fsutil::remove_file_gradually(&work, self.stores.pacer());
        let manifest = result?;
        let now = std::time::SystemTime::now();
        let marker = verified_marker(&self.table_backup_dir(table), id);
        let stamp = humantime::format_rfc3339_seconds(now).to_string();
        if let Err(e) = store_core::fsutil::write_file_atomically(&marker, stamp.as_bytes()) {
            // The verification stands; only its record is missing.
            tracing::warn!(path = %marker.display(), error = %e, "cannot record the verification");
        }
        Ok(BackupInfo {
            table: table.to_string(),
            id: id.to_string(),
            path: self.table_backup_dir(table).join(format!("{id}.redb")),
            manifest: Some(manifest),
            state: BackupState::Verified,
            verified_at: Some(now),
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
        let mut listed = list_table_backups(&self.backup_dir, table)?;
        if verify {
            for info in &mut listed {
                match self.verify_backup(table, &info.id) {
                    Ok(verified) => {
                        info.state = BackupState::Verified;
                        info.verified_at = verified.verified_at;
                    }
                    Err(e) => info.state = BackupState::Corrupt(e.to_string()),
                }
            }
        }
        Ok(listed)
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
        list_table_backups(&self.backup_dir, table)
            .ok()?
            .into_iter()
            .find(|b| b.state == BackupState::Unchecked)
    }
}
