//! Online compaction by copy, run inside an owner without stopping it.
//!
//! 1. The owner takes a read snapshot and hands it to a worker thread (`worker.rs`), which
//!    copies the live records in key order into a fresh file beside the table
//!    (`<table>.redb.compact-<id>`). Meanwhile the owner keeps serving and records every key
//!    it writes.
//! 2. Catch-up rounds: the owner hands the worker the keys written since the last round with
//!    a new snapshot; the worker copies their current values (or deletes them) into the fresh
//!    file. Rounds repeat until few keys remain (or the round budget is spent).
//! 3. Final pause (`OnlineCompaction::swap`): the worker hands the fresh file
//!    back; the owner copies the last changed keys from the live file, commits durably,
//!    renames the fresh file over the table (plus a directory fsync) and serves from it. The
//!    pause is bounded by the writes made during the last round, not by the table's size. If
//!    it runs past the pause limit, the attempt is abandoned: the fresh file is removed and
//!    the old file keeps serving. The replaced file is released on a `close-replaced` thread.
//!
//! The worker's copy and catch-up rounds, and the freeing of the replaced file, are paced by
//! the owners' shared [`Pacer`]; the final pause is not.
//!
//! Crash safety: before the rename the old file is complete and holds every acknowledged
//! write; the fresh file is complete and durable before it is renamed in. Leftover fresh files
//! are removed by [`remove_leftovers`] when the table is next opened.
//!
//! Failure at any step (copy, catch-up, final copy, swap) abandons the attempt: the fresh file
//! is removed and the old file keeps serving. With the `testing` feature, tests inject
//! failures (or kill the process) at each step through `OnlineConfig::hook` (`hook.rs`).
//!
//! The owner drives an `OnlineCompaction` through a narrow interface: it hands over its
//! store at each worker event and gets back what to do (`Progress`); the table's status and
//! the caller's reply stay with the owner.

mod hook;
mod worker;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvError, Sender, unbounded};
use store_core::{Pacer, ReplacedFile, StoreOptions, TableStore};

use crate::error::MaintenanceError;
use crate::report::CompactReport;
use hook::Hooks;
#[cfg(feature = "testing")]
pub use hook::{Step, StepHook};
pub(crate) use worker::WorkerEvent;
use worker::{LiveStore, WorkerCommand, WorkerJob, copy_keys};

/// Tuning of an online compaction.
#[derive(Debug, Clone)]
pub struct OnlineConfig {
    /// Longest the final pause may last; past it the attempt is abandoned safely.
    pub pause_limit: Duration,
    /// Catch-up rounds stop once at most this many keys changed during a round.
    pub final_keys: usize,
    /// Catch-up rounds stop after this many, whatever is left.
    pub max_rounds: u32,
    /// Advanced by the live bytes of the snapshot copy, read by whoever shows the compaction's
    /// progress (its total is theirs to set).
    pub progress: store_core::Progress,
    /// Test hook (`testing` feature only): called at each [`Step`]; an `Err` makes that step
    /// fail (the attempt is abandoned safely, as with a real I/O failure there).
    #[cfg(feature = "testing")]
    pub hook: Option<StepHook>,
}

impl Default for OnlineConfig {
    fn default() -> Self {
        OnlineConfig {
            pause_limit: Duration::from_secs(1),
            final_keys: 512,
            max_rounds: 16,
            progress: store_core::Progress::new("copy"),
            #[cfg(feature = "testing")]
            hook: None,
        }
    }
}

impl OnlineConfig {
    fn hooks(&self) -> Hooks {
        Hooks {
            #[cfg(feature = "testing")]
            hook: self.hook.clone(),
        }
    }
}

