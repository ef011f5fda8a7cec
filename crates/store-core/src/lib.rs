//! Storage for one table file: the [`TableStore`] trait, its redb implementation
//! ([`RedbStore`]), fragmentation metrics, and a fault-injecting backend for tests.
//!
//! # Layout
//!
//! - [`store`]: the trait an owner thread needs from a table file: point reads, ordered scans,
//!   atomic write batches committed durably, sendable read snapshots, metrics, compaction,
//!   integrity checks.
//! - [`redb_store`]: the implementation on redb 4.x, one redb file per table.
//! - [`metrics`]: what a table reports about its size and fragmentation, and the formulas.
//! - [`copy`]: copying live records from a snapshot into a fresh file (online compaction and
//!   backups both use it).
//! - [`changelog`]: a table's change log, where a write becomes durable, and its replay.
//! - [`pace`]: the one I/O pacer of the maintenance jobs (a fixed rate, or `auto`: by the
//!   owners' commit latency).
//! - [`progress`]: [`Progress`], how far a job moving a table's bytes has come (advanced where
//!   the job pays its bytes to the pacer, read by whoever shows it).
//! - [`fault`]: a `StorageBackend` that fails a chosen write or fsync, for tests.
//! - [`fsutil`]: the durable file-system steps (fsync of a directory, atomic replace).
//!
//! The owner threads, the hub's nine tables and `Stores::open`, which a hub starts from, are
//! the `store_owners` crate (`crates/store-owners/src/lib.rs`); maintenance over them is the
//! `compaction` crate. How the crates fit together is in `ARCHITECTURE.md` at the root of the
//! workspace.
//!
//! # Example
//!
//! ```
//! use store_core::{KeyRange, RedbStore, StoreOptions, TableStore, WriteOp};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut store = RedbStore::open(&dir.path().join("t.redb"), &StoreOptions::default()).unwrap();
//! store
//!     .apply(&[WriteOp::put(b"a", b"1"), WriteOp::put(b"b", b"2")])
//!     .unwrap();
//! assert_eq!(store.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
//! assert_eq!(store.scan(&KeyRange::all(), usize::MAX).unwrap().len(), 2);
//! ```

pub mod changelog;
pub mod copy;
pub mod error;
pub mod fault;
pub mod fsutil;
pub mod metrics;
pub mod pace;
pub mod progress;
pub mod redb_store;
pub mod store;

pub use copy::CopyStats;
pub use error::{
    CloseError, CompactError, CopyError, IntegrityError, MetricsError, OpenError, ReadError,
    ScrubError, SwapError, WriteError,
};
pub use fault::{FaultBackend, FaultPlan};
pub use metrics::{TableCounters, TableMetrics};
pub use pace::{IoRate, Pacer, PacerStats};
pub use progress::{Progress, ProgressReading};
pub use redb_store::{RedbReplaced, RedbSnapshot, RedbStore};
pub use store::{
    KeyRange, OnRead, ReadView, Record, ReplacedFile, ScrubStats, StoreOptions, StoreSnapshot,
    TableStore, WriteBatch, WriteOp,
};
