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

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use compaction::history::{TableOutcome, TableResult};
    use compaction::recovery::{RecoveryOutcome, RecoveryReport, RecoveryTrigger};
    use compaction::remote::RemoteUploadFailure;
    use compaction::{Envelope, Event};

    use super::message;

    fn envelope(event: Event) -> Envelope {
        Envelope {
            topic: compaction::events::TOPIC.into(),
            at: SystemTime::now(),
            event,
        }
    }

    fn recovery(outcome: RecoveryOutcome, error: Option<&str>) -> Event {
        let report = RecoveryReport {
            table: "task_queue".into(),
            trigger: RecoveryTrigger::Auto,
            outcome,
            backup_id: None,
            records: 0,
            quarantined: None,
            data_lost: outcome == RecoveryOutcome::Degraded,
            rejected: Vec::new(),
            error: error.map(str::to_string),
            started_at: SystemTime::now(),
            duration: Duration::from_millis(3),
            log_replayed: 0,
            log_unrecovered: None,
            restored_to: None,
        };
        match outcome {
            RecoveryOutcome::Restored => Event::RecoveryComplete { report },
            _ => Event::RecoveryFailed { report },
        }
    }

    /// The events the end-to-end tests cannot cause cheaply (a failed compaction, a failed
    /// upload, a failed restore) get their name, their fields and a summary with the cause.
    #[test]
    fn each_notified_event_has_its_name_fields_and_summary() {
        let failed_compaction = Event::CompactionFailed {
            failures: vec![TableResult {
                table: "message_history".into(),
                outcome: TableOutcome::Failed("No space left on device".into()),
                duration: Duration::from_millis(5),
                bytes_before: 0,
                bytes_after: 0,
                fragmentation_before: 0.4,
                retried: true,
                max_pause: Duration::ZERO,
            }],
        };
        let failed_upload = Event::UploadFailed {
            failure: RemoteUploadFailure {
                table: "agent_mailbox".into(),
                id: Some("20261125T230102.123Z".into()),
                error: "connection refused".into(),
            },
        };
        for (event, name, field, summary) in [
            (
                failed_compaction,
                "compaction_failed",
                "failures",
                "compaction failed: message_history: No space left on device",
            ),
            (
                failed_upload,
                "upload_failed",
                "failure",
                "off-site upload failed: agent_mailbox: connection refused",
            ),
            (
                recovery(RecoveryOutcome::Failed, Some("disk full")),
                "recovery_failed",
                "report",
                "restoring task_queue failed: disk full",
            ),
            (
                recovery(RecoveryOutcome::Degraded, None),
                "degraded",
                "report",
                "task_queue is degraded",
            ),
        ] {
            let m = message(&envelope(event), "/srv/data").expect("notified");
            assert_eq!(m["event"], name);
            assert!(!m[field].is_null(), "{m}");
            assert_eq!(
                (&m["source"], &m["data_dir"]),
                (&"backup-daemon".into(), &"/srv/data".into())
            );
            assert!(m["summary"].as_str().unwrap().starts_with(summary), "{m}");
        }
        // A restore is sent; a routine completion is not.
        let done = recovery(RecoveryOutcome::Restored, None);
        assert!(message(&envelope(done), "/srv/data").is_some());
        let compacted = Event::CompactionComplete {
            run: compaction::history::CompactionRun {
                started_at: SystemTime::now(),
                duration: Duration::ZERO,
                trigger: "schedule".into(),
                results: Vec::new(),
            },
        };
        assert!(message(&envelope(compacted), "/srv/data").is_none());
    }
}
