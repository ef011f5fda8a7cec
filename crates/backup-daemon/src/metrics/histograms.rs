//! The latency histograms, one series per table: `commit_latency_seconds`, encoded at each
//! scrape from the histogram each owner keeps ([`CommitLatencyCollector`]), and
//! `compaction_pause_seconds` and `backup_duration_seconds`, `prometheus-client` histograms
//! the [`Tracker`](super::Tracker) feeds from the "backups" topic ([`TableHistograms`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use compaction::Maintainer;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the compaction pause buckets, seconds: the final pause of an online
/// compaction is a few milliseconds; an in-place one, or a pause over its limit, seconds.
const PAUSE_BOUNDS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Upper bounds of the backup duration buckets, seconds: from a small table (a tenth of a
/// second) to ten minutes for one of gigabytes at a paced rate.
const BACKUP_BOUNDS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// The one label of the per-table histograms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct TableLabel {
    /// The table's name.
    pub(super) table: String,
}

/// A family of histograms, one per table, all with the same bounds.
type PerTable = Family<TableLabel, Histogram, fn() -> Histogram>;

/// The histograms fed by the tracker: its events carry each compaction's longest pause and
/// each backup's duration.
#[derive(Debug, Clone)]
pub(super) struct TableHistograms {
    /// The longest pause of each compaction that compacted the table.
    compaction_pause: PerTable,
    /// The duration of each successful backup of the table.
    backup_duration: PerTable,
}

impl TableHistograms {
    /// Empty histograms with a series for each of `tables` already (a count of 0 from the
    /// first scrape on, so that a rate over the first observation is right).
    pub(super) fn new<'a>(tables: impl IntoIterator<Item = &'a str>) -> TableHistograms {
        let histograms = TableHistograms {
            compaction_pause: Family::new_with_constructor(|| Histogram::new(PAUSE_BOUNDS)),
            backup_duration: Family::new_with_constructor(|| Histogram::new(BACKUP_BOUNDS)),
        };
        for table in tables {
            let label = TableLabel {
                table: table.to_string(),
            };
            drop(histograms.compaction_pause.get_or_create(&label));
            drop(histograms.backup_duration.get_or_create(&label));
        }
        histograms
    }

    /// Count a compaction of `table` whose longest pause was `pause`.
    pub(super) fn observe_pause(&self, table: &str, pause: Duration) {
        Self::observe(&self.compaction_pause, table, pause);
    }

    /// Count a backup of `table` that took `duration`.
    pub(super) fn observe_backup(&self, table: &str, duration: Duration) {
        Self::observe(&self.backup_duration, table, duration);
    }

    fn observe(family: &PerTable, table: &str, value: Duration) {
        let label = TableLabel {
            table: table.to_string(),
        };
        family.get_or_create(&label).observe(value.as_secs_f64());
    }

    /// Add both families to `registry` (they stay shared with the tracker that feeds them).
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "compaction_pause_seconds",
            "Longest pause of the table (writes held) in each compaction that compacted it.",
            self.compaction_pause.clone(),
        );
        registry.register(
            "backup_duration_seconds",
            "Duration of each successful backup of the table (copy, check and hash).",
            self.backup_duration.clone(),
        );
    }
}

/// Reads each owner's commit-latency histogram at encode time.
#[derive(Debug)]
pub(super) struct CommitLatencyCollector {
    pub(super) maintainer: Arc<Maintainer>,
}

impl Collector for CommitLatencyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let mut family = encoder.encode_descriptor(
            "commit_latency_seconds",
            "Latency of the table's durable group commits (one per group of writes), seconds.",
            None,
            MetricType::Histogram,
        )?;
        for owner in self.maintainer.stores().owners() {
            let snapshot = owner.shared().commit_latency();
            // Per-bucket counts, not cumulative (the encoder adds them up), the last one
            // above every bound: its `le` is `+Inf`.
            let buckets: Vec<(f64, u64)> = snapshot
                .buckets()
                .map(|(bound, n)| (bound.map_or(f64::INFINITY, |b| b.as_secs_f64()), n))
                .collect();
            family
                .encode_family(&[("table", owner.table())])?
                .encode_histogram::<NoLabelSet>(
                    snapshot.sum.as_secs_f64(),
                    snapshot.count(),
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }
}
