//! [`TableStore`] on redb 4.x: one redb file per table, holding a `data` table of byte keys
//! and values and a `meta` table with the counters behind the fragmentation metrics, kept
//! exact in every commit ([`RedbBatch`], `batch.rs`); read snapshots ([`RedbSnapshot`]) and
//! their copy into a fresh, packed file. The file layout is in `schema.rs`.

mod batch;
mod paced;
mod schema;
mod scrub;

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use redb::{
    Builder, Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, StorageBackend,
};

use crate::copy::CopyStats;
use crate::error::{
    CloseError, CompactError, CopyError, IntegrityError, OpenError, ReadError, ScrubError,
    SwapError, WriteError,
};
use crate::fault::{FaultBackend, FaultPlan};
use crate::fsutil;
use crate::metrics::TableCounters;
use crate::pace::Pacer;
use crate::progress::Progress;
use crate::store::{
    KeyRange, OnRead, Record, ReplacedFile, ScrubStats, StoreOptions, StoreSnapshot, TableStore,
    WriteBatch,
};
pub use batch::RedbBatch;
use schema::{
    DATA, META, META_DEAD_BYTES, META_DEAD_RECORDS, META_LIVE_BYTES, META_LOG_POSITION,
    read_counters, scan_table, snapshot_get,
};
use scrub::FrozenHeader;

/// Records per commit while copying into a fresh file.
const COPY_CHUNK: usize = 5_000;

/// A table file on redb.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    counters: TableCounters,
    /// The last change-log group the file holds.
    log_position: u64,
    /// A commit without fsync returned since the last durable one.
    unsynced: bool,
    /// Fault plan inherited by the files this store's snapshots are copied into.
    io_faults: Option<Arc<FaultPlan>>,
}

impl RedbStore {
    fn builder(options: &StoreOptions) -> Builder {
        let mut builder = Builder::new();
        builder.set_cache_size(options.cache_bytes);
        builder.set_check_integrity_on_open(options.check_integrity_on_open);
        builder
    }

    /// Open the file at `path` through a caller-supplied backend (for fault injection);
    /// `path` is only used for metrics and error messages.
    pub fn open_with_backend(
        path: &Path,
        backend: impl StorageBackend,
        options: &StoreOptions,
    ) -> Result<RedbStore, OpenError> {
        let db = Self::builder(options)
            .create_with_backend(backend)
            .map_err(|e| OpenError::from_redb(path, e))?;
        Self::from_database(db, path, options)
    }

    fn from_database(
        db: Database,
        path: &Path,
        options: &StoreOptions,
    ) -> Result<RedbStore, OpenError> {
        let wrap = |e: WriteError| match e {
            WriteError::Corrupted(detail) => OpenError::Corrupted {
                path: path.to_path_buf(),
                detail,
            },
            WriteError::Storage(source) => OpenError::Storage {
                path: path.to_path_buf(),
                source,
            },
        };
        let (counters, log_position) = {
            let txn = db.begin_read().map_err(|e| wrap(e.into()))?;
            match txn.open_table(DATA) {
                Ok(data) => {
                    let meta = txn.open_table(META).map_err(|e| wrap(e.into()))?;
                    let counters = read_counters(&data, &meta).map_err(wrap)?;
                    let position = meta
                        .get(META_LOG_POSITION)
                        .map_err(|e| wrap(e.into()))?
                        .map_or(0, |v| v.value());
                    (counters, position)
                }
                Err(redb::TableError::TableDoesNotExist(_)) => (TableCounters::default(), 0),
                Err(e) => return Err(wrap(e.into())),
            }
        };
        let mut store = RedbStore {
            db,
            path: path.to_path_buf(),
            counters,
            log_position,
            unsynced: false,
            io_faults: options.io_faults.clone(),
        };
        if counters == TableCounters::default() {
            // Creates both tables in a new file, so snapshots never see them missing.
            store.begin_batch().map_err(wrap)?.commit().map_err(wrap)?;
        }
        Ok(store)
    }

