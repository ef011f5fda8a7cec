//! Online compaction by copy, run inside an owner without stopping it.
//!
//! 1. The owner takes a read snapshot and hands it to a worker thread, which copies the live
//!    records in key order into a fresh file beside the table (`<table>.redb.compact-<id>`).
//!    Meanwhile the owner keeps serving and records every key it writes.
//! 2. Catch-up rounds: the owner hands the worker the keys written since the last round with
//!    a new snapshot; the worker copies their current values (or deletes them) into the fresh
//!    file. Rounds repeat until few keys remain (or the round budget is spent).
//! 3. Final pause: the worker hands the fresh file back; the owner copies the last changed keys
//!    from the live file, commits durably, renames the fresh file over the table (plus a
//!    directory fsync) and serves from it. The pause is bounded by the writes made during the
//!    last round, not by the table's size. If it runs past the pause limit, the attempt is
//!    abandoned: the fresh file is removed and the old file keeps serving.
//!
//! Crash safety: before the rename the old file is complete and holds every acknowledged
//! write; the fresh file is complete and durable before it is renamed in. Leftover fresh files
//! are removed by [`remove_leftovers`] when the table is next opened.
//!
//! Failure at any step (copy, catch-up, final copy, swap) abandons the attempt: the fresh file
//! is removed and the old file keeps serving. Tests inject failures (or kill the process) at
//! each [`Step`] through [`OnlineConfig::hook`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use store_core::{CopyError, CopyStats, StoreOptions, StoreSnapshot, TableStore, WriteBatch};

use crate::error::MaintenanceError;
use crate::owner::{CompactReport, OwnerThread, file_len};
use crate::shared::TableStatus;

/// Tuning of an online compaction.
#[derive(Debug, Clone)]
pub struct OnlineConfig {
    /// Longest the final pause may last; past it the attempt is abandoned safely.
    pub pause_limit: Duration,
    /// Catch-up rounds stop once at most this many keys changed during a round.
    pub final_keys: usize,
    /// Catch-up rounds stop after this many, whatever is left.
    pub max_rounds: u32,
    /// Test hook: called at each [`Step`]; an `Err` makes that step fail (the attempt is
    /// abandoned safely, as with a real I/O failure there). `None` in production.
    pub hook: Option<StepHook>,
}

impl Default for OnlineConfig {
    fn default() -> Self {
        OnlineConfig {
            pause_limit: Duration::from_secs(1),
            final_keys: 512,
            max_rounds: 16,
            hook: None,
        }
    }
}

/// The steps of an online compaction at which [`OnlineConfig::hook`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Worker thread, between chunks of the snapshot copy (first call before any record is
    /// copied, with the fresh file just created). Carries the records copied so far.
    CopyChunk(u64),
    /// Worker thread: the fresh file holds the whole snapshot, durably; catch-up is next.
    Copied,
    /// Worker thread: a catch-up round is about to be applied to the fresh file.
    CatchUp,
    /// Owner thread, in the final pause: the last changed keys are about to be copied.
    FinalCopy,
    /// Owner thread, in the final pause: the fresh file is complete and durable and is about
    /// to be renamed over the table.
    Swap,
}

/// A function called at each [`Step`] of an online compaction (tests only).
#[derive(Clone)]
pub struct StepHook(Arc<dyn Fn(Step) -> Result<(), String> + Send + Sync>);

impl StepHook {
    /// Wrap `f`: returning `Err(reason)` makes the step fail with that reason.
    pub fn new(f: impl Fn(Step) -> Result<(), String> + Send + Sync + 'static) -> StepHook {
        StepHook(Arc::new(f))
    }

    fn call(&self, step: Step) -> Result<(), MaintenanceError> {
        (self.0)(step).map_err(|reason| {
            MaintenanceError::Io(format!("injected failure at {step:?}: {reason}"))
        })
    }
}

impl std::fmt::Debug for StepHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepHook(..)")
    }
}

fn run_hook(hook: Option<&StepHook>, step: Step) -> Result<(), MaintenanceError> {
    hook.map_or(Ok(()), |h| h.call(step))
}

/// What the worker tells the owner.
pub(crate) enum WorkerEvent<S> {
    Copied(Result<CopyStats, MaintenanceError>),
    CaughtUp(Result<usize, MaintenanceError>),
    Ready(S),
    /// The worker's channel closed without a word (it panicked).
    Vanished,
}

enum WorkerCommand<Snap> {
    CatchUp { keys: Vec<Vec<u8>>, snapshot: Snap },
    HandOver,
}

