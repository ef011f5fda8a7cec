//! Scrubs: every page checksum of every table verified in the background while the tables
//! serve ([`Maintainer::scrub_all`], [`Maintainer::scrub_table`]; scheduled by
//! [`Maintainer::start_scrub_schedule`], the first run shortly after start). The tables open
//! without verifying, so start-up does not grow with the data; the scrub is what finds a
//! damaged file, and the table's owner then reports it to automatic recovery exactly as
//! corruption met by a read (see `OwnerHandle::scrub`).
//!
//! A scrub takes no maintenance lock: it reads a snapshot, so compactions, backups and
//! restores go on meanwhile (a finding in a file replaced during the walk is dropped by the
//! owner). One scrub runs at a time. Progress and each table's last result are kept here and
//! shown by health, `status` and the metrics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Instant, SystemTime};

use store_owners::{MaintenanceError, TableStatus};

use crate::maintainer::Maintainer;
use crate::report::{ScrubOutcome, ScrubProgress, ScrubResult, ScrubRun};
use crate::scheduler::{Schedule, StartScheduleError};

/// Why a scrub did not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScrubRequestError {
    /// Not one of the nine tables.
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    /// Another scrub is running.
    #[error("a scrub is already running")]
    Busy,
}

impl Maintainer {
    /// Scrub every serving table, one after the other. `stopping` ends the run early (the
    /// table being read stops at its next read).
    pub fn scrub_all(&self, stopping: &Arc<AtomicBool>) -> Result<ScrubRun, ScrubRequestError> {
        let tables: Vec<&'static str> = store_owners::TABLE_NAMES.to_vec();
        self.scrub_tables(&tables, stopping)
    }

    /// Scrub one table.
    pub fn scrub_table(
        &self,
        table: &str,
        stopping: &Arc<AtomicBool>,
    ) -> Result<ScrubResult, ScrubRequestError> {
        let Some(owner) = self.owner_of(table) else {
            return Err(ScrubRequestError::UnknownTable(table.to_string()));
        };
        let run = self.scrub_tables(&[owner.table()], stopping)?;
        Ok(run
            .results
            .into_iter()
            .next()
            .expect("one table, one result"))
    }

    fn scrub_tables(
        &self,
        tables: &[&'static str],
        stopping: &Arc<AtomicBool>,
    ) -> Result<ScrubRun, ScrubRequestError> {
        let started_at = SystemTime::now();
        {
            let mut running = self.scrub.running.lock().unwrap_or_else(|p| p.into_inner());
            if running.is_some() {
                return Err(ScrubRequestError::Busy);
            }
            *running = Some(ScrubProgress {
                table: tables[0].to_string(),
                bytes_read: 0,
                file_bytes: 0,
                tables_done: 0,
                tables_total: tables.len(),
                started_at,
            });
        }
        let results = tables
            .iter()
            .enumerate()
            .map(|(done, table)| {
                let result = self.scrub_one(table, done, stopping);
                tracing::info!(
                    table,
                    outcome = ?result.outcome,
                    bytes_read = result.bytes_read,
                    seconds = result.duration_seconds,
                    detail = result.detail.as_deref().unwrap_or(""),
                    "scrub"
                );
                self.scrub
                    .last
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(table.to_string(), result.clone());
                result
            })
            .collect();
        *self.scrub.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(ScrubRun { results })
    }

    fn scrub_one(
        &self,
        table: &'static str,
        done: usize,
        stopping: &Arc<AtomicBool>,
    ) -> ScrubResult {
        let owner = self.owner_of(table).expect("one of the nine");
        let started = Instant::now();
        let file_bytes = owner.shared().metrics().file_bytes;
        self.set_progress(|p| {
            p.table = table.to_string();
            p.bytes_read = 0;
            p.file_bytes = file_bytes;
            p.tables_done = done;
        });
        let finish = |outcome, detail: Option<String>, bytes_read| ScrubResult {
            table: table.to_string(),
            outcome,
            detail,
            bytes_read,
            duration_seconds: started.elapsed().as_secs_f64(),
            finished_at: SystemTime::now(),
        };
        if stopping.load(Ordering::SeqCst) {
            return finish(ScrubOutcome::Skipped, Some("stopping".into()), 0);
        }
        match owner.shared().status() {
            TableStatus::Ok | TableStatus::Compacting => {}
            other => return finish(ScrubOutcome::Skipped, Some(other.to_string()), 0),
        }
        let read = Arc::new(AtomicU64::new(0));
        let pace = Pace::new(self.config.scrub.max_rate);
        let pacer = self.stores.pacer().clone();
        let on_read: store_core::OnRead = {
            let (read, state, stopping) = (read.clone(), self.scrub.clone(), stopping.clone());
            Arc::new(move |bytes| {
                if stopping.load(Ordering::Relaxed) {
                    return false;
                }
                let total = read.fetch_add(bytes, Ordering::Relaxed) + bytes;
                state.set_bytes_read(total);
                // The shared pace first: the scrub takes its share of the maintenance I/O
                // with compactions, backups and uploads (and `auto` backs off for the
                // tables' commits); then its own cap, `[scrub] max_rate`.
                let waited = pacer.pace(bytes) + pace.wait_for(total, &stopping);
                state
                    .wait_micros
                    .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
                !stopping.load(Ordering::Relaxed)
            })
        };
        // The walk reads the live file: its pages are the tables' own, so they are left in the
        // page cache (dropping them would send the owner's next reads to the disk).
        let outcome = owner.scrub(on_read);
        let bytes_read = read.load(Ordering::Relaxed);
        self.scrub
            .bytes_read_total
            .fetch_add(bytes_read, Ordering::Relaxed);
        match outcome {
            Ok(_) => finish(ScrubOutcome::Clean, None, bytes_read),
            Err(MaintenanceError::Corrupted(detail)) => {
                finish(ScrubOutcome::Corrupted, Some(detail), bytes_read)
            }
            Err(MaintenanceError::Cancelled(why)) => {
                finish(ScrubOutcome::Skipped, Some(why.to_string()), bytes_read)
            }
            Err(MaintenanceError::Unavailable(why)) => {
                finish(ScrubOutcome::Skipped, Some(why), bytes_read)
            }
            Err(e) => finish(ScrubOutcome::Failed, Some(e.to_string()), bytes_read),
        }
    }

    fn set_progress(&self, update: impl FnOnce(&mut ScrubProgress)) {
        if let Some(p) = self
            .scrub
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            update(p);
        }
    }

