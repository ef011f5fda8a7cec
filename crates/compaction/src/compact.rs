//! Compaction runs over the nine tables: [`Maintainer::compact_all`] and
//! [`Maintainer::compact_one`].
//!
//! A run holds the maintenance lock for its whole length, so it never overlaps a backup, a
//! restore or another run, and it compacts tables one after another, never two at once. For
//! each table:
//!
//! 1. A table that is not serving (unavailable, corrupted, closed, already compacting) is
//!    skipped with its status as the reason.
//! 2. Unless the run is forced, a table whose fragmentation ratio (from the counters its owner
//!    publishes, no round trip) is under [`crate::CompactionConfig::threshold`] is skipped,
//!    with the measured ratio and the threshold as the reason.
//! 3. The table is compacted through its owner with the configured strategy: online (the
//!    table keeps serving; the final pause is bounded by `pause_limit`) or in place.
//! 4. A failure is retried once; a second failure is reported and the table is left for the
//!    next run. Corruption and a stopped owner are not retried.
//!
//! Every run publishes `compaction_complete`, plus `compaction_failed` with the failures if
//! any table failed, and is recorded in the history.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use store_owners::{MaintenanceError, OnlineConfig, OwnerHandle, TableStatus};

use crate::config::Strategy;
use crate::events::Event;
use crate::maintainer::Maintainer;
use crate::operations::OperationKind;
pub use crate::report::Trigger;
use crate::report::{CompactionRun, TableOutcome, TableResult};

/// How a run is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactOptions {
    /// Compact every table whatever its fragmentation ratio.
    pub force: bool,
    /// What started the run (recorded in the history).
    pub trigger: Trigger,
    /// Wait for a maintenance operation in progress to end; `false` returns
    /// [`CompactRequestError::Busy`] instead.
    pub wait: bool,
}

impl Default for CompactOptions {
    /// Not forced, manual, waiting.
    fn default() -> Self {
        CompactOptions {
            force: false,
            trigger: Trigger::Manual,
            wait: true,
        }
    }
}

/// A compaction run could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompactRequestError {
    /// No table has this name.
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    /// Another maintenance operation (compaction, backup, restore) is running and the request
    /// asked not to wait.
    #[error("another maintenance operation is running")]
    Busy,
}

impl Maintainer {
    /// Compact the nine tables, one after another (see the module doc).
    pub fn compact_all(
        &self,
        options: CompactOptions,
    ) -> Result<CompactionRun, CompactRequestError> {
        self.compact_all_until(options, &AtomicBool::new(false))
    }

    /// [`Maintainer::compact_all`], skipping the tables not started yet once `stop` is set
    /// (the run is still recorded and published).
    pub(crate) fn compact_all_until(
        &self,
        options: CompactOptions,
        stop: &AtomicBool,
    ) -> Result<CompactionRun, CompactRequestError> {
        let owners: Vec<OwnerHandle> = self.stores.owners().into_iter().cloned().collect();
        self.run(&owners, &options, stop)
    }

    /// Compact one table, with the same semantics as [`Maintainer::compact_all`].
    pub fn compact_one(
        &self,
        table: &str,
        options: CompactOptions,
    ) -> Result<CompactionRun, CompactRequestError> {
        let owner = self
            .stores
            .owner(table)
            .ok_or_else(|| CompactRequestError::UnknownTable(table.to_string()))?;
        let owners = [owner.clone()];
        self.run(&owners, &options, &AtomicBool::new(false))
    }

    /// The kept runs, oldest first (at most [`crate::history::HISTORY_LEN`]).
    pub fn history(&self) -> Vec<CompactionRun> {
        self.history.runs()
    }

    /// The newest run, if any.
    pub fn last_compaction(&self) -> Option<CompactionRun> {
        self.history.last()
    }

    fn run(
        &self,
        owners: &[OwnerHandle],
        options: &CompactOptions,
        stop: &AtomicBool,
    ) -> Result<CompactionRun, CompactRequestError> {
        let _guard = self
            .op_lock
            .take(options.wait)
            .map_err(|_busy| CompactRequestError::Busy)?;
        let started_at = SystemTime::now();
        let started = Instant::now();
        tracing::info!(
            trigger = options.trigger.as_str(),
            force = options.force,
            n_tables = owners.len(),
            "compaction run starts"
        );
        let results: Vec<TableResult> = owners
            .iter()
            .map(|owner| {
                if stop.load(Ordering::SeqCst) {
                    skipped(owner, "maintenance is stopping".into())
                } else {
                    self.compact_table(owner, options)
                }
            })
            .collect();
        let run = CompactionRun {
            started_at,
            duration: started.elapsed(),
            trigger: options.trigger.as_str().to_string(),
            results,
        };
        let failures: Vec<TableResult> = run
            .results
            .iter()
            .filter(|r| matches!(r.outcome, TableOutcome::Failed(_)))
            .cloned()
            .collect();
        if let Err(e) = self.history.record(run.clone()) {
            tracing::warn!(error = %e, "compaction history not saved; the run is kept in memory");
        }
        tracing::info!(
            ms = run.duration.as_millis() as u64,
            n_failed = failures.len(),
            "compaction run ends"
        );
        self.bus
            .publish(Event::CompactionComplete { run: run.clone() });
        if !failures.is_empty() {
            self.bus.publish(Event::CompactionFailed { failures });
        }
        Ok(run)
    }