/// An online compaction in progress, held by the owner.
pub(crate) struct OnlineCompaction<S: TableStore> {
    pub(crate) events: Receiver<WorkerEvent<S>>,
    commands: Sender<WorkerCommand<S::Snapshot>>,
    /// Keys written since the snapshot of the current round.
    pub(crate) changed: BTreeSet<Vec<u8>>,
    reply: Sender<Result<CompactReport, MaintenanceError>>,
    config: OnlineConfig,
    fresh_path: PathBuf,
    cancel: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
    started: Instant,
    bytes_before: u64,
    rounds: u32,
    /// The table's status before the compaction, put back when it ends (a degraded table
    /// stays degraded).
    status_before: TableStatus,
}

const FRESH_MARKER: &str = ".compact-";

/// Remove fresh files a crashed compaction left beside `table_path`.
pub fn remove_leftovers(table_path: &Path) {
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
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Begin an online compaction of `owner`'s table.
pub(crate) fn start<S: TableStore>(
    owner: &mut OwnerThread<S>,
    config: OnlineConfig,
    reply: Sender<Result<CompactReport, MaintenanceError>>,
) {
    let Some(store) = &owner.store else {
        let _ = reply.send(Err(MaintenanceError::Unavailable(
            owner.shared.status().to_string(),
        )));
        return;
    };
    // Copying a table known to be damaged would only spread the damage.
    if let TableStatus::Corrupted(detail) = owner.shared.status() {
        let _ = reply.send(Err(MaintenanceError::Corrupted(detail)));
        return;
    }
    let snapshot = match store.snapshot() {
        Ok(s) => s,
        Err(e) => {
            let _ = reply.send(Err(e.into()));
            return;
        }
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut fresh_name = owner.path.file_name().unwrap_or_default().to_os_string();
    fresh_name.push(format!("{FRESH_MARKER}{nanos}"));
    let fresh_path = owner.path.with_file_name(fresh_name);
    let (event_tx, events) = unbounded();
    let (commands, command_rx) = unbounded();
    let cancel = Arc::new(AtomicBool::new(false));
    let worker = {
        let job = WorkerJob {
            fresh_path: fresh_path.clone(),
            options: owner.config.store.clone(),
            cancel: cancel.clone(),
            hook: config.hook.clone(),
        };
        std::thread::Builder::new()
            .name(format!("compact-{}", owner.table))
            .spawn(move || worker::<S>(snapshot, job, command_rx, event_tx))
    };
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            let _ = reply.send(Err(MaintenanceError::Io(format!(
                "spawning the worker: {e}"
            ))));
            return;
        }
    };
    let status_before = owner.shared.status();
    owner.shared.set_status(TableStatus::Compacting);
    owner.compaction = Some(OnlineCompaction {
        events,
        commands,
        changed: BTreeSet::new(),
        reply,
        config,
        fresh_path,
        cancel,
        worker: Some(worker),
        started: Instant::now(),
        bytes_before: file_len(&owner.path),
        rounds: 0,
        status_before,
    });
}

/// What the worker thread needs besides its channels.
struct WorkerJob {
    fresh_path: PathBuf,
    options: StoreOptions,
    cancel: Arc<AtomicBool>,
    hook: Option<StepHook>,
}

/// The worker thread: copy the snapshot, then apply catch-up rounds, then hand the file over.
fn worker<S: TableStore>(
    snapshot: S::Snapshot,
    job: WorkerJob,
    commands: Receiver<WorkerCommand<S::Snapshot>>,
    events: Sender<WorkerEvent<S>>,
) {
    let WorkerJob {
        fresh_path,
        options,
        cancel,
        hook,
    } = job;
    let injected = std::sync::Mutex::new(None);
    let keep_going = |records: u64| {
        if cancel.load(Ordering::Relaxed) {
            return false;
        }
        match run_hook(hook.as_ref(), Step::CopyChunk(records)) {
            Ok(()) => true,
            Err(e) => {
                *injected.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                false
            }
        }
    };
    let copied = snapshot.copy_to_file(&fresh_path, &keep_going);
    drop(snapshot);
    let copied = match copied {
        Ok(stats) => run_hook(hook.as_ref(), Step::Copied).map(|()| stats),
        Err(e) => Err(injected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| match e {
                CopyError::Corrupted(detail) => MaintenanceError::Corrupted(detail),
                other => MaintenanceError::Storage(other.to_string()),
            })),
    };
    let failed = copied.is_err();
    let _ = events.send(WorkerEvent::Copied(copied));
    if failed {
        let _ = std::fs::remove_file(&fresh_path);
        return;
    }
    let mut fresh = match S::open(&fresh_path, &options) {
        Ok(f) => f,
        Err(e) => {
            let _ = events.send(WorkerEvent::CaughtUp(Err(MaintenanceError::Storage(
                e.to_string(),
            ))));
            let _ = std::fs::remove_file(&fresh_path);
            return;
        }
    };
    for command in commands.iter() {
        match command {
            WorkerCommand::CatchUp { keys, snapshot } => {
                let result = run_hook(hook.as_ref(), Step::CatchUp)
                    .and_then(|()| copy_keys(&snapshot, &keys, &mut fresh));
                drop(snapshot);
                let failed = result.is_err();
                let _ = events.send(WorkerEvent::CaughtUp(result.map(|()| keys.len())));
                if failed {
                    break;
                }
            }
            WorkerCommand::HandOver => {
                let _ = events.send(WorkerEvent::Ready(fresh));
                return;
            }
        }
    }
    // Cancelled, or a round failed: the fresh file is of no use.
    drop(fresh);
    let _ = std::fs::remove_file(&fresh_path);
}

