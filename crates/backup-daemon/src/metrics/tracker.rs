//! [`Tracker`]: the last compaction, backup, restore and upload of each table, and the
//! compaction failures in a row, fed by the "backups" topic and seeded from the compaction
//! history and the backups on disk at start; and the compaction pause and backup duration
//! histograms, fed by the same events (only those of this daemon's run: a histogram counts
//! from the start, as Prometheus expects of it).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use compaction::history::TableOutcome;
use compaction::{Envelope, Event, Maintainer};
use crossbeam_channel::Receiver;
use prometheus_client::registry::Registry;

use super::histograms::TableHistograms;

/// The last run of one kind (compaction or backup) on one table.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Last {
    /// When it ended (or, seeded from a backup manifest, when its snapshot was taken).
    pub(super) at: SystemTime,
    /// "compacted", "skipped", "failed", "ok".
    pub(super) result: &'static str,
    /// How long it took, when known.
    pub(super) duration: Option<Duration>,
}

/// What the tracker knows about one table.
#[derive(Debug, Clone, Default)]
pub(super) struct Track {
    pub(super) compaction: Option<Last>,
    pub(super) backup: Option<Last>,
    pub(super) restore: Option<Last>,
    pub(super) upload: Option<Last>,
    /// Compactions of the table that failed since its last successful one (a skipped run
    /// leaves the count as it is): what the "failed twice in a row" alert reads.
    pub(super) compaction_failures_in_a_row: u64,
}

/// The last compaction, backup and restore of each table.
#[derive(Debug)]
pub struct Tracker {
    /// Per table, what is known.
    tables: Mutex<BTreeMap<String, Track>>,
    /// The tracker's subscription to the "backups" topic; held while events are taken in, so
    /// that an event is either still queued or already recorded.
    events: Mutex<Receiver<Envelope>>,
    /// When the tracker, and so the admin API, started.
    started: SystemTime,
    /// Compaction pauses and backup durations since the start.
    histograms: TableHistograms,
}

impl Tracker {
    /// A tracker subscribed to the topic, seeded from the compaction history and the newest
    /// backups on disk.
    pub fn seeded(maintainer: &Maintainer) -> Tracker {
        let tracker = Tracker {
            tables: Mutex::new(BTreeMap::new()),
            events: Mutex::new(maintainer.events().subscribe()),
            started: SystemTime::now(),
            histograms: TableHistograms::new(
                maintainer.stores().owners().iter().map(|o| o.table()),
            ),
        };
        for run in maintainer.history() {
            tracker.record_compaction(&run);
        }
        let mut tables = tracker.lock();
        for owner in maintainer.stores().owners() {
            if let Some(manifest) = maintainer
                .last_backup(owner.table())
                .and_then(|b| b.manifest)
            {
                tables.entry(owner.table().to_string()).or_default().backup = Some(Last {
                    at: manifest.created_at,
                    result: "ok",
                    duration: None,
                });
            }
        }
        drop(tables);
        tracker
    }