    /// Create the table file `path` complete or not at all: initialise it beside the live
    /// path (`<file>.creating`, mode 0600) and rename it in, over whatever is there. redb
    /// writes a new file's magic number last, so a process killed while redb creates a file
    /// in place leaves one that never opens again ("magic number mismatch"); the crash
    /// campaign (`cargo xtask crash`) found it.
    fn create_atomically(path: &Path, options: &StoreOptions) -> Result<(), OpenError> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".creating");
        let creating = path.with_file_name(name);
        // A leftover of an earlier crash is an incomplete file: start again.
        let _ = std::fs::remove_file(&creating);
        create_private_file(&creating).map_err(|e| OpenError::io(&creating, e))?;
        let db = Self::builder(options)
            .create(&creating)
            .map_err(|e| OpenError::from_redb(&creating, e))?;
        Self::from_database(db, &creating, options)?
            .close()
            .map_err(|CloseError::Storage(source)| OpenError::Storage {
                path: creating.clone(),
                source,
            })?;
        fsutil::sync_file(&creating).map_err(|e| OpenError::io(&creating, e))?;
        fsutil::replace_file(&creating, path).map_err(|e| OpenError::io(path, e))
    }

    /// Create a new, empty table file at `path`, which must not exist yet (a work file: a
    /// compaction's fresh copy, a backup being written).
    pub fn create_new(path: &Path, options: &StoreOptions) -> Result<RedbStore, OpenError> {
        create_private_file(path).map_err(|e| OpenError::io(path, e))?;
        Self::open_file(path, options)
    }

    /// Open the file at `path` as it is (an empty file is initialised as a new table).
    fn open_file(path: &Path, options: &StoreOptions) -> Result<RedbStore, OpenError> {
        if let Some(plan) = &options.io_faults {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(fsutil::FILE_MODE)
                .open(path)
                .map_err(|e| OpenError::io(path, e))?;
            let backend =
                FaultBackend::new(file, plan.clone()).map_err(|e| OpenError::from_redb(path, e))?;
            return Self::open_with_backend(path, backend, options);
        }
        let db = Self::builder(options)
            .create(path)
            .map_err(|e| OpenError::from_redb(path, e))?;
        Self::from_database(db, path, options)
    }
}

/// Create `path` as a new, empty file with mode 0600.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(fsutil::FILE_MODE)
        .open(path)
        .map(drop)
}

/// What is at a table path that must hold a table file, when it cannot be one.
fn not_a_table(path: &Path, options: &StoreOptions) -> Result<Option<String>, OpenError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() && m.len() == 0 => Ok(Some("the file is empty".into())),
        Ok(m) if m.is_file() => Ok(None),
        Ok(m) if m.file_type().is_symlink() => match std::fs::metadata(path) {
            Ok(target) if target.is_file() && target.len() > 0 => Ok(None),
            Ok(_) => Ok(Some("a link to something that is not a table file".into())),
            Err(_) => Ok(Some("a dangling link".into())),
        },
        Ok(_) => Ok(Some("not a regular file".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if options.create_if_missing {
                Ok(None)
            } else {
                Ok(Some("the file is missing".into()))
            }
        }
        Err(e) => Err(OpenError::io(path, e)),
    }
}

impl RedbStore {
    fn batch(&mut self, durability: Durability) -> Result<RedbBatch<'_>, WriteError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(durability)
            .map_err(|e| WriteError::Storage(Box::new(e.into())))?;
        txn.set_quick_repair(true);
        let pending = self.counters;
        let lazy = matches!(durability, Durability::None);
        Ok(RedbBatch {
            txn,
            counters: &mut self.counters,
            pending,
            log_position: &mut self.log_position,
            pending_position: None,
            unsynced: if lazy { Some(&mut self.unsynced) } else { None },
        })
    }
}

impl TableStore for RedbStore {
    type Snapshot = RedbSnapshot;
    type Batch<'a> = RedbBatch<'a>;
    type Replaced = RedbReplaced;

    fn open(path: &Path, options: &StoreOptions) -> Result<RedbStore, OpenError> {
        if let Some(detail) = not_a_table(path, options)? {
            return Err(OpenError::Missing {
                path: path.to_path_buf(),
                detail,
            });
        }
        if !path.exists() && options.io_faults.is_none() {
            Self::create_atomically(path, options)?;
        }
        // Tables written before modes were enforced: nothing but the owner reads them.
        if path.exists() {
            fsutil::make_private(path, fsutil::FILE_MODE).map_err(|e| OpenError::io(path, e))?;
        }
        Self::open_file(path, options)
    }