/// Bring `keys` of `fresh` to their values in `source`, in one commit.
fn copy_keys<S: TableStore>(
    source: &dyn SnapshotGet,
    keys: &[Vec<u8>],
    fresh: &mut S,
) -> Result<(), MaintenanceError> {
    if keys.is_empty() {
        // Nothing to carry over; the fresh file is already durable.
        return Ok(());
    }
    let mut batch = fresh.begin_batch()?;
    for key in keys {
        match source.get_value(key)? {
            Some(value) => batch.put(key, &value)?,
            None => {
                batch.delete(key)?;
            }
        }
    }
    batch.commit()?;
    Ok(())
}

/// Point reads from wherever the current value of a key lives (a snapshot or the live store).
trait SnapshotGet {
    fn get_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MaintenanceError>;
}

impl<T: StoreSnapshot> SnapshotGet for T {
    fn get_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MaintenanceError> {
        Ok(self.get(key)?)
    }
}

struct LiveStore<'a, S>(&'a S);

impl<S: TableStore> SnapshotGet for LiveStore<'_, S> {
    fn get_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MaintenanceError> {
        Ok(self.0.get(key)?)
    }
}

impl<S: TableStore> OwnerThread<S> {
    pub(crate) fn on_worker_event(&mut self, event: WorkerEvent<S>) {
        let Some(c) = self.compaction.as_mut() else {
            return;
        };
        match event {
            WorkerEvent::Copied(Ok(stats)) => {
                tracing::debug!(
                    table = self.table,
                    records = stats.records,
                    ms = stats.duration.as_millis() as u64,
                    "snapshot copied"
                );
                self.next_round();
            }
            WorkerEvent::CaughtUp(Ok(n)) => {
                tracing::debug!(table = self.table, keys = n, round = c.rounds, "caught up");
                self.next_round();
            }
            WorkerEvent::Copied(Err(e)) | WorkerEvent::CaughtUp(Err(e)) => {
                let c = self.compaction.take().expect("checked above");
                self.finish(c, Err(e));
            }
            WorkerEvent::Vanished => {
                let c = self.compaction.take().expect("checked above");
                self.finish(
                    c,
                    Err(MaintenanceError::Storage(
                        "the compaction worker stopped".into(),
                    )),
                );
            }
            WorkerEvent::Ready(fresh) => {
                let c = self.compaction.take().expect("checked above");
                let result = self.swap(&c, fresh);
                self.finish(c, result);
            }
        }
    }

