//! Typed errors, one enum per operation. Corruption is always a variant of its own
//! (`Corrupted`) so that callers can quarantine and restore instead of retrying; every other
//! failure keeps the error it comes from as its source: redb's (as [`redb::Error`], the
//! superset every redb error converts into, boxed: it is large, and these errors travel in
//! the `Result` of every read and write) or the file system's ([`io::Error`]).

use std::io;
use std::path::PathBuf;

/// Classifies a redb storage error: corruption is kept apart from everything else.
pub(crate) enum Failure {
    /// What redb said about the damage.
    Corrupted(String),
    /// Not corruption: the error itself.
    Other(redb::StorageError),
}

pub(crate) fn classify(error: redb::StorageError) -> Failure {
    match error {
        redb::StorageError::Corrupted(detail) => Failure::Corrupted(detail),
        redb::StorageError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Failure::Corrupted(format!("file truncated: {e}"))
        }
        other => {
            // Some damage redb reports only in words (a truncated file, a bad magic number).
            let text = other.to_string();
            if text.contains("truncated") || text.contains("magic") {
                Failure::Corrupted(text)
            } else {
                Failure::Other(other)
            }
        }
    }
}

macro_rules! storage_conversions {
    ($ty:ident) => {
        impl From<redb::StorageError> for $ty {
            fn from(e: redb::StorageError) -> Self {
                match classify(e) {
                    Failure::Corrupted(d) => $ty::Corrupted(d),
                    Failure::Other(e) => $ty::Storage(Box::new(e.into())),
                }
            }
        }
        impl From<redb::TableError> for $ty {
            fn from(e: redb::TableError) -> Self {
                match e {
                    redb::TableError::Storage(s) => s.into(),
                    other => $ty::Storage(Box::new(other.into())),
                }
            }
        }
        impl From<redb::TransactionError> for $ty {
            fn from(e: redb::TransactionError) -> Self {
                match e {
                    redb::TransactionError::Storage(s) => s.into(),
                    other => $ty::Storage(Box::new(other.into())),
                }
            }
        }
        impl From<redb::CommitError> for $ty {
            fn from(e: redb::CommitError) -> Self {
                match e {
                    redb::CommitError::Storage(s) => s.into(),
                    other => $ty::Storage(Box::new(other.into())),
                }
            }
        }
        impl From<redb::DatabaseError> for $ty {
            fn from(e: redb::DatabaseError) -> Self {
                match e {
                    redb::DatabaseError::Storage(s) => s.into(),
                    other => $ty::Storage(Box::new(other.into())),
                }
            }
        }
    };
}

/// Opening (or creating) a table file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The file is corrupt: bad magic number, truncated, or failed its integrity check.
    #[error("table file {path} is corrupt: {detail}")]
    Corrupted {
        /// The file that failed to open.
        path: PathBuf,
        /// What redb reported.
        detail: String,
    },
    /// Another database handle (in this or another process) has the file open.
    #[error("table file {0} is already open")]
    AlreadyOpen(PathBuf),
    /// The table existed but its file is gone: missing, empty, or not a regular file. Its
    /// data must come back from a backup; it is never served as an empty table.
    #[error("table file {path} is lost: {detail}")]
    Missing {
        /// The table path.
        path: PathBuf,
        /// What is (not) there.
        detail: String,
    },
    /// A storage error that is not corruption.
    #[error("cannot open table file {path}: {source}")]
    Storage {
        /// The file that failed to open.
        path: PathBuf,
        /// What redb reported.
        source: Box<redb::Error>,
    },
    /// A file-system step of opening or creating the file failed.
    #[error("cannot open table file {path}: {source}")]
    Io {
        /// The file the step was on.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

impl OpenError {
    pub(crate) fn from_redb(path: &std::path::Path, e: redb::DatabaseError) -> OpenError {
        let path = path.to_path_buf();
        match e {
            redb::DatabaseError::DatabaseAlreadyOpen => OpenError::AlreadyOpen(path),
            redb::DatabaseError::Storage(s) => match classify(s) {
                Failure::Corrupted(detail) => OpenError::Corrupted { path, detail },
                Failure::Other(e) => OpenError::Storage {
                    path,
                    source: Box::new(e.into()),
                },
            },
            other => OpenError::Storage {
                path,
                source: Box::new(other.into()),
            },
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: io::Error) -> OpenError {
        OpenError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// True when the file itself is damaged (as opposed to busy or unreadable).
    pub fn is_corruption(&self) -> bool {
        matches!(self, OpenError::Corrupted { .. })
    }

    /// True when the table's file is missing, empty or not a file (see [`OpenError::Missing`]).
    pub fn is_missing(&self) -> bool {
        matches!(self, OpenError::Missing { .. })
    }
}

/// A point read or a scan failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A page read back did not decode: the file is damaged.
    #[error("corruption detected while reading: {0}")]
    Corrupted(String),
    /// Any other storage failure.
    #[error("read failed: {0}")]
    Storage(#[source] Box<redb::Error>),
}
storage_conversions!(ReadError);

/// A write batch failed; nothing of it was committed (or, after a failed fsync, it may or may
/// not be on disk, and was never acknowledged).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// A page read during the write did not decode: the file is damaged.
    #[error("corruption detected while writing: {0}")]
    Corrupted(String),
    /// Any other storage failure, including a failed write or fsync.
    #[error("write failed: {0}")]
    Storage(#[source] Box<redb::Error>),
}
storage_conversions!(WriteError);

impl From<ReadError> for WriteError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Corrupted(d) => WriteError::Corrupted(d),
            ReadError::Storage(e) => WriteError::Storage(e),
        }
    }
}