    /// Decide, compact (retrying once) and describe one table.
    fn compact_table(&self, owner: &OwnerHandle, options: &CompactOptions) -> TableResult {
        let started = Instant::now();
        let shared = owner.shared();
        let metrics = shared.metrics();
        let config = &self.config.compaction;
        let mut result = TableResult {
            table: owner.table().to_string(),
            outcome: TableOutcome::Compacted,
            duration: Duration::ZERO,
            bytes_before: metrics.file_bytes,
            bytes_after: metrics.file_bytes,
            fragmentation_before: metrics.fragmentation_ratio,
            retried: false,
            max_pause: Duration::ZERO,
        };
        let skip = match shared.status() {
            TableStatus::Ok | TableStatus::Degraded(_) => None,
            status => Some(format!("table not compactable: {status}")),
        };
        let skip = skip.or_else(|| {
            (!options.force && metrics.fragmentation_ratio < config.threshold).then(|| {
                format!(
                    "fragmentation ratio {:.3} under the threshold {:.3}",
                    metrics.fragmentation_ratio, config.threshold
                )
            })
        });
        if let Some(reason) = skip {
            tracing::info!(table = owner.table(), %reason, "compaction skipped");
            result.outcome = TableOutcome::Skipped(reason);
            result.duration = started.elapsed();
            return result;
        }
        // Listed while it runs. The copy moves the live bytes of the snapshot, about those
        // counted now (writes may come in between).
        let operation = self
            .operations
            .begin(OperationKind::Compaction, owner.table(), "copy");
        let progress = operation.progress();
        progress.estimate_total(metrics.live_bytes);
        let online = OnlineConfig {
            progress: progress.clone(),
            ..self.online_config()
        };
        let attempt = || match config.strategy {
            Strategy::Online => owner.compact_online(online.clone()),
            Strategy::InPlace => owner.compact_in_place(),
        };
        let mut outcome = attempt();
        if let Err(e) = &outcome
            && retryable(e)
        {
            tracing::warn!(table = owner.table(), error = %e, "compaction failed; retrying once");
            result.retried = true;
            // The second copy comes on top of what the first one moved.
            progress.set_phase("copy, retried");
            progress.estimate_total(progress.read().bytes_done + shared.metrics().live_bytes);
            outcome = attempt();
        }
        match outcome {
            Ok(report) => {
                tracing::info!(
                    table = owner.table(),
                    bytes_before = report.bytes_before,
                    bytes_after = report.bytes_after,
                    max_pause_us = report.max_pause.as_micros() as u64,
                    copy_ms = report.copy.as_millis() as u64,
                    paused_at_ms = report.paused_at.as_millis() as u64,
                    "table compacted"
                );
                result.bytes_before = report.bytes_before;
                result.bytes_after = report.bytes_after;
                result.max_pause = report.max_pause;
            }
            Err(e) => {
                tracing::error!(table = owner.table(), error = %e, retried = result.retried, "compaction failed");
                result.outcome = TableOutcome::Failed(e.to_string());
                result.bytes_after = shared.metrics().file_bytes;
            }
        }
        result.duration = started.elapsed();
        result
    }

    /// The settings of an online compaction (with the test hook, when one is set).
    fn online_config(&self) -> OnlineConfig {
        let online = OnlineConfig {
            pause_limit: self.config.compaction.pause_limit,
            ..OnlineConfig::default()
        };
        #[cfg(feature = "testing")]
        let online = OnlineConfig {
            hook: self.hooks.compaction_hook(),
            ..online
        };
        online
    }
}

/// `owner`'s result when it was not looked at.
fn skipped(owner: &OwnerHandle, reason: String) -> TableResult {
    let metrics = owner.shared().metrics();
    TableResult {
        table: owner.table().to_string(),
        outcome: TableOutcome::Skipped(reason),
        duration: Duration::ZERO,
        bytes_before: metrics.file_bytes,
        bytes_after: metrics.file_bytes,
        fragmentation_before: metrics.fragmentation_ratio,
        retried: false,
        max_pause: Duration::ZERO,
    }
}

/// Whether a second attempt could succeed where the first failed.
fn retryable(e: &MaintenanceError) -> bool {
    !matches!(e, MaintenanceError::Corrupted(_) | MaintenanceError::Closed)
}
