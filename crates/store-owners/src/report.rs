//! What maintenance commands are asked and answer: [`CompactReport`] (both compactions),
//! [`ReplaceRequest`] and [`ReplaceReport`] (a restore, or an empty table after data loss).
//! A leaf: the owner's handle and thread and the online compaction all name these types.

use std::path::PathBuf;
use std::time::Duration;

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CompactReport {
    /// File size before.
    pub bytes_before: u64,
    /// File size after.
    pub bytes_after: u64,
    /// Live records after.
    pub records: u64,
    /// Wall time of the whole compaction.
    #[serde(with = "duration_micros")]
    pub duration: Duration,
    /// Longest time the table did not serve operations.
    #[serde(with = "duration_micros")]
    pub max_pause: Duration,
    /// Catch-up rounds run (online only).
    pub catch_up_rounds: u32,
    /// Time from the start to the end of the snapshot copy (online only; zero in place).
    #[serde(with = "duration_micros", default)]
    pub copy: Duration,
    /// Time from the start to the final pause (online only: the copy and the catch-up
    /// rounds; zero in place). The pause follows, [`CompactReport::max_pause`] long.
    #[serde(with = "duration_micros", default)]
    pub paused_at: Duration,
}

/// Replace the table file with another file (restore from a backup, or an empty table).
#[derive(Debug, Clone)]
pub struct ReplaceRequest {
    /// A complete table file in the same directory as the table, or `None` to start empty.
    pub replacement: Option<PathBuf>,
    /// Where the current file is moved (never deleted). Must be on the same file system.
    pub quarantine: PathBuf,
    /// If set, the reopened table must hold exactly this many records.
    pub expected_records: Option<u64>,
    /// Serve the replacement as [`crate::TableStatus::Degraded`] with this detail (its data
    /// was lost) instead of ok; unless it is an empty table the change log rebuilt whole
    /// (replayed from its first group, nothing missing).
    pub degraded: Option<String>,
    /// With a change log: true replays the log's groups after the replacement's position
    /// into it (a restore that loses no acknowledged write); false takes the replacement as
    /// the state wanted (a point-in-time restore) and logs the difference as writes.
    pub replay_log: bool,
}

/// What a replacement did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReplaceReport {
    /// Where the previous file went, if there was one.
    pub quarantined: Option<PathBuf>,
    /// Records in the table after the replacement (and the replay).
    pub records: u64,
    /// Change-log groups replayed into the replacement.
    #[serde(default)]
    pub log_replayed: u64,
    /// Groups the replay could not recover (damaged or missing log), if any.
    #[serde(default)]
    pub log_unrecovered: Option<crate::shared::LogGap>,
}

mod duration_micros {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_micros() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}