/// What the owner does after handing a worker event to [`OnlineCompaction::on_event`].
pub(crate) enum Progress {
    /// The compaction goes on; keep serving.
    Running,
    /// The attempt is over, swapped in (the report: the owner publishes the fresh file's
    /// counters) or given up; [`OnlineCompaction::end`] it and answer with this.
    Over(Result<CompactReport, MaintenanceError>),
    /// The swap failed after the rename (a failed directory fsync): the table path holds the
    /// fresh file, which has every acknowledged write, while the store writes to the unlinked
    /// old one. The owner reopens what is at the table path, then ends the attempt with this.
    ReopenThenOver(MaintenanceError),
}

/// An online compaction in progress, held by the owner.
pub(crate) struct OnlineCompaction<S: TableStore> {
    table: &'static str,
    events: Receiver<WorkerEvent<S>>,
    commands: Sender<WorkerCommand<S::Snapshot>>,
    /// Keys written since the snapshot of the current round.
    changed: BTreeSet<Vec<u8>>,
    /// The compaction's config; it may hold a test hook, itself holding a handle to this very
    /// owner, so it goes in [`OnlineCompaction::end`], before the owner replies.
    config: OnlineConfig,
    hooks: Hooks,
    table_path: PathBuf,
    fresh_path: PathBuf,
    cancel: Arc<AtomicBool>,
    worker: JoinHandle<()>,
    /// Paces the worker's copy and the freeing of the file a swap replaced.
    pacer: Arc<Pacer>,
    started: Instant,
    /// When the snapshot copy ended, once it has.
    copied: Option<Instant>,
    bytes_before: u64,
    rounds: u32,
}

const FRESH_MARKER: &str = ".compact-";

/// Remove fresh files a crashed compaction left beside `table_path`: their names at once,
/// their blocks (up to a table's worth) freed on a `remove-fresh` thread, paced by `pacer`,
/// so that the other tables' fsyncs are not held up while this one opens.
pub fn remove_leftovers(table_path: &Path, pacer: &Arc<Pacer>) {
    let (Some(dir), Some(name)) = (table_path.parent(), table_path.file_name()) else {
        return;
    };
    let prefix = format!("{}{FRESH_MARKER}", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            tracing::info!(file = %entry.path().display(), "removing a leftover compaction file");
            remove_off_thread(&entry.path(), pacer);
        }
    }
}

impl<S: TableStore> OnlineCompaction<S> {
    /// Begin compacting `store`, the table `table`: snapshot it and start the worker.
    pub(crate) fn start(
        table: &'static str,
        store: &S,
        options: &StoreOptions,
        config: OnlineConfig,
        pacer: Arc<Pacer>,
    ) -> Result<OnlineCompaction<S>, MaintenanceError> {
        let snapshot = store.snapshot()?;
        let table_path = store.path().to_path_buf();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut fresh_name = table_path.file_name().unwrap_or_default().to_os_string();
        fresh_name.push(format!("{FRESH_MARKER}{nanos}"));
        let fresh_path = table_path.with_file_name(fresh_name);
        let (event_tx, events) = unbounded();
        let (commands, command_rx) = unbounded();
        let cancel = Arc::new(AtomicBool::new(false));
        let hooks = config.hooks();
        let job = WorkerJob {
            fresh_path: fresh_path.clone(),
            options: options.clone(),
            cancel: cancel.clone(),
            hooks: hooks.clone(),
            pacer: pacer.clone(),
            progress: config.progress.clone(),
        };
        let worker = std::thread::Builder::new()
            .name(format!("compact-{table}"))
            .spawn(move || worker::run::<S>(snapshot, job, command_rx, event_tx))
            .map_err(|e| MaintenanceError::io("spawning the worker", e))?;
        Ok(OnlineCompaction {
            table,
            events,
            commands,
            changed: BTreeSet::new(),
            config,
            hooks,
            bytes_before: file_len(&table_path),
            table_path,
            fresh_path,
            cancel,
            worker,
            pacer,
            started: Instant::now(),
            copied: None,
            rounds: 0,
        })
    }

