//! The last [`HISTORY_LEN`] compaction runs, kept in memory and persisted as JSON in the data
//! dir (`compaction_history.json`, written through a temporary file and a rename).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// How many runs are kept.
pub const HISTORY_LEN: usize = 20;

/// What happened to one table in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum TableOutcome {
    /// Compacted.
    Compacted,
    /// Not compacted, and why (fragmentation under the threshold, table unavailable...).
    Skipped(String),
    /// Failed (after the retry), and why.
    Failed(String),
}

/// One table's result in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableResult {
    /// The table.
    pub table: String,
    /// Compacted, skipped or failed.
    #[serde(flatten)]
    pub outcome: TableOutcome,
    /// Wall time spent on the table, both attempts included.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// File size before.
    pub bytes_before: u64,
    /// File size after.
    pub bytes_after: u64,
    /// Fragmentation ratio measured before deciding.
    pub fragmentation_before: f64,
    /// Whether a second attempt was made.
    pub retried: bool,
    /// Longest time the table did not serve operations.
    #[serde(with = "humantime_serde")]
    pub max_pause: Duration,
}

/// One compaction run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactionRun {
    /// When it started.
    #[serde(with = "humantime_serde")]
    pub started_at: SystemTime,
    /// How long it took.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// What triggered it: "schedule" or "manual".
    pub trigger: String,
    /// Per-table results, in the order tables were visited.
    pub results: Vec<TableResult>,
}
