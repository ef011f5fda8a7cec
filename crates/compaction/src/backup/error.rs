//! The errors of backups: a run that cannot start ([`BackupRequestError`]), one table that
//! cannot be backed up ([`BackupError`]), a backup that does not verify ([`VerifyError`],
//! which tells damage from an environment failure: [`VerifyError::is_corruption`]), and a
//! listing that fails ([`ListBackupsError`]). Each keeps the error it comes from as its source.

use std::io;
use std::path::PathBuf;

use store_core::{CloseError, CopyError, OpenError};
use store_owners::MaintenanceError;

/// A backup run could not start (per-table failures are in [`crate::BackupRun::failures`]).
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
    /// Not one of the nine tables.
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    /// The owner could not hand out a snapshot.
    #[error("cannot take a snapshot: {0}")]
    Snapshot(#[source] MaintenanceError),
    /// The live table is corrupt: its snapshot did not read back.
    #[error("the table is corrupt: {0}")]
    Corrupted(String),
    /// Copying the snapshot into the backup file failed.
    #[error("copying the snapshot failed: {0}")]
    Copy(#[source] CopyError),
    /// The fresh backup file did not pass its own verification.
    #[error("the new backup does not verify: {0}")]
    Verify(#[source] VerifyError),
    /// The fresh backup file opened, but holds another number of records than were copied.
    #[error("the new backup does not verify: holds {found} records, {copied} were copied")]
    CountMismatch {
        /// Records copied from the snapshot.
        copied: u64,
        /// Records the fresh file holds.
        found: u64,
    },
    /// The manifest did not serialize.
    #[error("encoding the manifest: {0}")]
    EncodeManifest(#[source] serde_json::Error),
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
    /// The manifest is missing, does not parse, or describes another backup.
    #[error("manifest unusable: {0}")]
    Manifest(#[source] ManifestError),
    /// The manifest is of a format this build does not read (written by a newer version).
    #[error("manifest format {found} is not supported (this build reads format {supported})")]
    UnsupportedFormat {
        /// From the manifest.
        found: u32,
        /// [`super::MANIFEST_FORMAT`].
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
    /// The work copy did not open for a reason other than corruption (most likely the
    /// environment: the integrity check commits, so a full disk fails it).
    #[error("opening {}: {source}", path.display())]
    Open {
        /// The work copy.
        path: PathBuf,
        /// The failure.
        source: OpenError,
    },
    /// The verified work copy did not close.
    #[error("closing the verified copy: {0}")]
    Close(#[source] CloseError),
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
    /// True when the backup itself is bad (as opposed to the request or the environment: an
    /// I/O error never counts as corruption, so it can never lead to degraded mode).
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

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// There is no manifest beside the backup file.
    #[error("manifest missing")]
    Missing,
    /// The manifest is not the JSON of a [`super::BackupManifest`].
    #[error("{0}")]
    Parse(#[source] serde_json::Error),
    /// The manifest describes another backup or another table.
    #[error("manifest is for backup {id} of table {table}")]
    OtherBackup {
        /// The id it names.
        id: String,
        /// The table it names.
        table: String,
    },
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
