//! The change log's errors: damage is its own variant, never an I/O error.

use std::path::PathBuf;

/// An operation on a change log failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file or directory of the log could not be read or written.
    #[error("change log {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A record that was once written completely no longer reads back: its checksum fails, or
    /// its bytes do not decode, with intact data after it.
    #[error(
        "change log damaged in {segment} at byte {offset}: {detail} (last good group {last_good})"
    )]
    Damaged {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the damaged record.
        offset: u64,
        /// The last group read intact before the damage (0: none).
        last_good: u64,
        /// What is wrong.
        detail: String,
    },
    /// A chunk of groups (a segment's bytes shipped off-site as one object, see
    /// [`super::decode_chunk`]) does not read back whole.
    #[error("change-log chunk damaged at byte {offset}: {detail} (last good group {last_good:?})")]
    BadChunk {
        /// Byte offset of the record at fault.
        offset: u64,
        /// The last group read intact before it, if any.
        last_good: Option<u64>,
        /// What is wrong.
        detail: String,
    },
    /// The groups wanted are not in the log (pruned, or a segment missing).
    #[error("change log has no group {wanted}: {detail}")]
    Missing {
        /// The first group sequence number that could not be found.
        wanted: u64,
        /// Which groups the log holds.
        detail: String,
    },
}

impl LogError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> LogError {
        LogError::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the log itself is damaged (as opposed to unreadable or incomplete).
    pub fn is_damage(&self) -> bool {
        matches!(self, LogError::Damaged { .. } | LogError::BadChunk { .. })
    }
}
