//! What maintenance runs are started by and what they report: the compaction run, the backup
//! run and the recovery report, which the operations return, events carry ([`crate::events`])
//! and the history keeps ([`crate::history`]). A leaf: plain serde types, no behaviour.
//!
//! Durations are numbers of seconds in JSON (`"duration_seconds": 3.902`), as Prometheus and
//! JSON consumers expect; files written before read back (their `"duration": "3s 902ms"`).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// What started a compaction or backup run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The compaction or backup schedule.
    Schedule,
    /// An operator or a test.
    #[default]
    Manual,
}

impl Trigger {
    /// The name recorded in the history: `schedule` or `manual`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
        }
    }
}

/// What started a backup run: the same type as a compaction run's trigger (`manual` or
/// `schedule`).
pub type BackupTrigger = Trigger;

/// What happened to one table in a compaction run.
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

/// One table's result in a compaction run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableResult {
    /// The table.
    pub table: String,
    /// Compacted, skipped or failed.
    #[serde(flatten)]
    pub outcome: TableOutcome,
    /// Wall time spent on the table, both attempts included.
    #[serde(rename = "duration_seconds", alias = "duration", with = "seconds")]
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
    #[serde(rename = "max_pause_seconds", alias = "max_pause", with = "seconds")]
    pub max_pause: Duration,
}

/// One compaction run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactionRun {
    /// When it started.
    #[serde(with = "humantime_serde")]
    pub started_at: SystemTime,
    /// How long it took.
    #[serde(rename = "duration_seconds", alias = "duration", with = "seconds")]
    pub duration: Duration,
    /// What triggered it: "schedule" or "manual".
    pub trigger: String,
    /// Per-table results, in the order tables were visited.
    pub results: Vec<TableResult>,
}

/// One backup a run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableBackup {
    /// The table.
    pub table: String,
    /// The new backup's id.
    pub id: String,
    /// The new backup file.
    pub path: PathBuf,
    /// Records copied.
    pub records: u64,
    /// Size of the backup file.
    pub bytes: u64,
    /// blake3 checksum of the backup file.
    pub blake3: String,
    /// Wall time of the backup, verification included.
    #[serde(rename = "duration_seconds", alias = "duration", with = "seconds")]
    pub duration: Duration,
    /// Ids of older backups that retention deleted.
    pub removed: Vec<String>,
}

/// One table a run failed to back up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFailure {
    /// The table.
    pub table: String,
    /// What went wrong.
    pub error: String,
    /// Whether the live table's snapshot turned out to be corrupt.
    pub corruption: bool,
}

/// The result of [`crate::Maintainer::backup_all`] or [`crate::Maintainer::backup_one`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRun {
    /// What started it.
    pub trigger: BackupTrigger,
    /// When it started.
    #[serde(with = "humantime_serde")]
    pub started_at: SystemTime,
    /// How long it took.
    #[serde(rename = "duration_seconds", alias = "duration", with = "seconds")]
    pub duration: Duration,
    /// Backups made, in table order.
    pub backups: Vec<TableBackup>,
    /// Tables that failed, in table order.
    pub failures: Vec<BackupFailure>,
}

/// What started a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryTrigger {
    /// An operator.
    Manual,
    /// Corruption was detected.
    Auto,
}

/// How a recovery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryOutcome {
    /// The table serves the backup's data.
    Restored,
    /// No good backup: the table serves an empty file; its data was lost (the corrupt file is
    /// in quarantine).
    Degraded,
    /// Nothing changed: the previous file keeps serving (or the table stays unavailable).
    Failed,
}

/// A backup that was considered and refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedBackup {
    /// Its id.
    pub id: String,
    /// Why it was refused.
    pub reason: String,
}

/// What a recovery did; the payload of `recovery_complete` and `recovery_failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryReport {
    /// The table.
    pub table: String,
    /// Manual or auto.
    pub trigger: RecoveryTrigger,
    /// Restored, degraded or failed.
    pub outcome: RecoveryOutcome,
    /// The backup restored, if any.
    pub backup_id: Option<String>,
    /// Records in the table afterwards.
    pub records: u64,
    /// Where the previous table file went.
    pub quarantined: Option<PathBuf>,
    /// True when the table's data was lost (degraded mode).
    pub data_lost: bool,
    /// Backups refused on the way (failed verification).
    pub rejected: Vec<RejectedBackup>,
    /// What went wrong, when the outcome is not `restored`.
    pub error: Option<String>,
    /// When the recovery started.
    #[serde(with = "humantime_serde")]
    pub started_at: SystemTime,
    /// How long it took.
    #[serde(rename = "duration_seconds", alias = "duration", with = "seconds")]
    pub duration: Duration,
    /// Change-log groups replayed after the backup (the writes acknowledged since it).
    #[serde(default)]
    pub log_replayed: u64,
    /// Groups of the change log the replay could not recover (damaged or missing), if any:
    /// the writes acknowledged in that range are lost.
    #[serde(default)]
    pub log_unrecovered: Option<store_owners::LogGap>,
    /// A point-in-time restore: the instant the table was brought back to.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub restored_to: Option<SystemTime>,
}

/// One backup copied off-site; the payload of `upload_complete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteUpload {
    /// The table.
    pub table: String,
    /// The backup id (the same as the local backup's).
    pub id: String,
    /// Records in the backup.
    pub records: u64,
    /// Size of the backup file.
    pub plain_bytes: u64,
    /// Size of the object in the bucket (compressed, encrypted).
    pub object_bytes: u64,
    /// Wall time of the upload, manifest included.
    #[serde(rename = "duration_seconds", alias = "duration", with = "seconds")]
    pub duration: Duration,
    /// Ids of older off-site backups that remote retention deleted afterwards.
    pub removed: Vec<String>,
}