    /// Where the worker's events arrive; the owner waits on it with its own inbox.
    pub(crate) fn events(&self) -> Receiver<WorkerEvent<S>> {
        self.events.clone()
    }

    /// The keys written since the current round's snapshot: every write the owner commits
    /// while the compaction runs is recorded here.
    pub(crate) fn changed(&mut self) -> &mut BTreeSet<Vec<u8>> {
        &mut self.changed
    }

    /// Take the worker's next event (`Err`: its channel closed without a word, it panicked).
    /// `store` is the owner's store, `None` while the table is closed.
    pub(crate) fn on_event(
        &mut self,
        event: Result<WorkerEvent<S>, RecvError>,
        store: Option<&mut S>,
    ) -> Progress {
        match event {
            Ok(WorkerEvent::Copied(Ok(stats))) => {
                tracing::debug!(
                    table = self.table,
                    records = stats.records,
                    ms = stats.duration.as_millis() as u64,
                    "snapshot copied"
                );
                self.copied = Some(Instant::now());
                self.next_round(store.as_deref())
            }
            Ok(WorkerEvent::CaughtUp(Ok(n))) => {
                tracing::debug!(
                    table = self.table,
                    keys = n,
                    round = self.rounds,
                    "caught up"
                );
                self.next_round(store.as_deref())
            }
            Ok(WorkerEvent::Copied(Err(e)) | WorkerEvent::CaughtUp(Err(e))) => {
                Progress::Over(Err(e))
            }
            Err(RecvError) => Progress::Over(Err(MaintenanceError::WorkerStopped)),
            Ok(WorkerEvent::Ready(fresh)) => self.swap(fresh, store),
        }
    }

    /// Start another catch-up round, or ask for the fresh file when few keys are left.
    fn next_round(&mut self, store: Option<&S>) -> Progress {
        // At least one catch-up round runs when anything changed during the copy: the first
        // commit to the freshly written file is the slow one (it warms the file's cache and
        // records its allocator state), and it must not fall in the final pause.
        let enough = self.changed.is_empty()
            || (self.rounds > 0 && self.changed.len() <= self.config.final_keys);
        if enough || self.rounds >= self.config.max_rounds {
            let _ = self.commands.send(WorkerCommand::HandOver);
            return Progress::Running;
        }
        let snapshot = match store.map(|s| s.snapshot()) {
            Some(Ok(s)) => s,
            Some(Err(e)) => return Progress::Over(Err(e.into())),
            None => {
                return Progress::Over(Err(MaintenanceError::Unavailable("table closed".into())));
            }
        };
        let keys: Vec<Vec<u8>> = std::mem::take(&mut self.changed).into_iter().collect();
        self.rounds += 1;
        let _ = self
            .commands
            .send(WorkerCommand::CatchUp { keys, snapshot });
        Progress::Running
    }

    /// The final pause: copy the last changed keys from the live file, commit, swap.
    fn swap(&self, mut fresh: S, store: Option<&mut S>) -> Progress {
        let paused = Instant::now();
        let Some(store) = store else {
            return Progress::Over(Err(MaintenanceError::Unavailable("table closed".into())));
        };
        let keys: Vec<Vec<u8>> = self.changed.iter().cloned().collect();
        // Not paced: this is the pause, and the fewer keys left the better.
        let copied = self
            .hooks
            .at(hook::Step::FinalCopy)
            .and_then(|()| copy_keys(&LiveStore(&*store), &keys, &mut fresh));
        let copied = copied.and_then(|_| carry_log_position(&*store, &mut fresh));
        if let Err(e) = copied {
            return Progress::Over(Err(e));
        }
        let elapsed = paused.elapsed();
        if elapsed > self.config.pause_limit {
            return Progress::Over(Err(MaintenanceError::Abandoned(format!(
                "final pause reached {} ms, over the {} ms limit",
                elapsed.as_millis(),
                self.config.pause_limit.as_millis()
            ))));
        }
        if let Err(e) = self.hooks.at(hook::Step::Swap) {
            return Progress::Over(Err(e));
        }
        let records = fresh.counters().records;
        match store.swap_in(fresh) {
            Ok(replaced) => release_off_thread(replaced, self.pacer.clone()),
            Err(e) => {
                let e = Arc::new(e);
                let error = MaintenanceError::Swap(e.clone());
                // The rename may have happened before the failure (a failed directory fsync).
                if !self.fresh_path.exists() {
                    tracing::warn!(table = self.table, error = %e, "swap failed after the rename; reopening the table file");
                    return Progress::ReopenThenOver(error);
                }
                return Progress::Over(Err(error));
            }
        }
        let pause = paused.elapsed();
        Progress::Over(Ok(CompactReport {
            bytes_before: self.bytes_before,
            bytes_after: file_len(&self.table_path),
            records,
            duration: self.started.elapsed(),
            max_pause: pause,
            catch_up_rounds: self.rounds,
            copy: self.copied.map_or(Duration::ZERO, |at| at - self.started),
            paused_at: paused - self.started,
        }))
    }

