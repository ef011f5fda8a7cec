//! [`Maintainer::health_metrics`]: size, fragmentation and status of every table, the last
//! compaction, backup and scrub of each, the compaction history and the scrub in progress. Built from what each owner
//! publishes in its [`store_owners::Shared`] state (one `stat` per table file), never through
//! an owner's queue, so it answers while a table is busy or stuck.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use store_core::{IoRate, Pacer};
use store_owners::TableStatus;

use crate::backup::BackupInfo;
use crate::maintainer::Maintainer;
use crate::report::{
    CompactionRun, RemoteHealth, ScrubProgress, ScrubResult, TableOutcome, TableResult,
};

/// A table's health in one word, with the detail kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Serving.
    Ok,
    /// Serving, with a compaction in progress.
    Compacting,
    /// Not serving (did not open, being replaced).
    Unavailable,
    /// Serving an empty table: its data was lost and no backup could be restored.
    Degraded,
    /// Corruption detected; waiting for a restore.
    Corrupted,
    /// The table existed but its file is missing, empty or not a file; waiting for a restore.
    Lost,
    /// The owner has stopped.
    Closed,
}

impl HealthStatus {
    /// The one-word status of `status`, and its detail if it has one.
    pub fn of(status: &TableStatus) -> (HealthStatus, Option<String>) {
        let word = match status {
            TableStatus::Ok => HealthStatus::Ok,
            TableStatus::Compacting => HealthStatus::Compacting,
            TableStatus::Unavailable(_) => HealthStatus::Unavailable,
            TableStatus::Degraded(_) => HealthStatus::Degraded,
            TableStatus::Corrupted(_) => HealthStatus::Corrupted,
            TableStatus::Lost(_) => HealthStatus::Lost,
            TableStatus::Closed => HealthStatus::Closed,
        };
        (word, status.detail().map(str::to_string))
    }

    /// The status's name, as in JSON and in [`TableStatus::name`].
    pub fn name(self) -> &'static str {
        match self {
            HealthStatus::Ok => "ok",
            HealthStatus::Compacting => "compacting",
            HealthStatus::Unavailable => "unavailable",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Corrupted => "corrupted",
            HealthStatus::Lost => "lost",
            HealthStatus::Closed => "closed",
        }
    }
}

/// One table's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableHealth {
    /// The table.
    pub table: String,
    /// Ok, compacting, unavailable, degraded, corrupted, lost or closed.
    pub status: HealthStatus,
    /// Why, for the statuses that carry a reason.
    pub status_detail: Option<String>,
    /// Live records.
    pub records: u64,
    /// Size of the table file.
    pub file_bytes: u64,
    /// Key plus value bytes of the live records.
    pub live_bytes: u64,
    /// Estimated bytes a compaction would give back.
    pub reclaimable_bytes: u64,
    /// The table's redb page cache, its share of the memory budget.
    #[serde(default)]
    pub cache_bytes: u64,
    /// `reclaimable_bytes / file_bytes`, in `[0, 1]`; compared with the threshold.
    pub fragmentation_ratio: f64,
    /// Start of the newest run that compacted this table.
    #[serde(default, with = "humantime_serde")]
    pub last_compacted_at: Option<SystemTime>,
    /// This table's result in the newest run that visited it (compacted, skipped or failed).
    pub last_result: Option<TableResult>,
    /// The newest backup of the table whose manifest and size check out (not fully verified).
    pub last_backup: Option<BackupInfo>,
    /// The table's last scrub since the start (every page checksum verified in the
    /// background), if one ran.
    #[serde(default)]
    pub last_scrub: Option<ScrubResult>,
    /// The table's change log (where writes become durable; replayed by restores), if it
    /// has one.
    #[serde(default)]
    pub change_log: Option<store_owners::LogState>,
}