    /// When the tracker started (with the admin API, at the daemon's start).
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// Add the histograms the tracker feeds to `registry`.
    pub(super) fn register_histograms(&self, registry: &mut Registry) {
        self.histograms.register(registry);
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Track>> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record_compaction(&self, run: &compaction::history::CompactionRun) {
        let ended = run.started_at + run.duration;
        let mut tables = self.lock();
        for r in &run.results {
            let result = match r.outcome {
                TableOutcome::Compacted => "compacted",
                TableOutcome::Skipped(_) => "skipped",
                TableOutcome::Failed(_) => "failed",
            };
            let track = tables.entry(r.table.clone()).or_default();
            match r.outcome {
                TableOutcome::Compacted => track.compaction_failures_in_a_row = 0,
                TableOutcome::Failed(_) => track.compaction_failures_in_a_row += 1,
                TableOutcome::Skipped(_) => {}
            }
            track.compaction = Some(Last {
                at: ended,
                result,
                duration: Some(r.duration),
            });
        }
    }

    /// Take in the events queued so far. Called before each exposition, and regularly so that
    /// the subscription queue never fills up between scrapes.
    pub fn catch_up(&self) {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        while let Ok(envelope) = events.try_recv() {
            self.record(&envelope.event);
        }
    }

    /// Take an event of the "backups" topic into account.
    fn record(&self, event: &Event) {
        match event {
            Event::CompactionComplete { run } => {
                for r in &run.results {
                    if matches!(r.outcome, TableOutcome::Compacted) {
                        self.histograms.observe_pause(&r.table, r.max_pause);
                    }
                }
                self.record_compaction(run);
            }
            Event::BackupComplete { run } => {
                for b in &run.backups {
                    self.histograms.observe_backup(&b.table, b.duration);
                }
                let ended = run.started_at + run.duration;
                let mut tables = self.lock();
                for b in &run.backups {
                    tables.entry(b.table.clone()).or_default().backup = Some(Last {
                        at: ended,
                        result: "ok",
                        duration: Some(b.duration),
                    });
                }
                for f in &run.failures {
                    tables.entry(f.table.clone()).or_default().backup = Some(Last {
                        at: ended,
                        result: "failed",
                        duration: None,
                    });
                }
            }
            Event::RecoveryComplete { report } | Event::RecoveryFailed { report } => {
                let result = match report.outcome {
                    compaction::recovery::RecoveryOutcome::Restored => "restored",
                    compaction::recovery::RecoveryOutcome::Degraded => "degraded",
                    compaction::recovery::RecoveryOutcome::Failed => "failed",
                };
                self.lock().entry(report.table.clone()).or_default().restore = Some(Last {
                    at: report.started_at + report.duration,
                    result,
                    duration: Some(report.duration),
                });
            }
            Event::UploadComplete { upload } => {
                self.lock().entry(upload.table.clone()).or_default().upload = Some(Last {
                    at: SystemTime::now(),
                    result: "ok",
                    duration: Some(upload.duration),
                });
            }
            Event::UploadFailed { failure } => {
                self.lock().entry(failure.table.clone()).or_default().upload = Some(Last {
                    at: SystemTime::now(),
                    result: "failed",
                    duration: None,
                });
            }
            Event::CompactionFailed { .. } | Event::BackupFailed { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use compaction::history::{CompactionRun, TableOutcome, TableResult};

    use super::Tracker;
    use crate::metrics::histograms::TableHistograms;

    fn run(outcome: TableOutcome) -> CompactionRun {
        CompactionRun {
            started_at: SystemTime::now(),
            duration: Duration::from_millis(5),
            trigger: "schedule".into(),
            results: vec![TableResult {
                table: "task_queue".into(),
                outcome,
                duration: Duration::from_millis(5),
                bytes_before: 0,
                bytes_after: 0,
                fragmentation_before: 0.5,
                retried: false,
                max_pause: Duration::ZERO,
            }],
        }
    }

    /// A tracker of the one table `task_queue`, fed by nothing yet; the sender keeps its
    /// event queue open.
    fn task_queue_tracker() -> (crossbeam_channel::Sender<compaction::Envelope>, Tracker) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let tracker = Tracker {
            tables: Default::default(),
            events: std::sync::Mutex::new(rx),
            started: SystemTime::now(),
            histograms: TableHistograms::new(["task_queue"]),
        };
        (tx, tracker)
    }

    /// What the "compaction failed twice in a row" alert reads: failures count up, a skipped
    /// run leaves the count, a compaction resets it.
    #[test]
    fn compaction_failures_in_a_row_count_up_and_reset_on_success() {
        let (_events, tracker) = task_queue_tracker();
        let in_a_row = || tracker.lock()["task_queue"].compaction_failures_in_a_row;
        tracker.record_compaction(&run(TableOutcome::Failed("disk".into())));
        assert_eq!(in_a_row(), 1);
        tracker.record_compaction(&run(TableOutcome::Skipped("under threshold".into())));
        tracker.record_compaction(&run(TableOutcome::Failed("disk".into())));
        assert_eq!(in_a_row(), 2);
        tracker.record_compaction(&run(TableOutcome::Compacted));
        assert_eq!(in_a_row(), 0);
    }

    /// A compaction event counts the longest pause of each table it compacted, and only those;
    /// the history the tracker is seeded from counts nothing (it is from before the start).
    #[test]
    fn a_compaction_event_counts_the_pauses_of_the_tables_it_compacted() {
        let (_events, tracker) = task_queue_tracker();
        let mut compacted = run(TableOutcome::Compacted);
        compacted.results[0].max_pause = Duration::from_millis(3);
        tracker.record_compaction(&compacted);
        let mut registry = prometheus_client::registry::Registry::default();
        tracker.register_histograms(&mut registry);
        let pauses = || {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            let sample = |name: &str| {
                let prefix = format!("compaction_pause_seconds_{name}{{table=\"task_queue\"}} ");
                let line = text.lines().find_map(|l| l.strip_prefix(&prefix));
                line.unwrap_or_else(|| panic!("{prefix} missing from\n{text}"))
                    .parse::<f64>()
                    .unwrap()
            };
            (sample("count"), sample("sum"))
        };
        assert_eq!(pauses(), (0.0, 0.0));
        tracker.record(&compaction::Event::CompactionComplete { run: compacted });
        tracker.record(&compaction::Event::CompactionComplete {
            run: run(TableOutcome::Skipped("under threshold".into())),
        });
        assert_eq!(pauses(), (1.0, 0.003));
    }
}
