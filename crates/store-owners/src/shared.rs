//! State an owner publishes for readers on other threads, so that metrics and status never
//! need a round trip through the owner's queue (and never stall it): [`Shared`] is the read
//! side anyone holds, `Publisher` the write side only the owner thread holds.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};
use store_core::{TableCounters, TableMetrics};

use crate::latency::{CommitLatency, LatencySnapshot};

/// The health of one table as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum TableStatus {
    /// Serving.
    Ok,
    /// Serving, with an online compaction (or an in-place one, which blocks) in progress.
    Compacting,
    /// Corruption detected; waiting for a restore.
    Corrupted(String),
    /// Not serving (did not open, or an I/O error closed it and it is being reopened).
    Unavailable(String),
    /// Not serving: the table existed but its file is missing, empty or not a file. Waiting
    /// for a restore; never served as an empty table.
    Lost(String),
    /// Serving an empty table after its corrupt file was quarantined with no backup to restore.
    Degraded(String),
    /// The owner has stopped.
    Closed,
}

impl std::fmt::Display for TableStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.detail() {
            Some(detail) => write!(f, "{}: {detail}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

impl TableStatus {
    /// The state's one name, as metrics, health and the API spell it: `ok`, `compacting`,
    /// `corrupted`, `unavailable`, `lost`, `degraded` or `closed`.
    pub fn name(&self) -> &'static str {
        match self {
            TableStatus::Ok => "ok",
            TableStatus::Compacting => "compacting",
            TableStatus::Corrupted(_) => "corrupted",
            TableStatus::Unavailable(_) => "unavailable",
            TableStatus::Lost(_) => "lost",
            TableStatus::Degraded(_) => "degraded",
            TableStatus::Closed => "closed",
        }
    }

    /// What the owner knows about why, for the states that carry a detail.
    pub fn detail(&self) -> Option<&str> {
        match self {
            TableStatus::Corrupted(d)
            | TableStatus::Unavailable(d)
            | TableStatus::Lost(d)
            | TableStatus::Degraded(d) => Some(d),
            TableStatus::Ok | TableStatus::Compacting | TableStatus::Closed => None,
        }
    }

    /// Whether a restore from a backup can bring the table back (it is not serving because
    /// its file is corrupt, lost or does not open).
    pub fn needs_restore(&self) -> bool {
        matches!(
            self,
            TableStatus::Corrupted(_) | TableStatus::Unavailable(_) | TableStatus::Lost(_)
        )
    }
}

/// Published by an owner after every commit; read by anyone. Only the owner thread writes
/// it: through its `Publisher`, and the commit latencies straight after each commit.
#[derive(Debug)]
pub struct Shared {
    /// The table's name.
    pub table: &'static str,
    /// The table file.
    pub path: PathBuf,
    records: AtomicU64,
    live_bytes: AtomicU64,
    dead_records: AtomicU64,
    dead_bytes: AtomicU64,
    status: Mutex<TableStatus>,
    reopens: AtomicU64,
    /// The redb cache the table's file is opened with, in bytes.
    cache_bytes: u64,
    /// The change log, as last published (none without one).
    log: Mutex<Option<LogState>>,
    /// The figures of `log` that move with every commit, published without a lock.
    log_progress: LogProgressCells,
    /// The latencies of the durable group commits, counted by the owner thread.
    commit_latency: CommitLatency,
}

/// What a commit changes in a table's change log.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LogProgress {
    pub(crate) head: u64,
    pub(crate) disk_bytes: u64,
    pub(crate) appended: u64,
}

/// [`LogProgress`] as atomics.
#[derive(Debug, Default)]
struct LogProgressCells {
    head: AtomicU64,
    disk_bytes: AtomicU64,
    appended: AtomicU64,
}

/// A table's change log as its owner last published it (see `store_core::changelog`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogState {
    /// The log's directory.
    pub dir: PathBuf,
    /// The last group appended: every acknowledged write is at or before it.
    pub head: u64,
    /// The last group the table file holds durably (the log before it is needed only by
    /// restores).
    pub durable_position: u64,
    /// The first group still in the log.
    pub first: Option<u64>,
    /// Bytes of the log's segments.
    pub disk_bytes: u64,
    /// Groups appended since the owner started.
    pub appended: u64,
    /// Groups replayed into the table file since the owner started (at open and restores).
    pub replayed: u64,
    /// The last range of groups a replay could not recover, if any.
    pub unrecovered: Option<LogGap>,
}

/// Groups a replay could not apply: the log was damaged or incomplete there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogGap {
    /// First group not recovered.
    pub from: u64,
    /// Last group not recovered.
    pub through: u64,
    /// Why (the damage or the missing segment).
    pub detail: String,
}

impl std::fmt::Display for LogGap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "change-log groups {}..={} not recovered: {}",
            self.from, self.through, self.detail
        )
    }
}

impl Shared {
    /// The counters as of the last commit.
    pub fn counters(&self) -> TableCounters {
        TableCounters {
            records: self.records.load(Ordering::Relaxed),
            live_bytes: self.live_bytes.load(Ordering::Relaxed),
            dead_records: self.dead_records.load(Ordering::Relaxed),
            dead_bytes: self.dead_bytes.load(Ordering::Relaxed),
        }
    }

