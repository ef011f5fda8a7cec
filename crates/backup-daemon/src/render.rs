//! Human-readable output of the verbs, rendered from the typed results ([`OpResult`]), which
//! a verb has whether it ran the operation itself or read the daemon's reply: a verb prints
//! the same thing either way.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use compaction::recovery::RecoveryOutcome;
use compaction::{
    BackupInfo, BackupRun, BackupState, CompactionRun, HealthReport, OperationInfo, PacingReport,
    RecoveryReport, TableOutcome,
};

use compaction::remote::{Encryption, RemoteBackupInfo, UploadPass};

use crate::protocol::{Op, OpResult};

/// The text a verb prints for `result`.
pub fn render(result: &OpResult) -> String {
    match result {
        OpResult::Health(report) => render_status(report),
        OpResult::History(runs) => render_history(runs),
        OpResult::Operations(running) => render_operations(running),
        OpResult::Backups(all) => render_backups(all),
        OpResult::Compaction(run) => render_compaction_run(run),
        OpResult::Backup(run) => render_backup_run(run),
        OpResult::Restore(report) => render_recovery(report),
        OpResult::RemoteBackups(all) => render_remote_backups(all),
        OpResult::Upload(pass) => render_upload(pass),
        OpResult::RestoreAt(reports) => reports.iter().map(render_recovery).collect(),
    }
}

/// Whether the result of `op` reports failed tables (the verb then exits with 1): a failed
/// compaction or backup, a restore that did not restore, a corrupt backup found by `verify`.
pub fn has_failures(op: &Op, result: &OpResult) -> bool {
    match result {
        OpResult::Compaction(run) => run
            .results
            .iter()
            .any(|r| matches!(r.outcome, TableOutcome::Failed(_))),
        OpResult::Backup(run) => !run.failures.is_empty(),
        OpResult::Restore(report) => report.outcome != RecoveryOutcome::Restored,
        OpResult::RestoreAt(reports) => reports
            .iter()
            .any(|r| r.outcome != RecoveryOutcome::Restored),
        OpResult::Backups(all) => {
            matches!(op, Op::Backups { verify: true })
                && all
                    .iter()
                    .any(|b| matches!(b.state, BackupState::Corrupt(_)))
        }
        OpResult::RemoteBackups(all) => {
            matches!(op, Op::RemoteBackups { verify: true })
                && all
                    .iter()
                    .any(|b| matches!(b.state, BackupState::Corrupt(_)))
        }
        OpResult::Upload(pass) => !pass.failures.is_empty(),
        OpResult::Health(_) | OpResult::History(_) | OpResult::Operations(_) => false,
    }
}

/// A table's compaction outcome as its JSON says it (`status`, `reason`).
fn outcome_name(outcome: &TableOutcome) -> (&'static str, Option<&str>) {
    match outcome {
        TableOutcome::Compacted => ("compacted", None),
        TableOutcome::Skipped(reason) => ("skipped", Some(reason)),
        TableOutcome::Failed(reason) => ("failed", Some(reason)),
    }
}

/// A backup's state as its JSON says it (`state`, `detail`).
fn state_name(state: &BackupState) -> (&'static str, Option<&str>) {
    match state {
        BackupState::Verified => ("verified", None),
        BackupState::Unchecked => ("unchecked", None),
        BackupState::Corrupt(detail) => ("corrupt", Some(detail)),
    }
}

/// A restore's outcome as its JSON says it.
fn recovery_name(outcome: RecoveryOutcome) -> &'static str {
    match outcome {
        RecoveryOutcome::Restored => "restored",
        RecoveryOutcome::Degraded => "degraded",
        RecoveryOutcome::Failed => "failed",
    }
}

/// `name`, or `name (detail)`.
fn with_detail(name: &str, detail: Option<&str>) -> String {
    match detail {
        None => name.to_string(),
        Some(detail) => format!("{name} ({detail})"),
    }
}

/// An optional value printed, absent as "-".
fn or_dash<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

/// A duration rounded for reading (`1.234s`, `56ms`).
fn dur(d: Duration) -> String {
    if d.as_secs() >= 60 {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    } else if d.as_millis() >= 1000 {
        format!("{:.3}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A timestamp, to the second; absent as "-".
fn when(at: Option<SystemTime>) -> String {
    or_dash(at.map(humantime::format_rfc3339_seconds))
}

/// A size in bytes, in the largest binary unit under it.
fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / (1u64 << 10) as f64),
        n => format!("{n} B"),
    }
}