/// A table whose backup could not be copied off-site; the payload of `upload_failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteUploadFailure {
    /// The table.
    pub table: String,
    /// The backup that was being uploaded, if it got that far.
    pub id: Option<String>,
    /// What went wrong.
    pub error: String,
}

/// What is off-site for one table, as seen after the last upload or listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteTableStats {
    /// The table.
    pub table: String,
    /// Complete off-site backups (with their manifest).
    pub backups: u64,
    /// Objects under the table's prefix, manifests included.
    pub objects: u64,
    /// Bytes of those objects.
    pub bytes: u64,
    /// The newest off-site backup, if any.
    pub newest: Option<String>,
}

/// The off-site part of `/health`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RemoteHealth {
    /// `s3://bucket/prefix`.
    pub url: String,
    /// When the last upload ended well.
    #[serde(default, with = "humantime_serde")]
    pub last_upload_at: Option<SystemTime>,
    /// Its size in the bucket.
    pub last_upload_bytes: u64,
    /// How long it took.
    #[serde(
        rename = "last_upload_duration_seconds",
        alias = "last_upload_duration",
        with = "seconds"
    )]
    pub last_upload_duration: Duration,
    /// When the last upload failed, if it failed after the last success.
    #[serde(default, with = "humantime_serde")]
    pub last_failure_at: Option<SystemTime>,
    /// Why, in that case.
    pub last_error: Option<String>,
    /// Uploads that ended well since start.
    pub uploads: u64,
    /// Uploads that failed since start.
    pub upload_failures: u64,
    /// Per table, in [`store_owners::TABLE_NAMES`] order; empty before the first listing.
    pub tables: Vec<RemoteTableStats>,
    /// Per table with a change log, what of it is off-site (in [`store_owners::TABLE_NAMES`]
    /// order; a table shows once the shipper knows its position in the bucket).
    #[serde(default)]
    pub logs: Vec<ShippedLog>,
    /// Change-log shipments that failed since start.
    #[serde(default)]
    pub ship_failures: u64,
    /// When the last shipment failed, if no pass has shipped everything since.
    #[serde(default, with = "humantime_serde")]
    pub last_ship_failure_at: Option<SystemTime>,
    /// Why, in that case.
    #[serde(default)]
    pub last_ship_error: Option<String>,
}

/// One table's change log off-site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippedLog {
    /// The table.
    pub table: String,
    /// The last group in the bucket.
    pub position: u64,
    /// The local log's last group when last seen.
    pub head: u64,
    /// When the bucket last held every group acknowledged up to then: a machine lost now
    /// loses the writes acknowledged after it (the recovery point's age is now minus this).
    #[serde(default, with = "humantime_serde")]
    pub current_at: Option<SystemTime>,
    /// Chunks shipped since start.
    pub chunks: u64,
    /// Their bytes in the bucket.
    pub bytes: u64,
}

/// How one table's scrub ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScrubOutcome {
    /// Every page verified.
    Clean,
    /// Damage found; the table was reported for an automatic restore.
    Corrupted,
    /// Not scrubbed: the table is not serving, the scrub was stopped, or the table file was
    /// replaced during the walk (`detail` says which).
    Skipped,
    /// The walk could not run to its end (an I/O error reading the file).
    Failed,
}

impl ScrubOutcome {
    /// The outcome's name, as in JSON (`clean`, `corrupted`, `skipped`, `failed`).
    pub fn name(self) -> &'static str {
        match self {
            ScrubOutcome::Clean => "clean",
            ScrubOutcome::Corrupted => "corrupted",
            ScrubOutcome::Skipped => "skipped",
            ScrubOutcome::Failed => "failed",
        }
    }
}

/// One table's scrub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScrubResult {
    /// The table.
    pub table: String,
    /// How it ended.
    pub outcome: ScrubOutcome,
    /// What was found, or why it did not run.
    pub detail: Option<String>,
    /// Bytes of the table file read.
    pub bytes_read: u64,
    /// How long the walk took, in seconds.
    pub duration_seconds: f64,
    /// When it ended.
    #[serde(with = "humantime_serde")]
    pub finished_at: SystemTime,
}

/// The scrub in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScrubProgress {
    /// The table being read.
    pub table: String,
    /// Bytes of its file read so far.
    pub bytes_read: u64,
    /// Size of its file when the walk began (the walk reads the live pages, at most this).
    pub file_bytes: u64,
    /// Tables done in this run, and in all.
    pub tables_done: usize,
    /// Tables this run scrubs.
    pub tables_total: usize,
    /// When the run began.
    #[serde(with = "humantime_serde")]
    pub started_at: SystemTime,
}

/// A scrub run over several tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScrubRun {
    /// One result per table, in table order.
    pub results: Vec<ScrubResult>,
}

/// Serde for a duration as a number of seconds; reads the human-readable strings
/// (`"3s 902ms"`) that histories and events held before.
pub(crate) mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom),
            Raw::Text(t) => humantime::parse_duration(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Timed {
        #[serde(
            rename = "duration_seconds",
            alias = "duration",
            with = "super::seconds"
        )]
        duration: Duration,
    }

    #[test]
    fn durations_are_seconds_and_old_strings_still_read() {
        let timed = Timed {
            duration: Duration::from_millis(3_902),
        };
        let json = serde_json::to_string(&timed).unwrap();
        assert_eq!(json, r#"{"duration_seconds":3.902}"#);
        assert_eq!(serde_json::from_str::<Timed>(&json).unwrap(), timed);
        let old: Timed = serde_json::from_str(r#"{"duration":"3s 902ms"}"#).unwrap();
        assert_eq!(old, timed);
        assert!(serde_json::from_str::<Timed>(r#"{"duration":-1.0}"#).is_err());
    }
}
