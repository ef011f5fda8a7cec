//! Human-readable output of the verbs, rendered from the same JSON the admin API returns (so
//! that a verb prints the same thing through the daemon and directly).

use std::fmt::Write;

use serde_json::Value;

use crate::ops::Op;

/// The text a verb prints for `value`.
pub fn render(op: &Op, value: &Value) -> String {
    match op {
        Op::Status => render_status(value),
        Op::History => render_history(value),
        Op::Backups { .. } => render_backups(value),
        Op::Compact { .. } => render_compaction_run(value),
        Op::Backup { .. } => render_backup_run(value),
        Op::Restore { .. } => render_recovery(value),
    }
}

/// Whether the result reports failed tables (the verb then exits with 1).
pub fn has_failures(op: &Op, value: &Value) -> bool {
    match op {
        Op::Compact { .. } => items(value, "results")
            .iter()
            .any(|r| r.get("status").and_then(Value::as_str) == Some("failed")),
        Op::Backup { .. } => !items(value, "failures").is_empty(),
        Op::Restore { .. } => value.get("outcome").and_then(Value::as_str) != Some("restored"),
        Op::Backups { verify: true } => value
            .as_array()
            .is_some_and(|all| all.iter().any(|b| text(b, "state") == "corrupt")),
        Op::Status | Op::History | Op::Backups { verify: false } => false,
    }
}

fn items<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A field as text: strings as they are, numbers and booleans printed, absent as "-".
fn text(value: &Value, key: &str) -> String {
    match value.pointer(key).or_else(|| value.get(key)) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.3}"),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

/// A humantime duration field, rounded for reading (`1.234s`, `56ms`).
fn dur(value: &Value, key: &str) -> String {
    let raw = text(value, key);
    match humantime::parse_duration(&raw) {
        Ok(d) if d.as_secs() >= 60 => {
            humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
        }
        Ok(d) if d.as_millis() >= 1000 => format!("{:.3}s", d.as_secs_f64()),
        Ok(d) => format!("{}ms", d.as_millis()),
        Err(_) => raw,
    }
}

fn bytes(value: &Value, key: &str) -> String {
    match value
        .pointer(key)
        .or_else(|| value.get(key))
        .and_then(Value::as_u64)
    {
        Some(n) if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        Some(n) if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        Some(n) if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / (1u64 << 10) as f64),
        Some(n) => format!("{n} B"),
        None => "-".into(),
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

fn render_status(value: &Value) -> String {
    let rows: Vec<Vec<String>> = items(value, "tables")
        .iter()
        .map(|t| {
            let status = match text(t, "status_detail").as_str() {
                "-" => text(t, "status"),
                detail => format!("{} ({detail})", text(t, "status")),
            };
            vec![
                text(t, "table"),
                status,
                bytes(t, "file_bytes"),
                text(t, "records"),
                text(t, "fragmentation_ratio"),
                when(t, "last_compacted_at"),
                when(t, "/last_backup/manifest/created_at"),
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
        ],
        &rows,
    );
    if value.get("next_compaction").is_some_and(|v| !v.is_null()) {
        let _ = writeln!(out, "next compaction: {}", when(value, "next_compaction"));
    }
    out
}

/// A timestamp field, to the second.
fn when(value: &Value, key: &str) -> String {
    let raw = text(value, key);
    match humantime::parse_rfc3339_weak(&raw) {
        Ok(t) => humantime::format_rfc3339_seconds(t).to_string(),
        Err(_) => raw,
    }
}

fn render_compaction_run(run: &Value) -> String {
    let rows: Vec<Vec<String>> = items(run, "results")
        .iter()
        .map(|r| {
            let outcome = match text(r, "reason").as_str() {
                "-" => text(r, "status"),
                reason => format!("{} ({reason})", text(r, "status")),
            };
            vec![
                text(r, "table"),
                outcome,
                bytes(r, "bytes_before"),
                bytes(r, "bytes_after"),
                dur(r, "duration"),
            ]
        })
        .collect();
    let mut out = format!(
        "compaction ({}) started {}, took {}\n",
        text(run, "trigger"),
        when(run, "started_at"),
        dur(run, "duration")
    );
    out.push_str(&table(
        &["TABLE", "RESULT", "BEFORE", "AFTER", "TIME"],
        &rows,
    ));
    out
}

/// One line per run, oldest first (the details are in `--json`).
fn render_history(value: &Value) -> String {
    let runs = value.as_array().map(Vec::as_slice).unwrap_or(&[]);
    if runs.is_empty() {
        return "no compaction has run yet\n".into();
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            let count = |status: &str| {
                let n = items(run, "results")
                    .iter()
                    .filter(|r| text(r, "status") == status)
                    .count();
                n.to_string()
            };
            let saved: i64 = items(run, "results")
                .iter()
                .map(|r| {
                    let before = r.get("bytes_before").and_then(Value::as_i64).unwrap_or(0);
                    before
                        - r.get("bytes_after")
                            .and_then(Value::as_i64)
                            .unwrap_or(before)
                })
                .sum();
            vec![
                when(run, "started_at"),
                text(run, "trigger"),
                dur(run, "duration"),
                count("compacted"),
                count("skipped"),
                count("failed"),
                format!("{:.1} KiB", saved as f64 / 1024.0),
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

fn render_backup_run(run: &Value) -> String {
    let mut out = format!(
        "backup ({}) took {}\n",
        text(run, "trigger"),
        dur(run, "duration")
    );
    let rows: Vec<Vec<String>> = items(run, "backups")
        .iter()
        .map(|b| {
            vec![
                text(b, "table"),
                text(b, "id"),
                text(b, "records"),
                bytes(b, "bytes"),
                dur(b, "duration"),
            ]
        })
        .collect();
    out.push_str(&table(
        &["TABLE", "BACKUP", "RECORDS", "SIZE", "TIME"],
        &rows,
    ));
    for f in items(run, "failures") {
        let _ = writeln!(out, "FAILED {}: {}", text(f, "table"), text(f, "error"));
    }
    out
}

fn render_backups(value: &Value) -> String {
    let all = value.as_array().map(Vec::as_slice).unwrap_or(&[]);
    if all.is_empty() {
        return "no backups\n".into();
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|b| {
            let state = match text(b, "detail").as_str() {
                "-" => text(b, "state"),
                detail => format!("{} ({detail})", text(b, "state")),
            };
            vec![
                text(b, "table"),
                text(b, "id"),
                text(b, "/manifest/records"),
                bytes(b, "/manifest/bytes"),
                state,
            ]
        })
        .collect();
    table(&["TABLE", "BACKUP", "RECORDS", "SIZE", "STATE"], &rows)
}

fn render_recovery(report: &Value) -> String {
    let mut out = format!(
        "restore of {}: {} from backup {} ({} records) in {}\n",
        text(report, "table"),
        text(report, "outcome"),
        text(report, "backup_id"),
        text(report, "records"),
        dur(report, "duration"),
    );
    if report.get("quarantined").is_some_and(|q| !q.is_null()) {
        let _ = writeln!(
            out,
            "previous file moved to {}",
            text(report, "quarantined")
        );
    }
    for r in items(report, "rejected") {
        let _ = writeln!(
            out,
            "rejected backup {}: {}",
            text(r, "id"),
            text(r, "reason")
        );
    }
    if report.get("error").is_some_and(|e| !e.is_null()) {
        let _ = writeln!(out, "error: {}", text(report, "error"));
    }
    if report.get("data_lost").and_then(Value::as_bool) == Some(true) {
        out.push_str("WARNING: the table's data was lost; it serves an empty table (degraded)\n");
    }
    out
}
