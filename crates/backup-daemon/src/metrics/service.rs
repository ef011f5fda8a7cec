//! The daemon-wide families, read at each scrape: [`ServiceCollector`] (configuration,
//! scrubs, quarantine, events, the maintenance I/O pacer), [`RemoteCollector`] (off-site
//! backups and log shipping, with `[remote]`) and [`NotifyCollector`] (the webhook notifier,
//! with `[notify]`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use compaction::Maintainer;
use compaction::remote::Offsite;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::tracker::Tracker;
use super::{counter, gauge, gauges, seconds_since_epoch};
use crate::notify::NotifyStats;

/// Reads the daemon-wide families at encode time.
#[derive(Debug)]
pub(super) struct ServiceCollector {
    pub(super) maintainer: Arc<Maintainer>,
    pub(super) tracker: Arc<Tracker>,
}

impl Collector for ServiceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let e = &mut encoder;
        let maintainer = &self.maintainer;
        let config = maintainer.config();
        gauge(
            e,
            "compaction_interval_seconds",
            "Time between scheduled compaction runs ([compaction] interval).",
            config.compaction.interval.as_secs_f64(),
        )?;
        gauge(
            e,
            "compaction_threshold_ratio",
            "Fragmentation under which a table is not compacted ([compaction] threshold).",
            config.compaction.threshold,
        )?;
        gauge(
            e,
            "backup_interval_seconds",
            "Time between scheduled backups ([backup] interval).",
            config.backup.interval.as_secs_f64(),
        )?;
        gauge(
            e,
            "start_time_seconds",
            "When the daemon started, Unix seconds.",
            seconds_since_epoch(self.tracker.started()),
        )?;
        gauge(
            e,
            "scrub_running",
            "1 while a scrub runs.",
            u64::from(maintainer.scrub_progress().is_some()),
        )?;
        counter(
            e,
            "scrub_read_bytes",
            "Bytes of table files read by scrubs since the daemon started.",
            maintainer.scrub_bytes_read(),
        )?;
        counter(
            e,
            "scrub_wait_seconds",
            "Time scrubs waited for their pace (the maintenance I/O pace, then [scrub] max_rate) since the daemon started.",
            maintainer.scrub_waited().as_secs_f64(),
        )?;
        let quarantine = maintainer.quarantine().unwrap_or_default();
        gauge(
            e,
            "quarantine_bytes",
            "Bytes of replaced table files kept in quarantine.",
            quarantine.iter().map(|f| f.bytes).sum::<u64>(),
        )?;
        gauge(
            e,
            "quarantine_files",
            "Replaced table files kept in quarantine.",
            quarantine.len() as u64,
        )?;
        counter(
            e,
            "quarantine_pruned",
            "Quarantined files pruned by age or size since the daemon started.",
            maintainer.quarantine_pruned(),
        )?;
        counter(
            e,
            "events_dropped",
            "Events dropped because a subscriber's queue was full.",
            maintainer.events().dropped(),
        )?;
        let pacing = maintainer.stores().pacer().stats();
        gauge(
            e,
            "maintenance_io_rate_bytes_per_second",
            "The pace of maintenance I/O now (+Inf when unpaced).",
            pacing.rate_bytes_per_s.map_or(f64::INFINITY, |r| r as f64),
        )?;
        counter(
            e,
            "maintenance_io_bytes",
            "Bytes maintenance jobs (compaction copies, backups, verification) moved.",
            pacing.bytes_moved,
        )?;
        counter(
            e,
            "maintenance_io_wait_seconds",
            "Time maintenance jobs spent waiting for their I/O pace.",
            pacing.waited.as_secs_f64(),
        )?;
        gauge(
            e,
            "maintenance_io_active",
            "1 while a maintenance job moves bytes (within the last second).",
            u64::from(pacing.active),
        )
    }
}

/// The off-site families: per-table objects and bytes in the bucket (as of the last upload
/// or listing), uploads and failures since start, and log shipping.
#[derive(Debug)]
pub(super) struct RemoteCollector {
    pub(super) offsite: Arc<Offsite>,
}

impl Collector for RemoteCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let e = &mut encoder;
        let health = self.offsite.health();
        let tables = &health.tables;
        gauges(
            e,
            "remote_backups",
            "Complete off-site backups of the table (with their manifest).",
            tables
                .iter()
                .map(|t| ([("table", t.table.as_str())], t.backups)),
        )?;
        gauges(
            e,
            "remote_objects",
            "Objects under the table's prefix in the bucket.",
            tables
                .iter()
                .map(|t| ([("table", t.table.as_str())], t.objects)),
        )?;
        gauges(
            e,
            "remote_bytes",
            "Bytes of the table's objects in the bucket.",
            tables
                .iter()
                .map(|t| ([("table", t.table.as_str())], t.bytes)),
        )?;
        counter(
            e,
            "uploads",
            "Backups uploaded off-site since the daemon started.",
            health.uploads,
        )?;
        counter(
            e,
            "upload_failures",
            "Off-site uploads that failed since the daemon started.",
            health.upload_failures,
        )?;
        gauge(
            e,
            "last_upload_bytes",
            "Size in the bucket of the last backup uploaded.",
            health.last_upload_bytes,
        )?;
        gauges(
            e,
            "log_shipped_position",
            "Last change-log group of the table in the bucket.",
            health
                .logs
                .iter()
                .map(|l| ([("table", l.table.as_str())], l.position)),
        )?;
        let now = SystemTime::now();
        gauges(
            e,
            "log_shipped_age_seconds",
            "Seconds since the bucket last held every acknowledged write of the table (the recovery point).",
            health.logs.iter().filter_map(|l| {
                let age = now.duration_since(l.current_at?).ok()?;
                Some(([("table", l.table.as_str())], age.as_secs_f64()))
            }),
        )?;
        counter(
            e,
            "log_ship_failures",
            "Change-log shipments that failed since the daemon started.",
            health.ship_failures,
        )
    }
}

/// The webhook notifier's counters.
#[derive(Debug)]
pub(super) struct NotifyCollector {
    pub(super) stats: Arc<NotifyStats>,
}

impl Collector for NotifyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let e = &mut encoder;
        let stats = &self.stats;
        counter(
            e,
            "notify_sent",
            "Webhook notifications the receiver accepted since the daemon started.",
            stats.sent.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "notify_retries",
            "Webhook tries that failed and were tried again since the daemon started.",
            stats.retries.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "notify_failures",
            "Webhook notifications given up after their last try since the daemon started.",
            stats.failures.load(Ordering::Relaxed),
        )
    }
}