/// What a run saved, in bytes (negative: the files grew), in the unit that fits; a size that
/// grew reads "grew by X", never as a negative saving.
fn saved(n: i64) -> String {
    if n < 0 {
        format!("grew by {}", bytes(n.unsigned_abs()))
    } else {
        bytes(n.unsigned_abs())
    }
}

/// A ratio to three decimals; a number JSON cannot hold (it would say null) as "-".
fn ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.3}")
    } else {
        "-".into()
    }
}

/// Aligned columns.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &mut dyn Iterator<Item = &str>, out: &mut String| {
        let cells: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    };
    line(&mut header.iter().copied(), &mut out);
    for row in rows {
        line(&mut row.iter().map(String::as_str), &mut out);
    }
    out
}

fn render_status(report: &HealthReport) -> String {
    let rows: Vec<Vec<String>> = report
        .tables
        .iter()
        .map(|t| {
            let last_backup = t
                .last_backup
                .as_ref()
                .and_then(|b| b.manifest.as_ref())
                .map(|m| m.created_at);
            vec![
                t.table.clone(),
                with_detail(t.status.name(), t.status_detail.as_deref()),
                bytes(t.file_bytes),
                t.records.to_string(),
                ratio(t.fragmentation_ratio),
                when(t.last_compacted_at),
                when(last_backup),
                t.last_scrub.as_ref().map_or_else(
                    || "-".to_string(),
                    |s| format!("{} {}", s.outcome.name(), when(Some(s.finished_at))),
                ),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "TABLE",
            "STATUS",
            "FILE",
            "RECORDS",
            "FRAGMENTATION",
            "LAST COMPACTED",
            "LAST BACKUP",
            "LAST SCRUB",
        ],
        &rows,
    );
    if report.next_compaction.is_some() {
        let _ = writeln!(out, "next compaction: {}", when(report.next_compaction));
    }
    let logs: Vec<_> = report
        .tables
        .iter()
        .filter_map(|t| t.change_log.as_ref().map(|l| (t, l)))
        .collect();
    if !logs.is_empty() {
        let total: u64 = logs.iter().map(|(_, l)| l.disk_bytes).sum();
        let _ = writeln!(
            out,
            "change logs: {} on disk, {} groups since start",
            bytes(total),
            logs.iter().map(|(_, l)| l.appended).sum::<u64>()
        );
    }
    for (t, log) in &logs {
        if let Some(gap) = &log.unrecovered {
            let _ = writeln!(out, "{}: {gap}", t.table);
        }
    }
    if report.pacing.active {
        let _ = writeln!(out, "{}", pacing(&report.pacing));
    }
    if !report.operations.is_empty() {
        out.push_str(&render_operations(&report.operations));
    }
    if let Some(p) = &report.scrub_in_progress {
        let _ = writeln!(
            out,
            "scrub running: {} ({} of {} read; table {} of {})",
            p.table,
            bytes(p.bytes_read),
            bytes(p.file_bytes),
            p.tables_done + 1,
            p.tables_total
        );
    } else if report.next_scrub.is_some() {
        let _ = writeln!(out, "next scrub: {}", when(report.next_scrub));
    }
    if let Some(remote) = &report.remote {
        let _ = writeln!(
            out,
            "off-site {}: last upload {}, {} uploaded, {} failed since start",
            remote.url,
            when(remote.last_upload_at),
            remote.uploads,
            remote.upload_failures
        );
        if let Some(error) = &remote.last_error {
            let _ = writeln!(
                out,
                "off-site upload FAILING since {}: {error}",
                when(remote.last_failure_at)
            );
        }
        for log in &remote.logs {
            let age = log
                .current_at
                .and_then(|at| SystemTime::now().duration_since(at).ok());
            let _ = writeln!(
                out,
                "{}: change log shipped through {} of {} ({} behind)",
                log.table,
                log.position,
                log.head,
                age.map_or_else(|| "never current".to_string(), dur)
            );
        }
        if let Some(error) = &remote.last_ship_error {
            let _ = writeln!(
                out,
                "change-log shipping FAILING since {} ({} failures): {error}",
                when(remote.last_ship_failure_at),
                remote.ship_failures
            );
        }
    }
    out
}

/// The running operations, one line each; a line saying there are none.
fn render_operations(running: &[OperationInfo]) -> String {
    if running.is_empty() {
        return "no operation running\n".into();
    }
    let rows: Vec<Vec<String>> = running
        .iter()
        .map(|op| {
            let total = match (op.bytes_total, op.total_estimated) {
                (0, _) => "?".to_string(),
                (n, false) => bytes(n),
                (n, true) => format!("~{} (estimate)", bytes(n)),
            };
            let percent = match op.bytes_total {
                0 => "-".to_string(),
                n => format!("{:.0}%", op.bytes_done as f64 * 100.0 / n as f64),
            };
            vec![
                op.kind.name().to_string(),
                op.table.clone(),
                op.phase.clone(),
                format!("{} / {total}", bytes(op.bytes_done)),
                percent,
                dur(op.elapsed),
            ]
        })
        .collect();
    table(
        &["OPERATION", "TABLE", "PHASE", "BYTES", "DONE", "ELAPSED"],
        &rows,
    )
}

/// The pacer's line in `status`, while a maintenance job moves bytes.
fn pacing(p: &PacingReport) -> String {
    let pace = match p.rate_bytes_per_s {
        Some(rate) => format!("{}/s", bytes(rate)),
        None => "unpaced".into(),
    };
    let baseline = p
        .baseline_commit
        .map(|b| format!(", commit baseline {:.2} ms", b.as_secs_f64() * 1e3))
        .unwrap_or_default();
    format!(
        "maintenance I/O: {pace} ({}{baseline}); {} moved, {} waiting",
        p.io_rate,
        bytes(p.bytes_moved),
        dur(p.waited)
    )
}

fn render_compaction_run(run: &CompactionRun) -> String {
    let rows: Vec<Vec<String>> = run
        .results
        .iter()
        .map(|r| {
            let (status, reason) = outcome_name(&r.outcome);
            vec![
                r.table.clone(),
                with_detail(status, reason),
                bytes(r.bytes_before),
                bytes(r.bytes_after),
                dur(r.duration),
            ]
        })
        .collect();
    let mut out = format!(
        "compaction ({}) started {}, took {}\n",
        run.trigger,
        when(Some(run.started_at)),
        dur(run.duration)
    );
    out.push_str(&table(
        &["TABLE", "RESULT", "BEFORE", "AFTER", "TIME"],
        &rows,
    ));
    out
}

/// One line per run, oldest first (the details are in `--json`).
fn render_history(runs: &[CompactionRun]) -> String {
    if runs.is_empty() {
        return "no compaction has run yet\n".into();
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            let count = |status: &str| {
                let n = run
                    .results
                    .iter()
                    .filter(|r| outcome_name(&r.outcome).0 == status)
                    .count();
                n.to_string()
            };
            // Sizes past i64::MAX count as nothing saved (a file system cannot hold them).
            let savings: i64 = run
                .results
                .iter()
                .map(|r| {
                    let before = i64::try_from(r.bytes_before).unwrap_or(0);
                    before - i64::try_from(r.bytes_after).unwrap_or(before)
                })
                .fold(0, i64::saturating_add);
            vec![
                when(Some(run.started_at)),
                run.trigger.clone(),
                dur(run.duration),
                count("compacted"),
                count("skipped"),
                count("failed"),
                saved(savings),
            ]
        })
        .collect();
    table(
        &[
            "STARTED",
            "TRIGGER",
            "TOOK",
            "COMPACTED",
            "SKIPPED",
            "FAILED",
            "SAVED",
        ],
        &rows,
    )
}

