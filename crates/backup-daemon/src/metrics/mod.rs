//! `GET /metrics`: the OpenMetrics text exposition, written by `prometheus-client` (the
//! Prometheus project's crate: label escaping, number formatting, `_total` and `_bucket`
//! suffixes and the closing `# EOF` are its job).
//!
//! Nothing is copied into gauges on a timer: each family is read from live state when a
//! scrape encodes it, by the `prometheus_client` collectors of this module's files.
//! `tables.rs`: one sample per table, from what each owner publishes (sizes, status, change
//! log) and from the [`Tracker`] (last compaction, backup, restore and upload, scrubs).
//! `service.rs`: the daemon-wide figures (configuration, scrubs, quarantine, events, the
//! maintenance I/O pacer), the off-site families and the webhook notifier's counters.
//! `histograms.rs`: the three latency histograms, per table: commit latency (counted by each
//! owner, `store_owners::CommitLatency`), compaction pause and backup duration (counted by
//! the tracker, as its events arrive).
//!
//! The last compaction and backup of each table come from the tracker, fed by the "backups"
//! topic and seeded from the compaction history and the backups on disk at start. The tracker
//! takes in the events queued for it before each exposition, so a scrape after an operation
//! always shows it.

mod histograms;
mod service;
mod tables;
mod tracker;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use compaction::Maintainer;
use compaction::remote::Offsite;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::notify::NotifyStats;

use self::tracker::Tracker;

/// Prefix of every metric name.
const PREFIX: &str = "agentcom_store";

/// The `Content-Type` of the exposition (Prometheus asks for it and parses it).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics of a running daemon: the registry a scrape encodes, and the tracker that feeds
/// part of it.
#[derive(Debug)]
pub struct Metrics {
    /// Every family, under [`PREFIX`].
    registry: Registry,
    /// The last runs per table and the pause and backup histograms; shared with the
    /// collectors that read it.
    tracker: Arc<Tracker>,
}

impl Metrics {
    /// The registry of a daemon over `maintainer`, with the off-site families when
    /// `offsite` is set and the notifier's when `notify` is. Subscribes the tracker to the
    /// "backups" topic now: call before any operation can run.
    pub fn new(
        maintainer: Arc<Maintainer>,
        offsite: Option<Arc<Offsite>>,
        notify: Option<Arc<NotifyStats>>,
    ) -> Metrics {
        let tracker = Arc::new(Tracker::seeded(&maintainer));
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register_collector(Box::new(tables::TableCollector {
            maintainer: maintainer.clone(),
            tracker: tracker.clone(),
        }));
        registry.register_collector(Box::new(service::ServiceCollector {
            maintainer: maintainer.clone(),
            tracker: tracker.clone(),
        }));
        registry.register_collector(Box::new(histograms::CommitLatencyCollector { maintainer }));
        tracker.register_histograms(&mut registry);
        if let Some(offsite) = offsite {
            registry.register_collector(Box::new(service::RemoteCollector { offsite }));
        }
        if let Some(stats) = notify {
            registry.register_collector(Box::new(service::NotifyCollector { stats }));
        }
        Metrics { registry, tracker }
    }

    /// Take in the events queued for the tracker (called regularly, so that its
    /// subscription queue never fills up between scrapes).
    pub fn catch_up(&self) {
        self.tracker.catch_up();
    }

    /// The exposition text, ending with `# EOF`. Fails only if a collector does (none of
    /// ours fails on its own: a `String` takes every write).
    pub fn render(&self) -> Result<String, fmt::Error> {
        self.tracker.catch_up();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// A gauge family: its descriptor, then one sample per label set.
fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        family.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

/// A counter family: its descriptor, then one sample per label set. `name` is without
/// `_total`, which the encoder appends to each sample.
fn counters<L: EncodeLabelSet, V: EncodeCounterValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        family
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, V, u64>(&value, None)?;
    }
    Ok(())
}

/// A gauge without labels.
fn gauge<V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: V,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

/// A counter without labels. `name` is without `_total`, which the encoder appends to the
/// sample.
fn counter<V: EncodeCounterValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: V,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, V, u64>(&value, None)
}

/// `t` in seconds since the Unix epoch (0 before it).
fn seconds_since_epoch(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
