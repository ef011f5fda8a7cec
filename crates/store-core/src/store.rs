//! The storage trait an owner thread needs from one table file.

use std::ops::Bound;
use std::path::Path;

use crate::copy::CopyStats;
use crate::error::{
    CloseError, CompactError, CopyError, IntegrityError, MetricsError, OpenError, ReadError,
    ScrubError, SwapError, WriteError,
};
use crate::metrics::{TableCounters, TableMetrics};
use crate::pace::Pacer;
use crate::progress::Progress;

/// One key/value pair as stored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    /// The key bytes; tables order records by them.
    pub key: Vec<u8>,
    /// The value bytes.
    pub value: Vec<u8>,
}

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Insert or overwrite `key`.
    Put {
        /// The key to write.
        key: Vec<u8>,
        /// Its new value.
        value: Vec<u8>,
    },
    /// Remove `key` if present.
    Delete {
        /// The key to remove.
        key: Vec<u8>,
    },
}

impl WriteOp {
    /// A put of borrowed bytes.
    pub fn put(key: &[u8], value: &[u8]) -> WriteOp {
        WriteOp::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        }
    }

    /// A delete of borrowed bytes.
    pub fn delete(key: &[u8]) -> WriteOp {
        WriteOp::Delete { key: key.to_vec() }
    }

    /// The key this write touches.
    pub fn key(&self) -> &[u8] {
        match self {
            WriteOp::Put { key, .. } | WriteOp::Delete { key } => key,
        }
    }
}

/// A range of keys for an ordered scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// Lower bound.
    pub start: Bound<Vec<u8>>,
    /// Upper bound.
    pub end: Bound<Vec<u8>>,
    /// Scan from the end of the range backwards.
    pub reverse: bool,
}

impl KeyRange {
    /// Every key, ascending.
    pub fn all() -> KeyRange {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
            reverse: false,
        }
    }

    /// Keys in `[start, end)`, ascending.
    pub fn between(start: &[u8], end: &[u8]) -> KeyRange {
        KeyRange {
            start: Bound::Included(start.to_vec()),
            end: Bound::Excluded(end.to_vec()),
            reverse: false,
        }
    }

    /// Keys starting with `prefix`, ascending.
    pub fn prefix(prefix: &[u8]) -> KeyRange {
        let end = prefix_successor(prefix).map_or(Bound::Unbounded, Bound::Excluded);
        KeyRange {
            start: Bound::Included(prefix.to_vec()),
            end,
            reverse: false,
        }
    }

    /// The same range scanned backwards.
    pub fn reversed(mut self) -> KeyRange {
        self.reverse = !self.reverse;
        self
    }

    /// True if the range is empty by construction (start after end). redb panics on such
    /// ranges, so stores return nothing for them instead.
    pub fn is_inverted(&self) -> bool {
        let start = match &self.start {
            Bound::Included(s) | Bound::Excluded(s) => s,
            Bound::Unbounded => return false,
        };
        match &self.end {
            Bound::Included(e) => {
                start > e || (start == e && matches!(self.start, Bound::Excluded(_)))
            }
            Bound::Excluded(e) => start >= e,
            Bound::Unbounded => false,
        }
    }

    /// Whether `key` falls in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let above = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let below = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        above && below
    }
}

/// The smallest byte string greater than every string starting with `prefix`, if any.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// How a table file is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Verify every page's checksum when the file is opened (slow for large files, but it
    /// catches corruption before any data is served).
    pub check_integrity_on_open: bool,
    /// redb page cache size in bytes.
    pub cache_bytes: usize,
    /// Open every file (the table, and the fresh files its snapshots are copied into) through
    /// a [`crate::FaultBackend`] following this plan. For fault-injection tests only.
    pub io_faults: Option<std::sync::Arc<crate::FaultPlan>>,
    /// Create the file when it is missing. Off for a table known to have existed (its data
    /// dir holds its birth marker): a missing file is then [`OpenError::Missing`], never an
    /// empty table.
    pub create_if_missing: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            check_integrity_on_open: false,
            cache_bytes: 64 << 20,
            io_faults: None,
            create_if_missing: true,
        }
    }
}