    /// Start another catch-up round, or ask for the fresh file when few keys are left.
    fn next_round(&mut self) {
        let c = self
            .compaction
            .as_mut()
            .expect("called during a compaction");
        // At least one catch-up round runs when anything changed during the copy: the first
        // commit to the freshly written file is the slow one (it warms the file's cache and
        // records its allocator state), and it must not fall in the final pause.
        let enough =
            c.changed.is_empty() || (c.rounds > 0 && c.changed.len() <= c.config.final_keys);
        if enough || c.rounds >= c.config.max_rounds {
            let _ = c.commands.send(WorkerCommand::HandOver);
            return;
        }
        let snapshot = match self.store.as_ref().map(|s| s.snapshot()) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                let c = self.compaction.take().expect("checked above");
                self.finish(c, Err(e.into()));
                return;
            }
            None => {
                let c = self.compaction.take().expect("checked above");
                self.finish(c, Err(MaintenanceError::Unavailable("table closed".into())));
                return;
            }
        };
        let keys: Vec<Vec<u8>> = std::mem::take(&mut c.changed).into_iter().collect();
        c.rounds += 1;
        let _ = c.commands.send(WorkerCommand::CatchUp { keys, snapshot });
    }

    /// The final pause: copy the last changed keys from the live file, commit, swap.
    fn swap(
        &mut self,
        c: &OnlineCompaction<S>,
        mut fresh: S,
    ) -> Result<CompactReport, MaintenanceError> {
        let paused = Instant::now();
        let hook = c.config.hook.as_ref();
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| MaintenanceError::Unavailable("table closed".into()))?;
        let keys: Vec<Vec<u8>> = c.changed.iter().cloned().collect();
        run_hook(hook, Step::FinalCopy)?;
        copy_keys(&LiveStore(&*store), &keys, &mut fresh)?;
        let elapsed = paused.elapsed();
        if elapsed > c.config.pause_limit {
            return Err(MaintenanceError::Abandoned(format!(
                "final pause reached {} ms, over the {} ms limit",
                elapsed.as_millis(),
                c.config.pause_limit.as_millis()
            )));
        }
        run_hook(hook, Step::Swap)?;
        let records = fresh.counters().records;
        if let Err(e) = store.swap_in(fresh) {
            // The rename may have happened before the failure (a failed directory fsync): then
            // the table path holds the fresh file, which has every acknowledged write, and the
            // old store writes to an unlinked file. Serve what is at the table path.
            if !c.fresh_path.exists() {
                tracing::warn!(table = self.table, error = %e, "swap failed after the rename; reopening the table file");
                self.reopen_after_swap_failure();
            }
            return Err(MaintenanceError::Io(e.to_string()));
        }
        let pause = paused.elapsed();
        self.shared.publish_counters(store.counters());
        Ok(CompactReport {
            bytes_before: c.bytes_before,
            bytes_after: file_len(&self.path),
            records,
            duration: c.started.elapsed(),
            max_pause: pause,
            catch_up_rounds: c.rounds,
        })
    }

    /// Close the store and open the table path again.
    fn reopen_after_swap_failure(&mut self) {
        if let Some(store) = self.store.take()
            && let Err(e) = store.close()
        {
            tracing::warn!(table = self.table, error = %e, "closing the replaced file failed");
        }
        match S::open(&self.path, &self.config.store) {
            Ok(store) => {
                self.shared.publish_counters(store.counters());
                self.store = Some(store);
            }
            Err(e) => {
                tracing::error!(table = self.table, error = %e, "table file does not reopen after a failed swap");
                self.shared
                    .set_status(TableStatus::Unavailable(e.to_string()));
            }
        }
    }

    fn finish(&mut self, c: OnlineCompaction<S>, result: Result<CompactReport, MaintenanceError>) {
        let OnlineCompaction {
            commands,
            worker,
            reply,
            fresh_path,
            cancel,
            status_before,
            config,
            ..
        } = c;
        cancel.store(true, Ordering::Relaxed);
        // The worker is idle (waiting for a command) or has exited: closing its command
        // channel ends it, and joining closes its copy of the fresh file before removal.
        drop(commands);
        if let Some(worker) = worker {
            let _ = worker.join();
        }
        if result.is_err() {
            let _ = std::fs::remove_file(&fresh_path);
        }
        // A status set while compacting (corruption found, table unavailable) wins.
        if self.shared.status() == TableStatus::Compacting {
            self.shared.set_status(status_before);
        }
        if let Err(e) = &result {
            tracing::warn!(table = self.table, error = %e, "online compaction did not complete");
        }
        // Whatever the config holds (a test hook may hold a handle to this very owner) goes
        // before the reply: once the caller has its answer it may drop its own handle, and
        // the last handle must never be dropped on the owner thread (it would join itself).
        drop(config);
        let _ = reply.send(result);
    }
}

impl<S: TableStore> OnlineCompaction<S> {
    /// Ask the worker to stop at its next check; the attempt then ends through the owner's
    /// loop like any failed one (the worker is not waited for here: it may be waiting for the
    /// owner).
    pub(crate) fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// Cancel a compaction at shutdown and wait for its worker, so the table file can be closed.
pub(crate) fn abandon<S: TableStore>(c: OnlineCompaction<S>, why: &str) {
    c.cancel.store(true, Ordering::Relaxed);
    let OnlineCompaction {
        commands,
        worker,
        reply,
        fresh_path,
        events,
        config,
        ..
    } = c;
    drop(commands);
    drop(events);
    drop(config);
    if let Some(worker) = worker {
        let _ = worker.join();
    }
    let _ = std::fs::remove_file(&fresh_path);
    let _ = reply.send(Err(MaintenanceError::Abandoned(why.to_string())));
}