    /// Ask the worker to stop at its next check; the attempt then ends through the owner's
    /// loop like any failed one (the worker is not waited for here: it may be waiting for the
    /// owner).
    pub(crate) fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// End the attempt: stop the worker and wait for it, and remove the fresh file unless it
    /// was swapped in. What the config holds (a test hook may hold a handle to this very
    /// owner) goes here, before the owner replies: once the caller has its answer it may drop
    /// its own handle, and the last handle must never be dropped on the owner thread (it would
    /// join itself).
    pub(crate) fn end(self, swapped: bool) {
        // The config and hooks are dropped with the rest when this returns.
        let OnlineCompaction {
            events,
            commands,
            fresh_path,
            cancel,
            worker,
            pacer,
            ..
        } = self;
        cancel.store(true, Ordering::Relaxed);
        // The worker is idle (waiting for a command), copying (it sees `cancel` at its next
        // chunk) or has exited: closing its command channel ends it, and joining closes its
        // copy of the fresh file before removal.
        drop(commands);
        drop(events);
        let _ = worker.join();
        if !swapped {
            remove_off_thread(&fresh_path, &pacer);
        }
    }
}

/// Release the file a swap replaced on a `close-replaced` thread (see
/// [`ReplacedFile::release`]): closing it and giving its blocks back takes long enough to
/// stall the owner; the freeing is paced by `pacer`. If the thread cannot be spawned, the file
/// is dropped (closed) right here.
fn release_off_thread<R: ReplacedFile>(replaced: R, pacer: Arc<Pacer>) {
    let _ = std::thread::Builder::new()
        .name("close-replaced".into())
        .spawn(move || replaced.release(&pacer));
}

/// Remove a fresh file (an abandoned attempt's, or a leftover of a crash): its name at once,
/// its blocks (up to the whole table's worth) on a `remove-fresh` thread, paced by `pacer`,
/// as the replaced file of a swap is.
fn remove_off_thread(path: &Path, pacer: &Arc<Pacer>) {
    let Ok(Some(file)) = store_core::fsutil::unlink_for_release(path) else {
        return;
    };
    let pacer = pacer.clone();
    let _ = std::thread::Builder::new()
        .name("remove-fresh".into())
        .spawn(move || store_core::fsutil::release_gradually(file, &pacer));
}

/// The fresh file takes over the live file's change-log position: the last group it holds
/// (its copy and catch-up rounds hold every write the live file does).
fn carry_log_position<S: TableStore>(live: &S, fresh: &mut S) -> Result<(), MaintenanceError> {
    if fresh.log_position() == live.log_position() {
        return Ok(());
    }
    let mut batch = fresh.begin_batch()?;
    store_core::WriteBatch::set_log_position(&mut batch, live.log_position());
    store_core::WriteBatch::commit(batch)?;
    Ok(())
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