/// Point reads and scans of committed state, as an owner's read commands see it.
pub trait ReadView {
    /// Point read.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError>;
    /// Ordered scan of at most `limit` records.
    fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<Record>, ReadError>;
}

/// Reads and writes inside one open write transaction.
pub trait WriteBatch {
    /// The current value of `key`, including writes made earlier in this batch.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, WriteError>;
    /// Up to `limit` records of `range`, including writes made earlier in this batch.
    fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<Record>, WriteError>;
    /// Insert or overwrite a record.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), WriteError>;
    /// Remove a record; returns whether it existed.
    fn delete(&mut self, key: &[u8]) -> Result<bool, WriteError>;
    /// Record, in the same commit, that this batch brings the file to group `seq` of the
    /// table's change log ([`crate::changelog`]).
    fn set_log_position(&mut self, seq: u64);
    /// Commit, and for a batch from [`TableStore::begin_batch`] return only once the data is
    /// on disk (fsync).
    fn commit(self) -> Result<(), WriteError>
    where
        Self: Sized;
    /// Throw every write of this batch away.
    fn abort(self)
    where
        Self: Sized;
}

/// A scrub's read callback: told the size of each read before it is made, returns false to
/// cancel the scrub. It is where a pacer slows the walk down.
pub type OnRead = std::sync::Arc<dyn Fn(u64) -> bool + Send + Sync>;

/// What a finished scrub read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrubStats {
    /// Bytes read from the table file.
    pub bytes_read: u64,
}

/// A consistent, read-only view of a table at one commit. It can be sent to another thread
/// and read there while the owner keeps writing.
pub trait StoreSnapshot: Send + Sync + 'static {
    /// Number of live records.
    fn len(&self) -> Result<u64, ReadError>;
    /// True when the snapshot holds no record.
    fn is_empty(&self) -> Result<bool, ReadError> {
        Ok(self.len()? == 0)
    }
    /// Point read.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError>;
    /// Ordered scan.
    fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<Record>, ReadError>;
    /// The last change-log group the snapshot holds (0: none).
    fn log_position(&self) -> u64;
    /// Verify the checksum of every page of this snapshot's commit, and the structure of its
    /// trees, while the owner keeps writing. Only a snapshot from
    /// [`TableStore::scrub_snapshot`] can ([`ScrubError::NotForScrub`] otherwise). `on_read` is told the size of each read before
    /// it is made (a pacer slows the walk there) and cancels the scrub by returning false.
    fn scrub(&self, on_read: OnRead) -> Result<ScrubStats, ScrubError>;
    /// Copy every record into a new table file at `dest` (which must not exist), committing
    /// durably at the end. `keep_going` is polled between chunks; returning false cancels.
    /// Each chunk written is paced by `pacer` and its live bytes advance `progress` (whose
    /// total is the caller's to set: the copy may be one step of a longer job).
    fn copy_to_file(
        &self,
        dest: &Path,
        keep_going: &dyn Fn(u64) -> bool,
        pacer: &Pacer,
        progress: &Progress,
    ) -> Result<CopyStats, CopyError>;
}

/// A table file that [`TableStore::swap_in`] replaced: unlinked from the table path but still
/// open. Releasing it is slow (closing a large redb file writes its allocator state, and the
/// file's blocks are given back to the file system in small steps), so it is handed back to
/// the caller, which releases it on a thread of its choosing; store-core spawns none.
pub trait ReplacedFile: Send + 'static {
    /// Close the file and give its space back gradually, paced by `pacer`. Blocks until that
    /// is done (seconds for a file of gigabytes).
    fn release(self, pacer: &Pacer);
}