fn render_backup_run(run: &BackupRun) -> String {
    let mut out = format!(
        "backup ({}) took {}\n",
        run.trigger.as_str(),
        dur(run.duration)
    );
    let rows: Vec<Vec<String>> = run
        .backups
        .iter()
        .map(|b| {
            vec![
                b.table.clone(),
                b.id.clone(),
                b.records.to_string(),
                bytes(b.bytes),
                dur(b.duration),
            ]
        })
        .collect();
    out.push_str(&table(
        &["TABLE", "BACKUP", "RECORDS", "SIZE", "TIME"],
        &rows,
    ));
    for f in &run.failures {
        let _ = writeln!(out, "FAILED {}: {}", f.table, f.error);
    }
    out
}

fn render_backups(all: &[BackupInfo]) -> String {
    if all.is_empty() {
        return "no backups\n".into();
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|b| {
            let (state, detail) = state_name(&b.state);
            vec![
                b.table.clone(),
                b.id.clone(),
                or_dash(b.manifest.as_ref().map(|m| m.records)),
                or_dash(b.manifest.as_ref().map(|m| bytes(m.bytes))),
                with_detail(state, detail),
                when(b.verified_at),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "TABLE",
            "BACKUP",
            "RECORDS",
            "SIZE",
            "STATE",
            "LAST VERIFIED",
        ],
        &rows,
    );
    out.push_str(
        "unchecked: manifest and size checked now; LAST VERIFIED: the last full check \
         (checksum, integrity, record count), by `verify` or when the backup was made\n",
    );
    out
}

fn render_remote_backups(all: &[RemoteBackupInfo]) -> String {
    if all.is_empty() {
        return "no off-site backups\n".into();
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|b| {
            let (state, detail) = state_name(&b.state);
            let m = b.manifest.as_ref();
            vec![
                b.table.clone(),
                b.id.clone(),
                or_dash(m.map(|m| m.records)),
                or_dash(m.map(|m| bytes(m.plain_bytes))),
                or_dash(m.map(|m| bytes(m.object_bytes))),
                or_dash(m.map(|m| {
                    let encryption = match m.encryption {
                        Encryption::None => "",
                        Encryption::AgeX25519 => "+age",
                    };
                    format!("{}{encryption}", m.compression.name())
                })),
                with_detail(state, detail),
            ]
        })
        .collect();
    table(
        &[
            "TABLE",
            "BACKUP",
            "RECORDS",
            "SIZE",
            "IN BUCKET",
            "ENCODING",
            "STATE",
        ],
        &rows,
    )
}

fn render_upload(pass: &UploadPass) -> String {
    let mut out = String::new();
    for u in &pass.uploads {
        let _ = writeln!(
            out,
            "uploaded {} {}: {} -> {} in {}",
            u.table,
            u.id,
            bytes(u.plain_bytes),
            bytes(u.object_bytes),
            dur(u.duration)
        );
        if !u.removed.is_empty() {
            let _ = writeln!(
                out,
                "  removed by remote retention: {}",
                u.removed.join(", ")
            );
        }
    }
    for f in &pass.failures {
        let _ = writeln!(out, "FAILED {}: {}", f.table, f.error);
    }
    if out.is_empty() {
        out.push_str("nothing to upload: every backup is off-site\n");
    }
    out
}

fn render_recovery(report: &RecoveryReport) -> String {
    let mut out = format!(
        "restore of {}: {} from backup {} ({} records) in {}\n",
        report.table,
        recovery_name(report.outcome),
        or_dash(report.backup_id.as_deref()),
        report.records,
        dur(report.duration),
    );
    if let Some(quarantined) = &report.quarantined {
        let _ = writeln!(out, "previous file moved to {}", quarantined.display());
    }
    for r in &report.rejected {
        let _ = writeln!(out, "rejected backup {}: {}", r.id, r.reason);
    }
    if let Some(error) = &report.error {
        let _ = writeln!(out, "error: {error}");
    }
    if report.data_lost {
        out.push_str("WARNING: the table's data was lost; it serves an empty table (degraded)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use compaction::recovery::RecoveryOutcome;
    use compaction::{BackupState, HealthStatus, TableOutcome};
    use serde::Serialize;
    use serde_json::Value;

    use super::{
        bytes, dur, outcome_name, pacing, recovery_name, render_history, saved, state_name, when,
    };

    /// `value`'s JSON, or the `key` field of it.
    fn json_name<T: Serialize>(value: &T, key: Option<&str>) -> Value {
        let json = serde_json::to_value(value).unwrap();
        key.map_or(json.clone(), |k| json[k].clone())
    }

    /// The text names the same values the JSON does.
    #[test]
    fn names_are_the_json_ones() {
        use HealthStatus::*;
        for s in [
            Ok,
            Compacting,
            Unavailable,
            Degraded,
            Corrupted,
            Lost,
            Closed,
        ] {
            assert_eq!(json_name(&s, None), s.name());
        }
        for o in [
            compaction::ScrubOutcome::Clean,
            compaction::ScrubOutcome::Corrupted,
            compaction::ScrubOutcome::Skipped,
            compaction::ScrubOutcome::Failed,
        ] {
            assert_eq!(json_name(&o, None), o.name());
        }
        for o in [
            RecoveryOutcome::Restored,
            RecoveryOutcome::Degraded,
            RecoveryOutcome::Failed,
        ] {
            assert_eq!(json_name(&o, None), recovery_name(o));
        }
        for o in [
            TableOutcome::Compacted,
            TableOutcome::Skipped("r".into()),
            TableOutcome::Failed("r".into()),
        ] {
            let (name, reason) = outcome_name(&o);
            assert_eq!(json_name(&o, Some("status")), name);
            assert_eq!(json_name(&o, Some("reason")).as_str(), reason);
        }
        for s in [
            BackupState::Verified,
            BackupState::Unchecked,
            BackupState::Corrupt("d".into()),
        ] {
            let (name, detail) = state_name(&s);
            assert_eq!(json_name(&s, Some("state")), name);
            assert_eq!(json_name(&s, Some("detail")).as_str(), detail);
        }
    }

    #[test]
    fn figures_are_rounded_for_reading() {
        assert_eq!(dur(Duration::from_micros(56_700)), "56ms");
        assert_eq!(dur(Duration::from_millis(1234)), "1.234s");
        assert_eq!(dur(Duration::from_millis(61_500)), "1m 1s");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        let at = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        assert_eq!(when(Some(at)), "2025-11-24T16:00:00Z");
        assert_eq!(when(None), "-");
    }

    /// `history` sizes use the unit that fits, and a run whose files grew says so instead of
    /// printing a negative saving.
    #[test]
    fn history_savings_use_a_fitting_unit_and_say_when_files_grew() {
        use compaction::{CompactionRun, TableResult};

        assert_eq!(saved(0), "0 B");
        assert_eq!(saved(765_656 * 1024), "747.7 MiB");
        assert_eq!(saved(3 << 30), "3.0 GiB");
        assert_eq!(saved(-4096), "grew by 4.0 KiB");
        assert_eq!(saved(i64::MIN), "grew by 8589934592.0 GiB");
        let result = |before: u64, after: u64| TableResult {
            table: "task_queue".into(),
            outcome: TableOutcome::Compacted,
            duration: Duration::from_millis(5),
            bytes_before: before,
            bytes_after: after,
            fragmentation_before: 0.5,
            retried: false,
            max_pause: Duration::ZERO,
        };
        let run = |results| CompactionRun {
            started_at: UNIX_EPOCH + Duration::from_secs(1_764_000_000),
            duration: Duration::from_millis(10),
            trigger: "manual".into(),
            results,
        };
        let text = render_history(&[
            run(vec![result(800 << 20, 20 << 20), result(1 << 20, 1 << 20)]),
            run(vec![result(8192, 12288)]),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].ends_with("  780.0 MiB"), "{text}");
        assert!(lines[2].ends_with("  grew by 4.0 KiB"), "{text}");
    }

    #[test]
    fn the_pacing_line_says_the_pace_the_mode_and_what_was_moved() {
        let mut report = compaction::PacingReport {
            io_rate: store_core::IoRate::Auto,
            rate_bytes_per_s: Some(48 << 20),
            bytes_moved: 3 << 30,
            waited: Duration::from_millis(2500),
            baseline_commit: Some(Duration::from_micros(2100)),
            active: true,
        };
        assert_eq!(
            pacing(&report),
            "maintenance I/O: 48.0 MiB/s (auto, commit baseline 2.10 ms); 3.0 GiB moved, 2.500s waiting"
        );
        report.io_rate = store_core::IoRate::Unlimited;
        report.rate_bytes_per_s = None;
        report.baseline_commit = None;
        assert_eq!(
            pacing(&report),
            "maintenance I/O: unpaced (unlimited); 3.0 GiB moved, 2.500s waiting"
        );
    }
}