    /// Size and fragmentation: one `stat` of the file, no round trip to the owner.
    pub fn metrics(&self) -> TableMetrics {
        let file_bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        TableMetrics::compute(file_bytes, self.counters())
    }

    /// The table's current status.
    pub fn status(&self) -> TableStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Times the owner closed and reopened the table file after an I/O error.
    pub fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::Relaxed)
    }

    /// The redb cache the table's file is opened with, in bytes (its share of the memory
    /// budget).
    pub fn cache_bytes(&self) -> u64 {
        self.cache_bytes
    }

    /// The table's change log, if it has one.
    pub fn log(&self) -> Option<LogState> {
        let mut state = self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
        let cells = &self.log_progress;
        state.head = cells.head.load(Ordering::Relaxed);
        state.disk_bytes = cells.disk_bytes.load(Ordering::Relaxed);
        state.appended = cells.appended.load(Ordering::Relaxed);
        Some(state)
    }

    /// The latencies of the table's durable group commits since its owner started.
    pub fn commit_latency(&self) -> LatencySnapshot {
        self.commit_latency.snapshot()
    }

    /// Count a durable group commit of `latency`. Called by the owner thread only, after
    /// each commit (lock-free: no publisher needed on the commit path).
    pub(crate) fn count_commit(&self, latency: std::time::Duration) {
        self.commit_latency.observe(latency);
    }
}

/// The writing side of a table's [`Shared`] state: its status, counters and reopen count,
/// and the reports sent to recovery. Exactly one exists per table: made with the table's
/// `Shared`, it is moved into the owner thread, which alone writes these facts (a second
/// writer once left a window where a table that lost its data reported ok).
#[derive(Debug)]
pub(crate) struct Publisher {
    shared: Arc<Shared>,
    /// Where states a restore can fix are reported, by table name.
    corruption_reports: Option<Sender<&'static str>>,
}

impl Publisher {
    /// The state of a new owner, starting at `status`, and the one writer of it.
    pub(crate) fn new(
        table: &'static str,
        path: PathBuf,
        status: TableStatus,
        corruption_reports: Option<Sender<&'static str>>,
        cache_bytes: u64,
    ) -> Publisher {
        let shared = Shared {
            table,
            path,
            records: AtomicU64::new(0),
            live_bytes: AtomicU64::new(0),
            dead_records: AtomicU64::new(0),
            dead_bytes: AtomicU64::new(0),
            status: Mutex::new(status),
            reopens: AtomicU64::new(0),
            cache_bytes,
            log: Mutex::new(None),
            log_progress: LogProgressCells::default(),
            commit_latency: CommitLatency::default(),
        };
        Publisher {
            shared: Arc::new(shared),
            corruption_reports,
        }
    }

    /// The state readers see.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The table's current status.
    pub(crate) fn status(&self) -> TableStatus {
        self.shared.status()
    }

    pub(crate) fn set_status(&self, status: TableStatus) {
        *self.shared.status.lock().unwrap_or_else(|p| p.into_inner()) = status;
    }

    pub(crate) fn publish_counters(&self, c: TableCounters) {
        let s = &self.shared;
        s.records.store(c.records, Ordering::Relaxed);
        s.live_bytes.store(c.live_bytes, Ordering::Relaxed);
        s.dead_records.store(c.dead_records, Ordering::Relaxed);
        s.dead_bytes.store(c.dead_bytes, Ordering::Relaxed);
    }

    /// Publish the whole state of the change log (after a replay, a sync, a prune).
    pub(crate) fn publish_log(&self, state: LogState) {
        self.publish_log_progress(LogProgress {
            head: state.head,
            disk_bytes: state.disk_bytes,
            appended: state.appended,
        });
        *self.shared.log.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
    }

    /// Publish what a commit changed in the change log: three stores, no lock, no
    /// allocation (the owner's commit path).
    pub(crate) fn publish_log_progress(&self, progress: LogProgress) {
        let cells = &self.shared.log_progress;
        cells.head.store(progress.head, Ordering::Relaxed);
        cells
            .disk_bytes
            .store(progress.disk_bytes, Ordering::Relaxed);
        cells.appended.store(progress.appended, Ordering::Relaxed);
    }

    pub(crate) fn count_reopen(&self) {
        self.shared.reopens.fetch_add(1, Ordering::Relaxed);
    }

    /// Tell the recovery manager that the table needs a restore (its status says why).
    pub(crate) fn send_report(&self) {
        if let Some(reports) = &self.corruption_reports {
            let _ = reports.try_send(self.shared.table);
        }
    }

    /// Set a status that a restore can fix (see [`TableStatus::needs_restore`]) and tell the
    /// recovery manager.
    pub(crate) fn report_for_restore(&self, status: TableStatus) {
        tracing::error!(table = self.shared.table, %status, "table needs a restore");
        self.set_status(status);
        self.send_report();
    }

    /// Record corruption and tell whoever listens (the recovery manager) once per detection.
    pub(crate) fn report_corruption(&self, detail: String) {
        tracing::error!(table = self.shared.table, %detail, "corruption detected");
        let already = matches!(self.status(), TableStatus::Corrupted(_));
        self.set_status(TableStatus::Corrupted(detail));
        if !already {
            self.send_report();
        }
    }
}