/// One table file. Implementations are driven by a single owner thread.
pub trait TableStore: Sized + Send + 'static {
    /// A sendable read snapshot.
    type Snapshot: StoreSnapshot;
    /// An open write transaction.
    type Batch<'a>: WriteBatch
    where
        Self: 'a;
    /// The file a [`TableStore::swap_in`] replaced, still open.
    type Replaced: ReplacedFile;

    /// Open the file at `path`, creating it when missing (if
    /// [`StoreOptions::create_if_missing`]). A path that is empty or not a regular file is
    /// [`OpenError::Missing`], never served as an empty table.
    fn open(path: &Path, options: &StoreOptions) -> Result<Self, OpenError>;
    /// Put a new, empty table file at `path`, atomically replacing whatever is there (the
    /// file is written beside it and renamed in, then the directory is fsynced).
    fn create_empty(path: &Path, options: &StoreOptions) -> Result<(), OpenError>;
    /// Replace this store's file with `fresh`, a complete file written beside it: atomic
    /// rename over the live path, directory fsync; reads and writes then go to the fresh file.
    /// Returns the replaced file, still open: releasing it is slow, so the caller decides on
    /// which thread that happens (see [`ReplacedFile`]). On error the live file is unchanged.
    fn swap_in(&mut self, fresh: Self) -> Result<Self::Replaced, SwapError>;
    /// The file this store reads and writes.
    fn path(&self) -> &Path;
    /// Point read of the latest committed state.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError>;
    /// Ordered scan of the latest committed state, at most `limit` records.
    fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<Record>, ReadError>;
    /// Start a write transaction; nothing is visible until [`WriteBatch::commit`], which
    /// returns once it is durable.
    fn begin_batch(&mut self) -> Result<Self::Batch<'_>, WriteError>;
    /// Start a write transaction whose commit does not wait for the disk: it is durable at
    /// the next [`TableStore::sync`] or durable commit, and lost by a crash before that (the
    /// change log, fsynced first, holds it then).
    fn begin_lazy_batch(&mut self) -> Result<Self::Batch<'_>, WriteError>;
    /// Make every commit so far durable (nothing to do when they all are).
    fn sync(&mut self) -> Result<(), WriteError>;
    /// The last change-log group this file holds (0: none).
    fn log_position(&self) -> u64;
    /// Apply `ops` in one durable commit.
    fn apply(&mut self, ops: &[WriteOp]) -> Result<(), WriteError> {
        let mut batch = self.begin_batch()?;
        for op in ops {
            match op {
                WriteOp::Put { key, value } => batch.put(key, value)?,
                WriteOp::Delete { key } => {
                    batch.delete(key)?;
                }
            }
        }
        batch.commit()
    }
    /// A read snapshot of the latest committed state.
    fn snapshot(&self) -> Result<Self::Snapshot, ReadError>;
    /// A read snapshot that can also be scrubbed ([`StoreSnapshot::scrub`]): it copies the
    /// file's header as of the snapshot, one more open and read of the file, so only scrubs
    /// pay for it.
    fn scrub_snapshot(&self) -> Result<Self::Snapshot, ScrubError>;
    /// The exact counters kept by the store (records, live bytes, dead bytes). Cheap.
    fn counters(&self) -> TableCounters;
    /// Size and fragmentation. Cheap: never walks the file.
    fn metrics(&self) -> Result<TableMetrics, MetricsError> {
        let file_bytes = std::fs::metadata(self.path())?.len();
        Ok(TableMetrics::compute(file_bytes, self.counters()))
    }
    /// redb's own exclusive in-place compaction. Blocks for its whole run.
    fn compact_in_place(&mut self) -> Result<(), CompactError>;
    /// Verify every page's checksum and the tree structure.
    fn check_integrity(&mut self) -> Result<(), IntegrityError>;
    /// Close the file after its last commit.
    fn close(self) -> Result<(), CloseError>;
}

impl<S: TableStore> ReadView for S {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        TableStore::get(self, key)
    }

    fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<Record>, ReadError> {
        TableStore::scan(self, range, limit)
    }
}