    fn create_empty(path: &Path, options: &StoreOptions) -> Result<(), OpenError> {
        Self::create_atomically(path, options)
    }

    fn swap_in(&mut self, mut fresh: RedbStore) -> Result<RedbReplaced, SwapError> {
        // A second handle on the old file, to give its space back gradually once replaced.
        let old_file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .ok();
        fsutil::replace_file(&fresh.path, &self.path)?;
        fresh.path = self.path.clone();
        let old = std::mem::replace(self, fresh);
        Ok(RedbReplaced {
            store: old,
            file: old_file,
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        let txn = self.db.begin_read()?;
        snapshot_get(&txn, key)
    }

    fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<Record>, ReadError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DATA)?;
        scan_table(&table, range, limit)
    }

    fn begin_batch(&mut self) -> Result<RedbBatch<'_>, WriteError> {
        self.batch(Durability::Immediate)
    }

    fn begin_lazy_batch(&mut self) -> Result<RedbBatch<'_>, WriteError> {
        self.batch(Durability::None)
    }

    fn sync(&mut self) -> Result<(), WriteError> {
        if !self.unsynced {
            return Ok(());
        }
        // An empty durable commit makes the commits before it durable too.
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| WriteError::Storage(Box::new(e.into())))?;
        txn.set_quick_repair(true);
        txn.commit()?;
        self.unsynced = false;
        Ok(())
    }

    fn log_position(&self) -> u64 {
        self.log_position
    }

    fn snapshot(&self) -> Result<RedbSnapshot, ReadError> {
        Ok(RedbSnapshot {
            txn: self.db.begin_read()?,
            header: None,
            counters: self.counters,
            log_position: self.log_position,
            io_faults: self.io_faults.clone(),
        })
    }

    fn scrub_snapshot(&self) -> Result<RedbSnapshot, ScrubError> {
        let mut snapshot = self.snapshot().map_err(|e| match e {
            ReadError::Corrupted(detail) => ScrubError::Corrupted(detail),
            ReadError::Storage(source) => ScrubError::Storage(source),
        })?;
        // Right after the read transaction began, before any other commit: the header then
        // names the snapshot's commit (see scrub.rs).
        let header = FrozenHeader::read(&self.path).map_err(|source| ScrubError::Io {
            path: self.path.clone(),
            source,
        })?;
        snapshot.header = Some(header);
        Ok(snapshot)
    }

    fn counters(&self) -> TableCounters {
        self.counters
    }

    fn compact_in_place(&mut self) -> Result<(), CompactError> {
        self.db.compact()?;
        Ok(())
    }

    fn check_integrity(&mut self) -> Result<(), IntegrityError> {
        match self.db.check_integrity() {
            Ok(true) => Ok(()),
            Ok(false) => Err(IntegrityError::Corrupted(
                "redb found damage and repaired its allocator state".into(),
            )),
            Err(redb::DatabaseError::TransactionInProgress) => {
                Err(IntegrityError::TransactionAlive)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn close(self) -> Result<(), CloseError> {
        self.db
            .close()
            .map_err(|e| CloseError::Storage(Box::new(e.into())))
    }
}

/// The file [`RedbStore::swap_in`] replaced: the old database, and a second handle on its
/// file to give the space back in steps.
#[derive(Debug)]
#[must_use = "dropping it closes the old file at once, on this thread"]
pub struct RedbReplaced {
    store: RedbStore,
    file: Option<std::fs::File>,
}

impl ReplacedFile for RedbReplaced {
    /// Closing a large redb file writes its allocator state and takes ~100 ms, and freeing all
    /// its blocks at once (discarded by the file system, here mounted with `discard`) stalls
    /// the new file's fsyncs: 37-123 ms spikes after swapping a 0.6-2.5 GB table. Hence the
    /// blocks are freed in small steps ([`fsutil::release_gradually`]), and owners call this
    /// off their thread.
    fn release(self, pacer: &Pacer) {
        drop(self.store);
        if let Some(file) = self.file {
            fsutil::release_gradually(file, pacer);
        }
    }
}

/// A redb read transaction: a consistent view that can be read from any thread.
#[derive(Debug)]
pub struct RedbSnapshot {
    txn: ReadTransaction,
    /// The file's header as of this snapshot, for [`StoreSnapshot::scrub`]; only a
    /// [`TableStore::scrub_snapshot`] reads it.
    header: Option<FrozenHeader>,
    counters: TableCounters,
    /// The store's log position at the time of the snapshot.
    log_position: u64,
    /// Fault plan inherited by the files this snapshot is copied into.
    io_faults: Option<Arc<FaultPlan>>,
}

impl RedbSnapshot {
    /// The store's counters at the time of the snapshot.
    pub fn counters(&self) -> TableCounters {
        self.counters
    }
}

impl StoreSnapshot for RedbSnapshot {
    fn len(&self) -> Result<u64, ReadError> {
        Ok(self.txn.open_table(DATA)?.len()?)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        snapshot_get(&self.txn, key)
    }

    fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<Record>, ReadError> {
        let table = self.txn.open_table(DATA)?;
        scan_table(&table, range, limit)
    }

    fn log_position(&self) -> u64 {
        self.log_position
    }

    fn scrub(&self, on_read: OnRead) -> Result<ScrubStats, ScrubError> {
        match &self.header {
            Some(header) => header.scrub(on_read),
            None => Err(ScrubError::NotForScrub),
        }
    }

    fn copy_to_file(
        &self,
        dest: &Path,
        keep_going: &dyn Fn(u64) -> bool,
        pacer: &Pacer,
        progress: &Progress,
    ) -> Result<CopyStats, CopyError> {
        let started = Instant::now();
        let options = StoreOptions {
            check_integrity_on_open: false,
            cache_bytes: 16 << 20,
            io_faults: self.io_faults.clone(),
            create_if_missing: true,
        };
        let target = RedbStore::create_new(dest, &options)?;
        let source = self.txn.open_table(DATA)?;
        let mut iter = source.iter()?;
        let mut counters = TableCounters::default();
        loop {
            if !keep_going(counters.records) {
                drop(target);
                let _ = std::fs::remove_file(dest);
                return Err(CopyError::Cancelled);
            }
            let mut txn = target.db.begin_write()?;
            let mut done = false;
            let bytes_before = counters.live_bytes;
            {
                let mut table = txn.open_table(DATA)?;
                for _ in 0..COPY_CHUNK {
                    let Some(entry) = iter.next() else {
                        done = true;
                        break;
                    };
                    let (k, v) = entry?;
                    let (k, v) = (k.value(), v.value());
                    table.insert(k, v)?;
                    counters.records += 1;
                    counters.live_bytes += (k.len() + v.len()) as u64;
                }
            }
            if done {
                txn.set_durability(Durability::Immediate)
                    .map_err(|e| CopyError::Storage(Box::new(e.into())))?;
                {
                    let mut meta = txn.open_table(META)?;
                    meta.insert(META_LIVE_BYTES, counters.live_bytes)?;
                    meta.insert(META_DEAD_BYTES, 0)?;
                    meta.insert(META_DEAD_RECORDS, 0)?;
                    meta.insert(META_LOG_POSITION, self.log_position)?;
                }
                txn.commit()?;
                progress.advance(counters.live_bytes - bytes_before);
                break;
            }
            // Every chunk is a durable commit, so the copy reaches the disk chunk by chunk. A
            // non-durable commit would leave its pages in redb's write buffer (up to half the
            // cache), for the final commit to write all at once: that one flush held the live
            // tables' own fsyncs for 30-40 ms at the end of every copy on the bench machine.
            txn.set_durability(Durability::Immediate)
                .map_err(|e| CopyError::Storage(Box::new(e.into())))?;
            txn.commit()?;
            let copied = counters.live_bytes - bytes_before;
            pacer.pace(copied);
            progress.advance(copied);
        }
        target
            .db
            .close()
            .map_err(|e| CopyError::Storage(Box::new(e.into())))?;
        let file_bytes = std::fs::metadata(dest)
            .map_err(|source| CopyError::Io {
                path: dest.to_path_buf(),
                source,
            })?
            .len();
        Ok(CopyStats {
            records: counters.records,
            live_bytes: counters.live_bytes,
            file_bytes,
            duration: started.elapsed(),
        })
    }
}