    /// The scrub in progress, if any.
    pub fn scrub_progress(&self) -> Option<ScrubProgress> {
        self.scrub
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The last scrub of `table`, if one ran since the start.
    pub fn last_scrub(&self, table: &str) -> Option<ScrubResult> {
        self.scrub
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(table)
            .cloned()
    }

    /// Time scrubs spent waiting for their pace (the shared pacer's and
    /// [`crate::ScrubConfig::max_rate`]) since the start.
    pub fn scrub_waited(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.scrub.wait_micros.load(Ordering::Relaxed))
    }

    /// Bytes read by scrubs since the start.
    pub fn scrub_bytes_read(&self) -> u64 {
        self.scrub.bytes_read_total.load(Ordering::Relaxed)
    }

    /// Start the scrub schedule: [`Maintainer::scrub_all`] first
    /// [`crate::ScrubConfig::after_start`] from now, then every
    /// [`crate::ScrubConfig::interval`]. Stopping it stops the run in progress at its next
    /// read.
    pub fn start_scrub_schedule(self: &Arc<Self>) -> Result<Schedule, StartScheduleError> {
        let maintainer: Weak<Maintainer> = Arc::downgrade(self);
        let config = &self.config.scrub;
        let schedule = Schedule::start_stoppable_after(
            "scrub-schedule",
            config.after_start,
            config.interval,
            move |stopping| {
                let Some(maintainer) = maintainer.upgrade() else {
                    return;
                };
                match maintainer.scrub_all(stopping) {
                    Ok(run) => {
                        let found = run
                            .results
                            .iter()
                            .filter(|r| r.outcome == ScrubOutcome::Corrupted)
                            .count();
                        tracing::info!(tables = run.results.len(), found, "scrub run ended");
                    }
                    Err(e) => tracing::warn!(error = %e, "scheduled scrub did not run"),
                }
            },
        )?;
        *self
            .scrub
            .schedule
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = schedule.watch();
        Ok(schedule)
    }

    /// When the scrub schedule runs next.
    pub fn next_scrub(&self) -> Option<SystemTime> {
        let state = self
            .scrub
            .schedule
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade();
        state?.next_run()
    }
}

/// The scrub's own cap, on top of the shared pacer: at most `rate` bytes a second on average
/// since the table's walk began (0: no cap). Waits in slices, so that a stop request is seen
/// within 100 ms.
struct Pace {
    rate: u64,
    started: Instant,
}

impl Pace {
    fn new(rate: u64) -> Pace {
        Pace {
            rate,
            started: Instant::now(),
        }
    }

    /// Wait until `total` bytes are within the pace; returns the time waited.
    fn wait_for(&self, total: u64, stopping: &AtomicBool) -> std::time::Duration {
        if self.rate == 0 {
            return std::time::Duration::ZERO;
        }
        let due = std::time::Duration::from_secs_f64(total as f64 / self.rate as f64);
        let mut waited = std::time::Duration::ZERO;
        loop {
            let elapsed = self.started.elapsed();
            if elapsed >= due || stopping.load(Ordering::Relaxed) {
                return waited;
            }
            let slice = (due - elapsed).min(std::time::Duration::from_millis(100));
            std::thread::sleep(slice);
            waited += slice;
        }
    }
}