/// What [`Maintainer::health_metrics`] reports. Serializes to JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// When the report was made.
    #[serde(with = "humantime_serde")]
    pub generated_at: SystemTime,
    /// The nine tables, in [`store_owners::TABLE_NAMES`] order.
    pub tables: Vec<TableHealth>,
    /// Start of the newest compaction run.
    #[serde(default, with = "humantime_serde")]
    pub last_compaction: Option<SystemTime>,
    /// When the compaction schedule runs next (`None` when it is not started, or in a run).
    #[serde(default, with = "humantime_serde")]
    pub next_compaction: Option<SystemTime>,
    /// The kept compaction runs, oldest first.
    pub history: Vec<CompactionRun>,
    /// The maintenance I/O pacer: its pace and what it has done.
    pub pacing: PacingReport,
    /// The scrub in progress, if any.
    #[serde(default)]
    pub scrub_in_progress: Option<ScrubProgress>,
    /// The compactions, backups, verifications, restores and uploads running now
    /// ([`Maintainer::operations`]).
    #[serde(default)]
    pub operations: Vec<crate::operations::OperationInfo>,
    /// When the scrub schedule runs next.
    #[serde(default, with = "humantime_serde")]
    pub next_scrub: Option<SystemTime>,
    /// Off-site backups, when a remote is configured (filled in by whoever holds the
    /// [`crate::remote::Offsite`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteHealth>,
}

/// The maintenance I/O pacer ([`store_core::Pacer`]) as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PacingReport {
    /// The configured rate: `auto`, a fixed rate or `unlimited`.
    pub io_rate: IoRate,
    /// The pace now, bytes per second; `None` when unpaced.
    pub rate_bytes_per_s: Option<u64>,
    /// Bytes the maintenance jobs moved through the pacer since the tables opened.
    pub bytes_moved: u64,
    /// Time they spent waiting for it.
    #[serde(with = "humantime_serde")]
    pub waited: Duration,
    /// The `auto` rate's baseline commit latency, once measured.
    #[serde(default, with = "humantime_serde")]
    pub baseline_commit: Option<Duration>,
    /// A job moved bytes within the last second.
    pub active: bool,
}

impl PacingReport {
    /// What `pacer` reads out now.
    pub fn of(pacer: &Pacer) -> PacingReport {
        let s = pacer.stats();
        PacingReport {
            io_rate: s.mode,
            rate_bytes_per_s: s.rate_bytes_per_s,
            bytes_moved: s.bytes_moved,
            waited: s.waited,
            baseline_commit: s.baseline_commit,
            active: s.active,
        }
    }
}

impl HealthReport {
    /// The entry of `table`, if it is one of the nine.
    pub fn table(&self, table: &str) -> Option<&TableHealth> {
        self.tables.iter().find(|t| t.table == table)
    }
}

impl Maintainer {
    /// Size, fragmentation and status of every table, their last compaction and backup, and
    /// the compaction history. Never waits for an owner.
    pub fn health_metrics(&self) -> HealthReport {
        let history = self.history.runs();
        let tables = self
            .stores
            .owners()
            .into_iter()
            .map(|owner| {
                let shared = owner.shared();
                let metrics = shared.metrics();
                let (status, status_detail) = HealthStatus::of(&shared.status());
                let table = owner.table();
                let last_result = history
                    .iter()
                    .rev()
                    .find_map(|run| run.results.iter().find(|r| r.table == table))
                    .cloned();
                let last_compacted_at = history.iter().rev().find_map(|run| {
                    run.results
                        .iter()
                        .any(|r| r.table == table && r.outcome == TableOutcome::Compacted)
                        .then_some(run.started_at)
                });
                TableHealth {
                    table: table.to_string(),
                    status,
                    status_detail,
                    records: metrics.live_records,
                    file_bytes: metrics.file_bytes,
                    live_bytes: metrics.live_bytes,
                    reclaimable_bytes: metrics.reclaimable_bytes,
                    cache_bytes: shared.cache_bytes(),
                    fragmentation_ratio: metrics.fragmentation_ratio,
                    last_compacted_at,
                    last_result,
                    last_backup: self.last_backup(table),
                    last_scrub: self.last_scrub(table),
                    change_log: shared.log(),
                }
            })
            .collect();
        HealthReport {
            generated_at: SystemTime::now(),
            tables,
            last_compaction: history.last().map(|run| run.started_at),
            next_compaction: self.next_compaction(),
            history,
            pacing: PacingReport::of(self.stores.pacer()),
            scrub_in_progress: self.scrub_progress(),
            operations: self.operations(),
            next_scrub: self.next_scrub(),
            remote: None,
        }
    }
}
