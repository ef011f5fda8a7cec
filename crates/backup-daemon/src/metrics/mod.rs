//! `GET /metrics`: the Prometheus text exposition. Table sizes and fragmentation come from
//! what each owner publishes (no round trip); the last compaction and backup of each table
//! come from a [`Tracker`] fed by the "backups" topic and seeded from the compaction history
//! and the backups on disk at start. The tracker takes in the events queued for it before each
//! exposition, so a scrape after an operation always shows it.

mod tracker;

use std::fmt::Write;
use std::time::SystemTime;

use compaction::Maintainer;
use compaction::remote::{Offsite, RemoteHealth, RemoteTableStats};
use store_owners::TableStatus;

use crate::notify::NotifyStats;

pub use self::tracker::Tracker;
use self::tracker::{Last, Track};

/// Prefix of every metric name.
const PREFIX: &str = "agentcom_store";

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
    name: String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
        let name = format!("{PREFIX}_{name}");
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    /// The family's one sample, without labels.
    fn value(self, value: f64) {
        let _ = writeln!(self.out, "{} {}", self.name, number(value));
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let _ = writeln!(
            self.out,
            "{}{{{}}} {}",
            self.name,
            labels.join(","),
            number(value)
        );
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn seconds_since_epoch(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The exposition text.
pub fn render(
    maintainer: &Maintainer,
    offsite: Option<&Offsite>,
    notify: Option<&NotifyStats>,
    tracker: &Tracker,
) -> String {
    tracker.catch_up();
    let owners = maintainer.stores().owners();
    let tables: Vec<(&'static str, store_core::TableMetrics, TableStatus)> = owners
        .iter()
        .map(|o| (o.table(), o.shared().metrics(), o.shared().status()))
        .collect();
    let tracks = tracker.lock().clone();
    let mut out = String::new();

    type Get = fn(&store_core::TableMetrics) -> f64;
    let gauges: [(&str, &str, Get); 5] = [
        ("table_file_bytes", "Size of the table file on disk.", |m| {
            m.file_bytes as f64
        }),
        ("table_records", "Live records in the table.", |m| {
            m.live_records as f64
        }),
        (
            "table_live_bytes",
            "Key plus value bytes of the live records.",
            |m| m.live_bytes as f64,
        ),
        (
            "table_reclaimable_bytes",
            "Estimated bytes a compaction would give back.",
            |m| m.reclaimable_bytes as f64,
        ),
        (
            "table_fragmentation_ratio",
            "Reclaimable bytes over file bytes, 0 to 1.",
            |m| m.fragmentation_ratio,
        ),
    ];
    for (name, help, get) in gauges {
        let mut family = Family::new(&mut out, name, "gauge", help);
        for (table, metrics, _) in &tables {
            family.sample(&[("table", table)], get(metrics));
        }
    }
    let mut family = Family::new(
        &mut out,
        "table_state",
        "gauge",
        "1 for the table's current state.",
    );
    for (table, _, status) in &tables {
        family.sample(&[("table", table), ("state", status.name())], 1.0);
    }

    type Pick = fn(&Track) -> Option<&Last>;
    let kinds: [(&str, &str, Pick); 4] = [
        ("compaction", "compaction", |t| t.compaction.as_ref()),
        ("backup", "backup", |t| t.backup.as_ref()),
        ("restore", "restore", |t| t.restore.as_ref()),
        ("upload", "off-site upload", |t| t.upload.as_ref()),
    ];
    for (kind, what, pick) in kinds {
        let lasts: Vec<(&str, &Last)> = tables
            .iter()
            .filter_map(|(t, _, _)| tracks.get(*t).and_then(pick).map(|l| (*t, l)))
            .collect();
        let help = format!("End of the last {what} of the table, Unix seconds.");
        let mut family = Family::new(
            &mut out,
            &format!("last_{kind}_timestamp_seconds"),
            "gauge",
            &help,
        );
        for (table, last) in &lasts {
            family.sample(&[("table", table)], seconds_since_epoch(last.at));
        }
        let help = format!("1 for the result of the last {what} of the table.");
        let mut family = Family::new(&mut out, &format!("last_{kind}_result"), "gauge", &help);
        for (table, last) in &lasts {
            family.sample(&[("table", table), ("result", last.result)], 1.0);
        }
        let help = format!("1 when the last {what} of the table succeeded, 0 when it failed.");
        let mut family = Family::new(&mut out, &format!("last_{kind}_success"), "gauge", &help);
        for (table, last) in &lasts {
            let failed = matches!(last.result, "failed" | "degraded");
            family.sample(&[("table", table)], if failed { 0.0 } else { 1.0 });
        }
        let help = format!("Duration of the last {what} of the table, seconds.");
        let mut family = Family::new(
            &mut out,
            &format!("last_{kind}_duration_seconds"),
            "gauge",
            &help,
        );
        for (table, last) in &lasts {
            if let Some(d) = last.duration {
                family.sample(&[("table", table)], d.as_secs_f64());
            }
        }
    }
    let logs: Vec<_> = owners
        .iter()
        .filter_map(|o| o.shared().log().map(|l| (o.table(), l)))
        .collect();
    let mut family = Family::new(
        &mut out,
        "changelog_disk_bytes",
        "gauge",
        "Bytes of the table's change-log segments (pruned after each backup).",
    );
    for (table, log) in &logs {
        family.sample(&[("table", table)], log.disk_bytes as f64);
    }
    let mut family = Family::new(
        &mut out,
        "changelog_head",
        "gauge",
        "Sequence number of the last write group appended to the table's change log.",
    );
    for (table, log) in &logs {
        family.sample(&[("table", table)], log.head as f64);
    }
    let mut family = Family::new(
        &mut out,
        "changelog_durable_lag_groups",
        "gauge",
        "Write groups in the change log not yet durable in the table file (replayed at open).",
    );
    for (table, log) in &logs {
        family.sample(
            &[("table", table)],
            log.head.saturating_sub(log.durable_position) as f64,
        );
    }
    let mut family = Family::new(
        &mut out,
        "changelog_unrecovered_groups",
        "gauge",
        "Write groups the last replay could not recover (damaged or missing log); 0 when none.",
    );
    for (table, log) in &logs {
        let lost = log
            .unrecovered
            .as_ref()
            .map_or(0, |g| g.through + 1 - g.from);
        family.sample(&[("table", table)], lost as f64);
    }
    let mut family = Family::new(
        &mut out,
        "table_cache_bytes",
        "gauge",
        "The table's redb page cache, its share of the [tables] memory budget.",
    );
    for owner in &owners {
        family.sample(
            &[("table", owner.table())],
            owner.shared().cache_bytes() as f64,
        );
    }
    let mut family = Family::new(
        &mut out,
        "table_reopens_total",
        "counter",
        "Times the table file was closed and reopened after an I/O error.",
    );
    for owner in &owners {
        family.sample(&[("table", owner.table())], owner.shared().reopens() as f64);
    }
    let mut family = Family::new(
        &mut out,
        "compaction_consecutive_failures",
        "gauge",
        "Compactions of the table that failed since its last successful one.",
    );
    for (table, _, _) in &tables {
        let n_failures = tracks
            .get(*table)
            .map_or(0, |t| t.compaction_failures_in_a_row);
        family.sample(&[("table", table)], n_failures as f64);
    }
    let mut family = Family::new(
        &mut out,
        "last_scrub_timestamp_seconds",
        "gauge",
        "End of the table's last scrub (every page checksum verified in the background).",
    );
    let scrubs: Vec<_> = owners
        .iter()
        .filter_map(|o| maintainer.last_scrub(o.table()))
        .collect();
    for scrub in &scrubs {
        family.sample(
            &[("table", &scrub.table)],
            seconds_since_epoch(scrub.finished_at),
        );
    }
    let mut family = Family::new(
        &mut out,
        "last_scrub_result",
        "gauge",
        "How the table's last scrub ended (clean, corrupted, skipped, failed): 1 on that result.",
    );
    for scrub in &scrubs {
        family.sample(
            &[("table", &scrub.table), ("result", scrub.outcome.name())],
            1.0,
        );
    }
    let progress = maintainer.scrub_progress();
    let mut family = Family::new(
        &mut out,
        "scrub_progress_ratio",
        "gauge",
        "Share of the table file read by the scrub in progress.",
    );
    if let Some(p) = &progress {
        let ratio = if p.file_bytes == 0 {
            0.0
        } else {
            (p.bytes_read as f64 / p.file_bytes as f64).min(1.0)
        };
        family.sample(&[("table", &p.table)], ratio);
    }
    let quarantine = maintainer.quarantine().unwrap_or_default();
    let config = maintainer.config();
    let pacing = maintainer.stores().pacer().stats();
    let gauges_and_counters: [(&str, &str, &str, f64); 15] = [
        (
            "compaction_interval_seconds",
            "gauge",
            "Time between scheduled compaction runs ([compaction] interval).",
            config.compaction.interval.as_secs_f64(),
        ),
        (
            "compaction_threshold_ratio",
            "gauge",
            "Fragmentation under which a table is not compacted ([compaction] threshold).",
            config.compaction.threshold,
        ),
        (
            "backup_interval_seconds",
            "gauge",
            "Time between scheduled backups ([backup] interval).",
            config.backup.interval.as_secs_f64(),
        ),
        (
            "start_time_seconds",
            "gauge",
            "When the daemon started, Unix seconds.",
            seconds_since_epoch(tracker.started()),
        ),
        (
            "scrub_running",
            "gauge",
            "1 while a scrub runs.",
            if progress.is_some() { 1.0 } else { 0.0 },
        ),
        (
            "scrub_read_bytes_total",
            "counter",
            "Bytes of table files read by scrubs since the daemon started.",
            maintainer.scrub_bytes_read() as f64,
        ),
        (
            "scrub_wait_seconds_total",
            "counter",
            "Time scrubs waited for their pace (the maintenance I/O pace, then [scrub] max_rate) since the daemon started.",
            maintainer.scrub_waited().as_secs_f64(),
        ),
        (
            "quarantine_bytes",
            "gauge",
            "Bytes of replaced table files kept in quarantine.",
            quarantine.iter().map(|f| f.bytes).sum::<u64>() as f64,
        ),
        (
            "quarantine_files",
            "gauge",
            "Replaced table files kept in quarantine.",
            quarantine.len() as f64,
        ),
        (
            "quarantine_pruned_total",
            "counter",
            "Quarantined files pruned by age or size since the daemon started.",
            maintainer.quarantine_pruned() as f64,
        ),
        (
            "events_dropped_total",
            "counter",
            "Events dropped because a subscriber's queue was full.",
            maintainer.events().dropped() as f64,
        ),
        (
            "maintenance_io_rate_bytes_per_second",
            "gauge",
            "The pace of maintenance I/O now (+Inf when unpaced).",
            pacing.rate_bytes_per_s.map_or(f64::INFINITY, |r| r as f64),
        ),
        (
            "maintenance_io_bytes_total",
            "counter",
            "Bytes maintenance jobs (compaction copies, backups, verification) moved.",
            pacing.bytes_moved as f64,
        ),
        (
            "maintenance_io_wait_seconds_total",
            "counter",
            "Time maintenance jobs spent waiting for their I/O pace.",
            pacing.waited.as_secs_f64(),
        ),
        (
            "maintenance_io_active",
            "gauge",
            "1 while a maintenance job moves bytes (within the last second).",
            if pacing.active { 1.0 } else { 0.0 },
        ),
    ];
    for (name, kind, help, value) in gauges_and_counters {
        Family::new(&mut out, name, kind, help).value(value);
    }
    if let Some(offsite) = offsite {
        render_remote(&mut out, &offsite.health());
    }
    if let Some(notify) = notify {
        render_notify(&mut out, notify);
    }
    out
}

/// The webhook notifier's counters (with `[notify]` only).
fn render_notify(out: &mut String, stats: &NotifyStats) {
    let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    let counters = [
        (
            "notify_sent_total",
            "Webhook notifications the receiver accepted since the daemon started.",
            load(&stats.sent),
        ),
        (
            "notify_retries_total",
            "Webhook tries that failed and were tried again since the daemon started.",
            load(&stats.retries),
        ),
        (
            "notify_failures_total",
            "Webhook notifications given up after their last try since the daemon started.",
            load(&stats.failures),
        ),
    ];
    for (name, help, value) in counters {
        Family::new(out, name, "counter", help).value(value as f64);
    }
}

/// The off-site families: per-table objects and bytes in the bucket (as of the last upload
/// or listing), uploads and failures since start.
fn render_remote(out: &mut String, health: &RemoteHealth) {
    type Get = fn(&RemoteTableStats) -> f64;
    let per_table: [(&str, &str, Get); 3] = [
        (
            "remote_backups",
            "Complete off-site backups of the table (with their manifest).",
            |t| t.backups as f64,
        ),
        (
            "remote_objects",
            "Objects under the table's prefix in the bucket.",
            |t| t.objects as f64,
        ),
        (
            "remote_bytes",
            "Bytes of the table's objects in the bucket.",
            |t| t.bytes as f64,
        ),
    ];
    for (name, help, get) in per_table {
        let mut family = Family::new(out, name, "gauge", help);
        for t in &health.tables {
            family.sample(&[("table", &t.table)], get(t));
        }
    }
    let totals: [(&str, &str, &str, f64); 3] = [
        (
            "uploads_total",
            "counter",
            "Backups uploaded off-site since the daemon started.",
            health.uploads as f64,
        ),
        (
            "upload_failures_total",
            "counter",
            "Off-site uploads that failed since the daemon started.",
            health.upload_failures as f64,
        ),
        (
            "last_upload_bytes",
            "gauge",
            "Size in the bucket of the last backup uploaded.",
            health.last_upload_bytes as f64,
        ),
    ];
    for (name, kind, help, value) in totals {
        Family::new(out, name, kind, help).value(value);
    }
    let mut family = Family::new(
        out,
        "log_shipped_position",
        "gauge",
        "Last change-log group of the table in the bucket.",
    );
    for log in &health.logs {
        family.sample(&[("table", &log.table)], log.position as f64);
    }
    let mut family = Family::new(
        out,
        "log_shipped_age_seconds",
        "gauge",
        "Seconds since the bucket last held every acknowledged write of the table (the recovery point).",
    );
    let now = std::time::SystemTime::now();
    for log in &health.logs {
        if let Some(age) = log.current_at.and_then(|at| now.duration_since(at).ok()) {
            family.sample(&[("table", &log.table)], age.as_secs_f64());
        }
    }
    Family::new(
        out,
        "log_ship_failures_total",
        "counter",
        "Change-log shipments that failed since the daemon started.",
    )
    .value(health.ship_failures as f64);
}
