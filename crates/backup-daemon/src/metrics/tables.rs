//! [`TableCollector`]: the families with one sample per table, read at each scrape from what
//! each owner publishes in its `Shared` state (no round trip), from the [`Tracker`]
//! (last runs of each kind) and from the maintainer (scrubs).

use std::fmt;
use std::sync::Arc;

use compaction::Maintainer;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use store_core::TableMetrics;
use store_owners::TableStatus;

use super::tracker::{Last, Track, Tracker};
use super::{counters, gauges, seconds_since_epoch};

/// Reads the per-table families at encode time.
#[derive(Debug)]
pub(super) struct TableCollector {
    pub(super) maintainer: Arc<Maintainer>,
    pub(super) tracker: Arc<Tracker>,
}

impl Collector for TableCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let owners = self.maintainer.stores().owners();
        let tables: Vec<(&'static str, TableMetrics, TableStatus)> = owners
            .iter()
            .map(|o| (o.table(), o.shared().metrics(), o.shared().status()))
            .collect();
        let e = &mut encoder;

        type Get = fn(&TableMetrics) -> u64;
        let sizes: [(&str, &str, Get); 4] = [
            ("table_file_bytes", "Size of the table file on disk.", |m| {
                m.file_bytes
            }),
            ("table_records", "Live records in the table.", |m| {
                m.live_records
            }),
            (
                "table_live_bytes",
                "Key plus value bytes of the live records.",
                |m| m.live_bytes,
            ),
            (
                "table_reclaimable_bytes",
                "Estimated bytes a compaction would give back.",
                |m| m.reclaimable_bytes,
            ),
        ];
        for (name, help, get) in sizes {
            let samples = tables.iter().map(|(t, m, _)| ([("table", *t)], get(m)));
            gauges(e, name, help, samples)?;
        }
        gauges(
            e,
            "table_fragmentation_ratio",
            "Reclaimable bytes over file bytes, 0 to 1.",
            tables
                .iter()
                .map(|(t, m, _)| ([("table", *t)], m.fragmentation_ratio)),
        )?;
        gauges(
            e,
            "table_state",
            "1 for the table's current state.",
            tables
                .iter()
                .map(|(t, _, s)| ([("table", *t), ("state", s.name())], 1u64)),
        )?;

        let names: Vec<&str> = tables.iter().map(|(t, _, _)| *t).collect();
        self.encode_last_runs(e, &names)?;

        let logs: Vec<_> = owners
            .iter()
            .filter_map(|o| o.shared().log().map(|l| (o.table(), l)))
            .collect();
        gauges(
            e,
            "changelog_disk_bytes",
            "Bytes of the table's change-log segments (pruned after each backup).",
            logs.iter().map(|(t, l)| ([("table", *t)], l.disk_bytes)),
        )?;
        gauges(
            e,
            "changelog_head",
            "Sequence number of the last write group appended to the table's change log.",
            logs.iter().map(|(t, l)| ([("table", *t)], l.head)),
        )?;
        gauges(
            e,
            "changelog_durable_lag_groups",
            "Write groups in the change log not yet durable in the table file (replayed at open).",
            logs.iter().map(|(t, l)| {
                let lag = l.head.saturating_sub(l.durable_position);
                ([("table", *t)], lag)
            }),
        )?;
        gauges(
            e,
            "changelog_unrecovered_groups",
            "Write groups the last replay could not recover (damaged or missing log); 0 when none.",
            logs.iter().map(|(t, l)| {
                let lost = l.unrecovered.as_ref().map_or(0, |g| g.through + 1 - g.from);
                ([("table", *t)], lost)
            }),
        )?;
        gauges(
            e,
            "table_cache_bytes",
            "The table's redb page cache, its share of the [tables] memory budget.",
            owners
                .iter()
                .map(|o| ([("table", o.table())], o.shared().cache_bytes())),
        )?;
        counters(
            e,
            "table_reopens",
            "Times the table file was closed and reopened after an I/O error.",
            owners
                .iter()
                .map(|o| ([("table", o.table())], o.shared().reopens())),
        )?;

        let scrubs: Vec<_> = owners
            .iter()
            .filter_map(|o| self.maintainer.last_scrub(o.table()))
            .collect();
        gauges(
            e,
            "last_scrub_timestamp_seconds",
            "End of the table's last scrub (every page checksum verified in the background).",
            scrubs.iter().map(|s| {
                let at = seconds_since_epoch(s.finished_at);
                ([("table", s.table.as_str())], at)
            }),
        )?;
        gauges(
            e,
            "last_scrub_result",
            "How the table's last scrub ended (clean, corrupted, skipped, failed): 1 on that result.",
            scrubs.iter().map(|s| {
                let labels = [("table", s.table.as_str()), ("result", s.outcome.name())];
                (labels, 1u64)
            }),
        )?;
        let progress = self.maintainer.scrub_progress();
        gauges(
            e,
            "scrub_progress_ratio",
            "Share of the table file read by the scrub in progress.",
            progress.iter().map(|p| {
                let ratio = if p.file_bytes == 0 {
                    0.0
                } else {
                    (p.bytes_read as f64 / p.file_bytes as f64).min(1.0)
                };
                ([("table", p.table.as_str())], ratio)
            }),
        )
    }
}

impl TableCollector {
    /// The last compaction, backup, restore and upload of each table in `tables` (those
    /// the tracker knows of), and the compaction failures in a row.
    fn encode_last_runs(&self, e: &mut DescriptorEncoder<'_>, tables: &[&str]) -> fmt::Result {
        let tracks = self.tracker.lock().clone();
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
                .filter_map(|t| tracks.get(*t).and_then(pick).map(|l| (*t, l)))
                .collect();
            gauges(
                e,
                &format!("last_{kind}_timestamp_seconds"),
                &format!("End of the last {what} of the table, Unix seconds."),
                lasts
                    .iter()
                    .map(|(t, l)| ([("table", *t)], seconds_since_epoch(l.at))),
            )?;
            gauges(
                e,
                &format!("last_{kind}_result"),
                &format!("1 for the result of the last {what} of the table."),
                lasts
                    .iter()
                    .map(|(t, l)| ([("table", *t), ("result", l.result)], 1u64)),
            )?;
            gauges(
                e,
                &format!("last_{kind}_success"),
                &format!("1 when the last {what} of the table succeeded, 0 when it failed."),
                lasts.iter().map(|(t, l)| {
                    let failed = matches!(l.result, "failed" | "degraded");
                    ([("table", *t)], u64::from(!failed))
                }),
            )?;
            gauges(
                e,
                &format!("last_{kind}_duration_seconds"),
                &format!("Duration of the last {what} of the table, seconds."),
                lasts
                    .iter()
                    .filter_map(|(t, l)| Some(([("table", *t)], l.duration?.as_secs_f64()))),
            )?;
        }
        gauges(
            e,
            "compaction_consecutive_failures",
            "Compactions of the table that failed since its last successful one.",
            tables.iter().map(|t| {
                let n_failures = tracks.get(*t).map_or(0, |t| t.compaction_failures_in_a_row);
                ([("table", *t)], n_failures)
            }),
        )
    }
}
