//! Errors of the owner's commands: [`CallError`] for data operations, [`MaintenanceError`] for
//! maintenance commands, [`OpenStoresError`] for opening the nine tables; and
//! [`panic_text`], how a contained panic is put into words.
//!
//! One failure of a group commit is answered to every job of the group, so [`CallError`] and
//! [`MaintenanceError`] are `Clone`: the errors they come from (store-core's, the file
//! system's) are kept as their sources behind an `Arc`.

use std::any::Any;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use store_core::{CompactError, IntegrityError, OpenError, ReadError, SwapError, WriteError};

/// A store-core error kept as the source of a cloneable error.
pub type SharedError = Arc<dyn std::error::Error + Send + Sync>;

/// A data operation through an owner failed.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// A storage failure (I/O, fsync). The write was not acknowledged. The source is the
    /// store's [`ReadError`] or [`WriteError`].
    #[error("storage failure: {0}")]
    Storage(#[source] SharedError),
    /// A stored record did not decode.
    #[error("record does not decode: {0}")]
    Record(#[source] postcard::Error),
    /// A stored key or value is not what its table holds (no decoder error behind it).
    #[error("record does not decode: {0}")]
    Decode(String),
}

impl From<ReadError> for CallError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Corrupted(d) => CallError::Corrupted(d),
            other => CallError::Storage(Arc::new(other)),
        }
    }
}

impl From<WriteError> for CallError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Corrupted(d) => CallError::Corrupted(d),
            other => CallError::Storage(Arc::new(other)),
        }
    }
}

/// A maintenance command failed.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// The table file did not open again (for a reason other than corruption).
    #[error("table unavailable: {0}")]
    Open(#[source] Arc<OpenError>),
    /// Corruption was detected.
    #[error("corruption detected: {0}")]
    Corrupted(String),
    /// The online compaction gave up safely (old file kept, nothing lost).
    #[error("compaction abandoned: {0}")]
    Abandoned(String),
    /// The replacement file did not open; the previous file keeps serving.
    #[error("replacement refused: {0}")]
    Replacement(#[source] Arc<OpenError>),
    /// The replacement file opened but holds another number of records than expected; the
    /// previous file keeps serving.
    #[error("replacement refused: replacement holds {found} records, expected {expected}")]
    RecordCount {
        /// What the request expected.
        expected: u64,
        /// What the replacement holds.
        found: u64,
    },
    /// A file-system step failed.
    #[error("i/o failure: {what}: {source}")]
    Io {
        /// The step.
        what: String,
        /// The failure.
        source: Arc<io::Error>,
    },
    /// Swapping the compacted file in failed.
    #[error("i/o failure: {0}")]
    Swap(#[source] Arc<SwapError>),
    /// Any other storage failure. The source is the store's error ([`ReadError`],
    /// [`WriteError`], [`CompactError`], [`IntegrityError`], [`store_core::CopyError`] or
    /// [`OpenError`]).
    #[error("storage failure: {0}")]
    Storage(#[source] SharedError),
    /// The operation stopped before its end, on request or because what it worked on went
    /// away (a scrub whose table file was replaced meanwhile).
    #[error("stopped: {0}")]
    Cancelled(&'static str),
    /// The online compaction's worker thread stopped without a word (it panicked).
    #[error("storage failure: the compaction worker stopped")]
    WorkerStopped,
    /// A test hook failed a step of an online compaction (`OnlineConfig::hook`), as an I/O
    /// failure there would: the step and the hook's reason.
    #[cfg(feature = "testing")]
    #[error("i/o failure: {0}")]
    Injected(String),
}

impl MaintenanceError {
    /// The file-system step `what` failed with `source`.
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> MaintenanceError {
        MaintenanceError::Io {
            what: what.into(),
            source: Arc::new(source),
        }
    }
}

impl From<ReadError> for MaintenanceError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Corrupted(d) => MaintenanceError::Corrupted(d),
            other => MaintenanceError::Storage(Arc::new(other)),
        }
    }
}

impl From<WriteError> for MaintenanceError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Corrupted(d) => MaintenanceError::Corrupted(d),
            other => MaintenanceError::Storage(Arc::new(other)),
        }
    }
}

impl From<CompactError> for MaintenanceError {
    fn from(e: CompactError) -> Self {
        match e {
            CompactError::Corrupted(d) => MaintenanceError::Corrupted(d),
            other => MaintenanceError::Storage(Arc::new(other)),
        }
    }
}

impl From<IntegrityError> for MaintenanceError {
    fn from(e: IntegrityError) -> Self {
        match e {
            IntegrityError::Corrupted(d) => MaintenanceError::Corrupted(d),
            other => MaintenanceError::Storage(Arc::new(other)),
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
