//! The JSON message a webhook receives for one event of the "backups" topic, and which events
//! are sent at all: failures, recoveries and degraded mode, never the routine completions.

use compaction::recovery::RecoveryOutcome;
use compaction::{Envelope, Event};
use serde_json::{Value, json};

/// The message for `envelope`, or `None` for an event that is not notified. The message is
/// the event as the SSE stream carries it (`topic`, `at`, `event` and the event's fields)
/// plus `source`, `data_dir` and a one-line `summary`; a recovery that ended in degraded mode
/// is sent as `"event": "degraded"`.
pub fn message(envelope: &Envelope, data_dir: &str) -> Option<Value> {
    let (name, summary) = match &envelope.event {
        Event::CompactionFailed { failures } => (
            "compaction_failed",
            format!(
                "compaction failed: {}",
                join(failures.iter().map(|f| match &f.outcome {
                    compaction::history::TableOutcome::Failed(e) => format!("{}: {e}", f.table),
                    _ => f.table.clone(),
                }))
            ),
        ),
        Event::BackupFailed { failures } => (
            "backup_failed",
            format!(
                "backup failed: {}",
                join(failures.iter().map(|f| format!("{}: {}", f.table, f.error)))
            ),
        ),
        Event::UploadFailed { failure } => (
            "upload_failed",
            format!(
                "off-site upload failed: {}: {}",
                failure.table, failure.error
            ),
        ),
        Event::RecoveryComplete { report } => (
            "recovery_complete",
            format!(
                "{} restored from backup {} ({} records)",
                report.table,
                report.backup_id.as_deref().unwrap_or("?"),
                report.records
            ),
        ),
        Event::RecoveryFailed { report } if report.outcome == RecoveryOutcome::Degraded => (
            "degraded",
            format!(
                "{} is degraded: no verified backup to restore, it serves an empty table \
                 (the damaged file is in quarantine)",
                report.table
            ),
        ),
        Event::RecoveryFailed { report } => (
            "recovery_failed",
            format!(
                "restoring {} failed: {}",
                report.table,
                report.error.as_deref().unwrap_or("no detail")
            ),
        ),
        Event::CompactionComplete { .. }
        | Event::BackupComplete { .. }
        | Event::UploadComplete { .. } => return None,
    };
    let mut message = serde_json::to_value(envelope).ok()?;
    let fields = message.as_object_mut()?;
    fields.insert("event".into(), json!(name));
    fields.insert("source".into(), json!("backup-daemon"));
    fields.insert("data_dir".into(), json!(data_dir));
    fields.insert("summary".into(), json!(summary));
    Some(message)
}

fn join(parts: impl Iterator<Item = String>) -> String {
    parts.collect::<Vec<_>>().join("; ")
}
