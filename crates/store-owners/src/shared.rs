//! State an owner publishes for readers on other threads, so that metrics and status never
//! need a round trip through the owner's queue (and never stall it).

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};
use store_core::{TableCounters, TableMetrics};

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
        match self {
            TableStatus::Ok => f.write_str("ok"),
            TableStatus::Compacting => f.write_str("compacting"),
            TableStatus::Corrupted(d) => write!(f, "corrupted: {d}"),
            TableStatus::Unavailable(d) => write!(f, "unavailable: {d}"),
            TableStatus::Lost(d) => write!(f, "lost: {d}"),
            TableStatus::Degraded(d) => write!(f, "degraded: {d}"),
            TableStatus::Closed => f.write_str("closed"),
        }
    }
}

impl TableStatus {
    /// Whether a restore from a backup can bring the table back (it is not serving because
    /// its file is corrupt, lost or does not open).
    pub fn needs_restore(&self) -> bool {
        matches!(
            self,
            TableStatus::Corrupted(_) | TableStatus::Unavailable(_) | TableStatus::Lost(_)
        )
    }
}

/// Published by an owner after every commit; read by anyone.
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
    corruption_reports: Option<Sender<&'static str>>,
}

impl Shared {
    pub(crate) fn new(
        table: &'static str,
        path: PathBuf,
        corruption_reports: Option<Sender<&'static str>>,
    ) -> Shared {
        Shared {
            table,
            path,
            records: AtomicU64::new(0),
            live_bytes: AtomicU64::new(0),
            dead_records: AtomicU64::new(0),
            dead_bytes: AtomicU64::new(0),
            status: Mutex::new(TableStatus::Ok),
            reopens: AtomicU64::new(0),
            corruption_reports,
        }
    }

    pub(crate) fn publish_counters(&self, c: TableCounters) {
        self.records.store(c.records, Ordering::Relaxed);
        self.live_bytes.store(c.live_bytes, Ordering::Relaxed);
        self.dead_records.store(c.dead_records, Ordering::Relaxed);
        self.dead_bytes.store(c.dead_bytes, Ordering::Relaxed);
    }

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

    pub(crate) fn set_status(&self, status: TableStatus) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = status;
    }

    /// Times the owner closed and reopened the table file after an I/O error.
    pub fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::Relaxed)
    }

    pub(crate) fn count_reopen(&self) {
        self.reopens.fetch_add(1, Ordering::Relaxed);
    }

    /// Set a status that a restore can fix (see [`TableStatus::needs_restore`]) and tell the
    /// recovery manager.
    pub(crate) fn report_for_restore(&self, status: TableStatus) {
        tracing::error!(table = self.table, %status, "table needs a restore");
        self.set_status(status);
        if let Some(reports) = &self.corruption_reports {
            let _ = reports.try_send(self.table);
        }
    }

    /// Record corruption and tell whoever listens (the recovery manager) once per detection.
    pub(crate) fn report_corruption(&self, detail: String) {
        tracing::error!(table = self.table, %detail, "corruption detected");
        let already = matches!(self.status(), TableStatus::Corrupted(_));
        self.set_status(TableStatus::Corrupted(detail));
        if !already && let Some(reports) = &self.corruption_reports {
            let _ = reports.try_send(self.table);
        }
    }
}
