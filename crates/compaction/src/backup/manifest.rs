//! What identifies a backup on disk: its id (the UTC time it was taken), its two files
//! (`<id>.redb` and the manifest `<id>.json`), and the manifest, which records the file's
//! records, size and blake3 checksum. Reading a manifest checks its format and that it
//! describes the backup it sits beside.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use store_core::fsutil;

use super::error::{ManifestError, VerifyError};

/// Version of the manifest format written by this code.
pub const MANIFEST_FORMAT: u32 = 1;

/// Mode of backup files and manifests.
pub const FILE_MODE: u32 = fsutil::FILE_MODE;

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
    /// The last change-log group the backup holds (`None`: the table had no change log, or
    /// the backup predates it). A restore replays the log after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_position: Option<u64>,
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

/// The two files of one backup, before any check.
#[derive(Debug)]
pub(super) struct BackupFiles {
    /// The backup id.
    pub(super) id: String,
    /// `<dir>/<id>.redb`.
    pub(super) file: PathBuf,
    /// `<dir>/<id>.json`.
    pub(super) manifest: PathBuf,
}

impl BackupFiles {
    /// The files of backup `id` in the table backup dir `dir`.
    pub(super) fn new(dir: &Path, id: String) -> BackupFiles {
        BackupFiles {
            file: dir.join(format!("{id}.redb")),
            manifest: dir.join(format!("{id}.json")),
            id,
        }
    }
}

/// Read the manifest at `path`.
pub(super) fn read_manifest(path: &Path) -> Result<BackupManifest, VerifyError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(VerifyError::Manifest(ManifestError::Missing));
        }
        Err(e) => {
            return Err(VerifyError::Io {
                what: format!("reading {}", path.display()),
                source: e,
            });
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| VerifyError::Manifest(ManifestError::Parse(e)))
}

/// Read the manifest of `files` and check that this build reads its format and that it
/// describes backup `files.id` of `table`.
pub(super) fn read_checked_manifest(
    table: &str,
    files: &BackupFiles,
) -> Result<BackupManifest, VerifyError> {
    let manifest = read_manifest(&files.manifest)?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(VerifyError::UnsupportedFormat {
            found: manifest.format,
            supported: MANIFEST_FORMAT,
        });
    }
    if manifest.id != files.id || manifest.table != table {
        return Err(VerifyError::Manifest(ManifestError::OtherBackup {
            id: manifest.id,
            table: manifest.table,
        }));
    }
    Ok(manifest)
}