/// Reading a table's metrics failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The table file could not be inspected.
    #[error("cannot stat table file: {0}")]
    Io(#[from] io::Error),
}

/// An in-place compaction failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompactError {
    /// A read snapshot is still alive, so redb cannot move pages.
    #[error("a read snapshot is still alive")]
    SnapshotAlive,
    /// The file is damaged.
    #[error("corruption detected during compaction: {0}")]
    Corrupted(String),
    /// Any other storage failure.
    #[error("compaction failed: {0}")]
    Storage(#[source] Box<redb::Error>),
}
storage_conversions!(CompactError);

impl From<redb::CompactionError> for CompactError {
    fn from(e: redb::CompactionError) -> Self {
        match e {
            redb::CompactionError::TransactionInProgress => CompactError::SnapshotAlive,
            redb::CompactionError::Storage(s) => s.into(),
            other => CompactError::Storage(Box::new(other.into())),
        }
    }
}

/// An integrity check could not run, or found damage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityError {
    /// Checksums or structure did not verify.
    #[error("integrity check failed: {0}")]
    Corrupted(String),
    /// A read snapshot or transaction is still alive, so the check cannot run.
    #[error("integrity check could not run: a transaction is still alive")]
    TransactionAlive,
    /// The check could not run for another storage failure.
    #[error("integrity check could not run: {0}")]
    Storage(#[source] Box<redb::Error>),
}
storage_conversions!(IntegrityError);

/// Copying live records from a snapshot into a fresh file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// The source snapshot is damaged.
    #[error("corruption detected while copying: {0}")]
    Corrupted(String),
    /// The copy was cancelled by its caller.
    #[error("copy cancelled")]
    Cancelled,
    /// Any other storage failure (typically writing the destination).
    #[error("copy failed: {0}")]
    Storage(#[source] Box<redb::Error>),
    /// The destination file could not be created or opened.
    #[error("copy failed: {0}")]
    Open(#[source] OpenError),
    /// A file-system step on the destination failed.
    #[error("copy failed: {path}: {source}")]
    Io {
        /// The destination.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}
storage_conversions!(CopyError);

impl From<ReadError> for CopyError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Corrupted(d) => CopyError::Corrupted(d),
            ReadError::Storage(e) => CopyError::Storage(e),
        }
    }
}

impl From<WriteError> for CopyError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Corrupted(d) => CopyError::Corrupted(d),
            WriteError::Storage(e) => CopyError::Storage(e),
        }
    }
}

impl From<OpenError> for CopyError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Corrupted { detail, .. } => CopyError::Corrupted(detail),
            other => CopyError::Open(other),
        }
    }
}

/// Swapping a freshly written file in place of the live one failed. The live file is
/// untouched unless the variant says otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SwapError {
    /// The rename or the directory fsync failed; the old file is still in place.
    #[error("cannot swap table file: {0}")]
    Io(#[from] io::Error),
    /// The replacement file could not be opened after the swap.
    #[error("replacement file does not open: {0}")]
    Open(#[from] OpenError),
}

/// Closing a table file failed (its last commit is durable regardless).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// Any storage failure while closing.
    #[error("close failed: {0}")]
    Storage(#[source] Box<redb::Error>),
}

/// A scrub (the checksum walk of a live file from a snapshot, [`crate::StoreSnapshot::scrub`])
/// did not finish clean.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScrubError {
    /// A page of the snapshot's trees does not match its checksum, or the trees do not hold
    /// together.
    #[error("scrub found corruption: {0}")]
    Corrupted(String),
    /// The scrub was cancelled by its caller.
    #[error("scrub cancelled")]
    Cancelled,
    /// The file could not be read.
    #[error("scrub could not read {path}: {source}")]
    Io {
        /// The table file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// Another storage failure stopped the walk.
    #[error("scrub could not run: {0}")]
    Storage(#[source] Box<redb::Error>),
    /// The snapshot was taken by `TableStore::snapshot`, which does not copy the header a
    /// scrub needs (`TableStore::scrub_snapshot` does).
    #[error("scrub could not run: the snapshot was not taken for a scrub")]
    NotForScrub,
}
