//! What copying the live records of a snapshot into a fresh file produced.

use std::time::Duration;

/// Outcome of [`crate::StoreSnapshot::copy_to_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    /// Records copied.
    pub records: u64,
    /// Key plus value bytes copied.
    pub live_bytes: u64,
    /// Size of the new file.
    pub file_bytes: u64,
    /// Wall time of the copy.
    pub duration: Duration,
}
