//! Errors of the owner's commands: [`CallError`] for data operations, [`MaintenanceError`] for
//! maintenance commands, [`OpenStoresError`] for opening the nine tables; and
//! [`panic_text`], how a contained panic is put into words.

use std::any::Any;
use std::path::PathBuf;

use store_core::{CompactError, IntegrityError, ReadError, WriteError};

/// A data operation through an owner failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The owner has stopped.
    #[error("the table owner has stopped")]
    Closed,
    /// The table is not serving (corrupt at open, or being replaced).
    #[error("table {table} is unavailable ({status})")]
    Unavailable {
        /// The table.
        table: &'static str,
        /// Why.
        status: String,
    },
    /// Corruption was detected; the table is reported for restore.
    #[error("corruption detected: {0}")]
    Corrupted(String),
    /// The command panicked; the table keeps being served.
    #[error("the command panicked: {0}")]
    Panicked(String),
    /// A storage failure (I/O, fsync). The write was not acknowledged.
    #[error("storage failure: {0}")]
    Storage(String),
    /// A stored record did not decode.
    #[error("record does not decode: {0}")]
    Decode(String),
}

impl From<ReadError> for CallError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Corrupted(d) => CallError::Corrupted(d),
            other => CallError::Storage(other.to_string()),
        }
    }
}

impl From<WriteError> for CallError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Corrupted(d) => CallError::Corrupted(d),
            other => CallError::Storage(other.to_string()),
        }
    }
}

/// A maintenance command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MaintenanceError {
    /// The owner has stopped.
    #[error("the table owner has stopped")]
    Closed,
    /// Another maintenance operation is running on this table.
    #[error("{0} already running")]
    Busy(&'static str),
    /// The table is not open.
    #[error("table unavailable: {0}")]
    Unavailable(String),
    /// Corruption was detected.
    #[error("corruption detected: {0}")]
    Corrupted(String),
    /// The online compaction gave up safely (old file kept, nothing lost).
    #[error("compaction abandoned: {0}")]
    Abandoned(String),
    /// The replacement file did not open or did not match; the previous file keeps serving.
    #[error("replacement refused: {0}")]
    Replacement(String),
    /// A file-system step failed.
    #[error("i/o failure: {0}")]
    Io(String),
    /// Any other storage failure.
    #[error("storage failure: {0}")]
    Storage(String),
}

impl From<ReadError> for MaintenanceError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Corrupted(d) => MaintenanceError::Corrupted(d),
            other => MaintenanceError::Storage(other.to_string()),
        }
    }
}

impl From<WriteError> for MaintenanceError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Corrupted(d) => MaintenanceError::Corrupted(d),
            other => MaintenanceError::Storage(other.to_string()),
        }
    }
}

impl From<CompactError> for MaintenanceError {
    fn from(e: CompactError) -> Self {
        match e {
            CompactError::Corrupted(d) => MaintenanceError::Corrupted(d),
            other => MaintenanceError::Storage(other.to_string()),
        }
    }
}

impl From<IntegrityError> for MaintenanceError {
    fn from(e: IntegrityError) -> Self {
        match e {
            IntegrityError::Corrupted(d) => MaintenanceError::Corrupted(d),
            other => MaintenanceError::Storage(other.to_string()),
        }
    }
}

/// Opening the nine tables of a data dir failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenStoresError {
    /// Another process holds the data dir.
    #[error("data dir {0} is in use by another process (lock file {0}/.lock)")]
    Locked(PathBuf),
    /// The data dir cannot be created or locked.
    #[error("cannot use data dir {path}: {source}")]
    Io {
        /// The data dir.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// The message of a panic caught with `catch_unwind` (what [`CallError::Panicked`] carries).
pub fn panic_text(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}
