//! The generic owner: one named thread per table that owns its store, serves commands from a
//! bounded channel, commits queued writes together (group commit), and runs the maintenance
//! commands (metrics, online and in-place compaction, snapshots, file replacement, integrity).
//!
//! The thread's loop is in [`OwnerThread::run`]; online compaction is a state machine driven
//! by the same loop (see [`crate::online`]) so that the table keeps being served while a
//! worker thread copies it.

use std::any::Any;
use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, select};
use store_core::{
    IntegrityError, KeyRange, ReadError, ReadView, Record, StoreOptions, StoreSnapshot, TableStore,
    WriteBatch, WriteError,
};

use crate::error::{CallError, MaintenanceError};
use crate::online::{self, OnlineCompaction, OnlineConfig, WorkerEvent};
use crate::replace;
use crate::shared::{Shared, TableStatus};

/// Longest an owner waits for the writers of its previous commit before committing fewer
/// writes: a fraction of one fsync (0.4-8 ms here).
const GROUP_WAIT: Duration = Duration::from_micros(300);

/// How an owner thread runs.
#[derive(Debug, Clone)]
pub struct OwnerConfig {
    /// Capacity of the command channel; senders block when it is full (backpressure).
    pub queue_depth: usize,
    /// Most write commands committed together in one transaction.
    pub max_batch: usize,
    /// How the table file is opened.
    pub store: StoreOptions,
    /// Where corruption found at run time (or at open) is reported, by table name.
    pub corruption_reports: Option<Sender<&'static str>>,
}

impl Default for OwnerConfig {
    fn default() -> Self {
        OwnerConfig {
            queue_depth: 1024,
            max_batch: 512,
            store: StoreOptions::default(),
            corruption_reports: None,
        }
    }
}

/// A write job: runs inside the owner's open write transaction; its reply is sent only after
/// the transaction commits durably. It may run more than once (when another job of the same
/// batch panics, the batch is rolled back and the others re-run), so it must not have side
/// effects outside the batch.
pub(crate) trait WriteJob: Send {
    fn run(&mut self, batch: &mut dyn WriteBatch) -> Result<(), WriteError>;
    fn finish(self: Box<Self>, outcome: Result<(), CallError>);
}

struct TypedWriteJob<R, F> {
    f: F,
    result: Option<R>,
    reply: Sender<Result<R, CallError>>,
}

impl<R, F> WriteJob for TypedWriteJob<R, F>
where
    R: Send,
    F: FnMut(&mut dyn WriteBatch) -> Result<R, WriteError> + Send,
{
    fn run(&mut self, batch: &mut dyn WriteBatch) -> Result<(), WriteError> {
        self.result = Some((self.f)(batch)?);
        Ok(())
    }

    fn finish(self: Box<Self>, outcome: Result<(), CallError>) {
        let reply = match (outcome, self.result) {
            (Ok(()), Some(r)) => Ok(r),
            (Ok(()), None) => Err(CallError::Panicked("write job produced no result".into())),
            (Err(e), _) => Err(e),
        };
        // The caller may have gone away; that is a normal event.
        let _ = self.reply.send(reply);
    }
}

type ReadFn = Box<dyn FnOnce(Result<&dyn ReadView, CallError>) + Send>;

/// What an owner thread receives.
pub(crate) enum Command {
    Read(ReadFn),
    Write(Box<dyn WriteJob>),
    Maintenance(Maintenance),
}

/// Maintenance commands every owner answers.
pub(crate) enum Maintenance {
    Snapshot(Sender<Result<Box<dyn StoreSnapshot>, MaintenanceError>>),
    CompactInPlace(Sender<Result<CompactReport, MaintenanceError>>),
    CompactOnline(
        OnlineConfig,
        Sender<Result<CompactReport, MaintenanceError>>,
    ),
    CheckIntegrity(Sender<Result<(), MaintenanceError>>),
    Replace(
        ReplaceRequest,
        Sender<Result<ReplaceReport, MaintenanceError>>,
    ),
    Reopen(Sender<Result<(), MaintenanceError>>),
}

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CompactReport {
    /// File size before.
    pub bytes_before: u64,
    /// File size after.
    pub bytes_after: u64,
    /// Live records after.
    pub records: u64,
    /// Wall time of the whole compaction.
    #[serde(with = "duration_micros")]
    pub duration: Duration,
    /// Longest time the table did not serve operations.
    #[serde(with = "duration_micros")]
    pub max_pause: Duration,
    /// Catch-up rounds run (online only).
    pub catch_up_rounds: u32,
}

/// Replace the table file with another file (restore from a backup, or an empty table).
#[derive(Debug, Clone)]
pub struct ReplaceRequest {
    /// A complete table file in the same directory as the table, or `None` to start empty.
    pub replacement: Option<PathBuf>,
    /// Where the current file is moved (never deleted). Must be on the same file system.
    pub quarantine: PathBuf,
    /// If set, the reopened table must hold exactly this many records.
    pub expected_records: Option<u64>,
    /// Serve the replacement as [`TableStatus::Degraded`] with this detail (its data was
    /// lost) instead of ok.
    pub degraded: Option<String>,
}

/// What a replacement did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReplaceReport {
    /// Where the previous file went, if there was one.
    pub quarantined: Option<PathBuf>,
    /// Records in the table after the replacement.
    pub records: u64,
}

mod duration_micros {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_micros() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}

/// A write sent with [`OwnerHandle::submit`], not acknowledged yet.
#[derive(Debug)]
#[must_use = "a write is acknowledged only by waiting for it"]
pub struct PendingWrite<R> {
    reply: Receiver<Result<R, CallError>>,
}

impl<R> PendingWrite<R> {
    /// Wait until the write is durable (or failed).
    pub fn wait(self) -> Result<R, CallError> {
        self.reply.recv().unwrap_or(Err(CallError::Closed))
    }
}

/// A handle to one owner thread. Cheap to clone; the thread stops once every clone is dropped
/// (or [`OwnerHandle::close`] is called on the last one), after answering queued commands and
/// closing its file.
#[derive(Clone)]
pub struct OwnerHandle {
    // Field order matters: the sender must drop before the join guard, so that the thread
    // sees its channel close before the last handle waits for it.
    sender: Sender<Command>,
    shared: Arc<Shared>,
    _thread: Arc<JoinGuard>,
}

impl std::fmt::Debug for OwnerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerHandle")
            .field("table", &self.shared.table)
            .finish_non_exhaustive()
    }
}

struct JoinGuard(Option<JoinHandle<()>>);

impl Drop for JoinGuard {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            // The last handle may be dropped by a job running on the owner thread itself;
            // joining would deadlock, and the thread ends on its own once its loop returns.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl OwnerHandle {
    /// Start the owner of `table`, whose file is `path`, storing data with `S`.
    ///
    /// A file that does not open (corrupt, for example) does not fail the start: the owner
    /// comes up [`TableStatus::Unavailable`], answers every data command with
    /// [`CallError::Unavailable`], and can be brought back with a file replacement.
    pub fn start<S: TableStore>(
        table: &'static str,
        path: &Path,
        config: OwnerConfig,
    ) -> OwnerHandle {
        online::remove_leftovers(path);
        let (store, status) = match S::open(path, &config.store) {
            Ok(store) => (Some(store), TableStatus::Ok),
            Err(e) => {
                tracing::error!(table, error = %e, "table did not open");
                (None, status_after_open_error(&e))
            }
        };
        Self::spawn(table, path, config, store, status)
    }

    /// Start an owner around a store the caller opened (for example through a fault-injecting
    /// backend).
    pub fn start_with_store<S: TableStore>(
        table: &'static str,
        store: S,
        config: OwnerConfig,
    ) -> OwnerHandle {
        let path = store.path().to_path_buf();
        Self::spawn(table, &path, config, Some(store), TableStatus::Ok)
    }

    fn spawn<S: TableStore>(
        table: &'static str,
        path: &Path,
        config: OwnerConfig,
        store: Option<S>,
        status: TableStatus,
    ) -> OwnerHandle {
        let (sender, inbox) = bounded(config.queue_depth);
        let shared = Arc::new(Shared::new(
            table,
            path.to_path_buf(),
            config.corruption_reports.clone(),
        ));
        if let Some(store) = &store {
            shared.publish_counters(store.counters());
        }
        // Every state a restore can fix is reported, so that automatic recovery sees it.
        let needs_restore = status.needs_restore();
        shared.set_status(status);
        if needs_restore && let Some(reports) = &config.corruption_reports {
            let _ = reports.try_send(table);
        }
        let owner = OwnerThread {
            table,
            path: path.to_path_buf(),
            config,
            store,
            shared: shared.clone(),
            compaction: None,
            last_group: 0,
            reopen: None,
        };
        let thread = std::thread::Builder::new()
            .name(format!("owner-{table}"))
            .spawn(move || owner.run(inbox))
            .expect("spawning an owner thread");
        OwnerHandle {
            sender,
            shared,
            _thread: Arc::new(JoinGuard(Some(thread))),
        }
    }

    /// The table this owner serves.
    pub fn table(&self) -> &'static str {
        self.shared.table
    }

    /// State shared with the owner thread without a round trip: counters, status, file path.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Commands waiting in the queue, not yet taken by the owner thread.
    pub fn queued_commands(&self) -> usize {
        self.sender.len()
    }

    fn send(&self, command: Command) -> Result<(), CallError> {
        self.sender.send(command).map_err(|_| CallError::Closed)
    }

    /// Run `f` against the committed state of the table, on the owner thread.
    pub fn read<R, F>(&self, f: F) -> Result<R, CallError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn ReadView) -> Result<R, ReadError> + Send + 'static,
    {
        let (tx, rx) = bounded(1);
        self.send(Command::Read(Box::new(move |view| {
            let _ = tx.send(view.and_then(|view| f(view).map_err(CallError::from)));
        })))?;
        // A dropped reply sender means the job panicked: an error, never a hang.
        let result = rx
            .recv()
            .unwrap_or_else(|_| Err(CallError::Panicked("read job panicked".into())));
        if let Err(CallError::Corrupted(detail)) = &result {
            self.shared.report_corruption(detail.clone());
        }
        result
    }

    /// Point read.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, CallError> {
        let key = key.to_vec();
        self.read(move |view| view.get(&key))
    }

    /// Ordered scan of at most `limit` records.
    pub fn scan(&self, range: KeyRange, limit: usize) -> Result<Vec<Record>, CallError> {
        self.read(move |view| view.scan(&range, limit))
    }

    /// Run `f` inside the owner's write transaction; returns after the commit that made its
    /// writes durable. Queued writes of concurrent callers share that commit (group commit).
    /// `f` may run more than once and must only touch the batch.
    pub fn write<R, F>(&self, f: F) -> Result<R, CallError>
    where
        R: Send + 'static,
        F: FnMut(&mut dyn WriteBatch) -> Result<R, WriteError> + Send + 'static,
    {
        self.submit(f)?.wait()
    }

    /// Send a write without waiting for it: the returned [`PendingWrite`] yields its result
    /// once the commit that made it durable returned. A client that keeps several writes in
    /// flight lets the owner put many of them in one commit (pipelining); each is still
    /// acknowledged only after it is durable. Writes of one handle commit in submission order.
    pub fn submit<R, F>(&self, f: F) -> Result<PendingWrite<R>, CallError>
    where
        R: Send + 'static,
        F: FnMut(&mut dyn WriteBatch) -> Result<R, WriteError> + Send + 'static,
    {
        let (tx, rx) = bounded(1);
        self.send(Command::Write(Box::new(TypedWriteJob {
            f,
            result: None,
            reply: tx,
        })))?;
        Ok(PendingWrite { reply: rx })
    }

    /// Durable put.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), CallError> {
        let (key, value) = (key.to_vec(), value.to_vec());
        self.write(move |b| b.put(&key, &value))
    }

    /// Durable delete; returns whether the key existed.
    pub fn delete(&self, key: &[u8]) -> Result<bool, CallError> {
        let key = key.to_vec();
        self.write(move |b| b.delete(&key))
    }

    fn maintenance<R>(
        &self,
        make: impl FnOnce(Sender<Result<R, MaintenanceError>>) -> Maintenance,
    ) -> Result<R, MaintenanceError> {
        let (tx, rx) = bounded(1);
        self.sender
            .send(Command::Maintenance(make(tx)))
            .map_err(|_| MaintenanceError::Closed)?;
        rx.recv().unwrap_or(Err(MaintenanceError::Closed))
    }

    /// A consistent read snapshot of the table, readable from any thread. While it lives it
    /// holds back page reuse in the table file, so drop it promptly.
    pub fn snapshot(&self) -> Result<Box<dyn StoreSnapshot>, MaintenanceError> {
        self.maintenance(Maintenance::Snapshot)
    }

    /// redb's exclusive in-place compaction: the table serves nothing until it ends.
    pub fn compact_in_place(&self) -> Result<CompactReport, MaintenanceError> {
        self.maintenance(Maintenance::CompactInPlace)
    }

    /// Online compaction by copy: the table keeps being served; see [`crate::online`].
    pub fn compact_online(&self, config: OnlineConfig) -> Result<CompactReport, MaintenanceError> {
        self.maintenance(|tx| Maintenance::CompactOnline(config, tx))
    }

    /// Verify every page checksum of the table file.
    pub fn check_integrity(&self) -> Result<(), MaintenanceError> {
        self.maintenance(Maintenance::CheckIntegrity)
    }

    /// Open the table file again if the table is not serving (it did not open, or an I/O
    /// error closed it); `Ok` once it serves.
    pub fn reopen(&self) -> Result<(), MaintenanceError> {
        self.maintenance(Maintenance::Reopen)
    }

    /// Replace the table file (restore): the current file gets a second name in quarantine,
    /// the replacement is renamed over the table path, and the table reopened. If the
    /// replacement does not open, the previous file is put back and keeps serving. The table
    /// path names a complete file at every instant (see `replace.rs`).
    pub fn replace(&self, request: ReplaceRequest) -> Result<ReplaceReport, MaintenanceError> {
        self.maintenance(|tx| Maintenance::Replace(request, tx))
    }

    /// Stop the owner: queued commands are answered and the file is closed before this
    /// returns (if this is the last handle).
    pub fn close(self) {
        drop(self);
    }
}

/// The owner thread's state.
pub(crate) struct OwnerThread<S: TableStore> {
    pub(crate) table: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) config: OwnerConfig,
    /// `None` while the table is unavailable (did not open, or mid-replacement).
    pub(crate) store: Option<S>,
    pub(crate) shared: Arc<Shared>,
    /// The online compaction in progress, if any.
    pub(crate) compaction: Option<OnlineCompaction<S>>,
    /// Write commands in the previous group, the writers [`Self::gather_writers`] waits for.
    pub(crate) last_group: usize,
    /// Set while the store is closed after an I/O error and waits to be opened again.
    reopen: Option<PendingReopen>,
}

/// The store was closed after an I/O error (redb refuses every later write until the file
/// is opened again); the owner retries opening it with a growing delay.
struct PendingReopen {
    /// The I/O error that closed it.
    cause: String,
    /// Failed attempts so far.
    attempts: u32,
    /// No attempt before this instant.
    next: Instant,
}

/// First delay between two attempts to reopen after an I/O error; doubled up to
/// [`REOPEN_MAX_DELAY`].
const REOPEN_FIRST_DELAY: Duration = Duration::from_millis(100);
const REOPEN_MAX_DELAY: Duration = Duration::from_secs(5);

/// The status of a table whose file did not open.
pub(crate) fn status_after_open_error(e: &store_core::OpenError) -> TableStatus {
    if e.is_corruption() {
        TableStatus::Corrupted(e.to_string())
    } else if e.is_missing() {
        TableStatus::Lost(e.to_string())
    } else {
        TableStatus::Unavailable(e.to_string())
    }
}

impl<S: TableStore> OwnerThread<S> {
    fn run(mut self, inbox: Receiver<Command>) {
        let mut pending: Vec<Command> = Vec::new();
        loop {
            self.try_reopen();
            let worker_events = self.compaction.as_ref().map(|c| c.events.clone());
            let retry_at = self.reopen.as_ref().map(|r| r.next);
            let first = match &worker_events {
                Some(events) => select! {
                    recv(inbox) -> cmd => cmd.ok(),
                    recv(events) -> event => {
                        match event {
                            Ok(event) => self.on_worker_event(event),
                            Err(_) => self.on_worker_event(WorkerEvent::Vanished),
                        }
                        continue;
                    }
                },
                None => match retry_at {
                    Some(at) => match inbox.recv_deadline(at) {
                        Ok(cmd) => Some(cmd),
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => None,
                    },
                    None => inbox.recv().ok(),
                },
            };
            let Some(first) = first else { break };
            pending.push(first);
            while pending.len() < self.config.max_batch {
                match inbox.try_recv() {
                    Ok(cmd) => pending.push(cmd),
                    Err(_) => break,
                }
            }
            self.gather_writers(&inbox, &mut pending);
            self.last_group = pending
                .iter()
                .filter(|c| matches!(c, Command::Write(_)))
                .count();
            self.process(&mut pending);
        }
        if let Some(compaction) = self.compaction.take() {
            online::abandon(compaction, "the owner is shutting down");
        }
        if let Some(store) = self.store.take()
            && let Err(e) = store.close()
        {
            tracing::warn!(table = self.table, error = %e, "closing the table file failed");
        }
        self.shared.set_status(TableStatus::Closed);
    }

    /// Adaptive group commit: when only writes are queued and fewer than the previous commit
    /// held, wait up to [`GROUP_WAIT`] for the writers of that commit to send their next write,
    /// so that they share one fsync instead of trickling into several. A lone writer (previous
    /// commit of one) never waits.
    fn gather_writers(&self, inbox: &Receiver<Command>, pending: &mut Vec<Command>) {
        let only_writes = |p: &Vec<Command>| p.iter().all(|c| matches!(c, Command::Write(_)));
        if self.last_group <= 1 || !only_writes(pending) {
            return;
        }
        let deadline = Instant::now() + GROUP_WAIT;
        while pending.len() < self.last_group.min(self.config.max_batch) {
            match inbox.recv_deadline(deadline) {
                Ok(cmd) => {
                    let is_write = matches!(cmd, Command::Write(_));
                    pending.push(cmd);
                    if !is_write {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }

    /// Serve a drained run of commands. Reads are answered at once from the committed state;
    /// the writes share one commit; a maintenance command first commits the writes queued
    /// before it. A caller sees its own writes once they are acknowledged (a read sent while
    /// a pipelined write of the same caller is still pending may not see it).
    fn process(&mut self, commands: &mut Vec<Command>) {
        let mut writes: Vec<Box<dyn WriteJob>> = Vec::new();
        for command in commands.drain(..) {
            match command {
                Command::Write(job) => writes.push(job),
                // The writes queued so far are not acknowledged yet, so no caller can have seen
                // them: the read is served from the committed state without waiting for their
                // fsync (and without splitting their group into several commits).
                Command::Read(f) => self.serve_read(f),
                Command::Maintenance(m) => {
                    self.commit_group(std::mem::take(&mut writes));
                    self.serve_maintenance(m);
                }
            }
        }
        self.commit_group(writes);
    }

    fn serve_read(&mut self, f: ReadFn) {
        let view: Result<&dyn ReadView, CallError> = match &self.store {
            Some(store) => Ok(store),
            None => Err(self.unavailable()),
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(view))) {
            tracing::error!(
                table = self.table,
                panic = panic_text(&panic),
                "read job panicked"
            );
        }
    }

    pub(crate) fn unavailable(&self) -> CallError {
        CallError::Unavailable {
            table: self.table,
            status: self.shared.status().to_string(),
        }
    }

    /// Run `jobs` in one write transaction and commit it durably; acknowledge each job only
    /// after the commit returned. A job that panics is answered with an error and the batch is
    /// re-run without it.
    fn commit_group(&mut self, mut jobs: Vec<Box<dyn WriteJob>>) {
        if jobs.is_empty() {
            return;
        }
        if self.store.is_none() {
            let error = self.unavailable();
            for job in jobs {
                job.finish(Err(error.clone()));
            }
            return;
        }
        loop {
            let outcome = self.try_batch(&mut jobs);
            match outcome {
                BatchOutcome::Committed => {
                    if let Some(store) = &self.store {
                        self.shared.publish_counters(store.counters());
                    }
                    for job in jobs {
                        job.finish(Ok(()));
                    }
                    return;
                }
                BatchOutcome::Failed(error) => {
                    for job in jobs {
                        job.finish(Err(error.clone()));
                    }
                    match &error {
                        CallError::Corrupted(detail) => self.report_corruption(detail.clone()),
                        // Jobs only fail through their batch: this is the store's own failure
                        // (a write or fsync refused, a full disk), which latches redb.
                        CallError::Storage(detail) => self.close_after_io_error(detail),
                        _ => {}
                    }
                    return;
                }
                BatchOutcome::Panicked(index, text) => {
                    let job = jobs.remove(index);
                    job.finish(Err(CallError::Panicked(text)));
                    if jobs.is_empty() {
                        return;
                    }
                }
            }
        }
    }

    fn try_batch(&mut self, jobs: &mut [Box<dyn WriteJob>]) -> BatchOutcome {
        let tracking = self.compaction.as_mut().map(|c| &mut c.changed);
        let store = self.store.as_mut().expect("checked by commit_group");
        let batch = match store.begin_batch() {
            Ok(b) => b,
            Err(e) => return BatchOutcome::Failed(e.into()),
        };
        let mut batch = TrackingBatch {
            inner: batch,
            changed: tracking,
        };
        for (index, job) in jobs.iter_mut().enumerate() {
            match catch_unwind(AssertUnwindSafe(|| job.run(&mut batch))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    batch.inner.abort();
                    return BatchOutcome::Failed(e.into());
                }
                Err(panic) => {
                    batch.inner.abort();
                    let text = panic_text(&panic);
                    tracing::error!(table = self.table, panic = %text, "write job panicked; batch re-run without it");
                    return BatchOutcome::Panicked(index, text);
                }
            }
        }
        let TrackingBatch { inner, changed: _ } = batch;
        match inner.commit() {
            Ok(()) => BatchOutcome::Committed,
            Err(e) => BatchOutcome::Failed(e.into()),
        }
    }

    pub(crate) fn report_corruption(&mut self, detail: String) {
        self.shared.report_corruption(detail);
    }

    fn serve_maintenance(&mut self, m: Maintenance) {
        match m {
            Maintenance::Snapshot(reply) => {
                let result = match &self.store {
                    Some(store) => store
                        .snapshot()
                        .map(|s| Box::new(s) as Box<dyn StoreSnapshot>)
                        .map_err(MaintenanceError::from),
                    None => Err(MaintenanceError::Unavailable(
                        self.shared.status().to_string(),
                    )),
                };
                let _ = reply.send(result);
            }
            Maintenance::CompactInPlace(reply) => {
                let result = self.compact_in_place();
                let _ = reply.send(result);
            }
            Maintenance::CompactOnline(config, reply) => {
                if self.compaction.is_some() {
                    let _ = reply.send(Err(MaintenanceError::Busy("online compaction")));
                } else {
                    online::start(self, config, reply);
                }
            }
            Maintenance::CheckIntegrity(reply) => {
                let result = self.check_integrity();
                let _ = reply.send(result);
            }
            Maintenance::Reopen(reply) => {
                let _ = reply.send(self.reopen_on_request());
            }
            Maintenance::Replace(request, reply) => {
                let result = if self.compaction.is_some() {
                    Err(MaintenanceError::Busy("online compaction"))
                } else {
                    self.replace(request)
                };
                let _ = reply.send(result);
            }
        }
    }

    fn compact_in_place(&mut self) -> Result<CompactReport, MaintenanceError> {
        if self.compaction.is_some() {
            return Err(MaintenanceError::Busy("online compaction"));
        }
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| MaintenanceError::Unavailable("table is not open".into()))?;
        let started = Instant::now();
        let bytes_before = file_len(&self.path);
        let status_before = self.shared.status();
        self.shared.set_status(TableStatus::Compacting);
        let result = store.compact_in_place();
        self.shared.set_status(status_before);
        result?;
        let duration = started.elapsed();
        Ok(CompactReport {
            bytes_before,
            bytes_after: file_len(&self.path),
            records: store.counters().records,
            duration,
            max_pause: duration,
            catch_up_rounds: 0,
        })
    }

    fn check_integrity(&mut self) -> Result<(), MaintenanceError> {
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| MaintenanceError::Unavailable("table is not open".into()))?;
        match store.check_integrity() {
            Ok(()) => Ok(()),
            Err(IntegrityError::Corrupted(detail)) => {
                self.report_corruption(detail.clone());
                Err(MaintenanceError::Corrupted(detail))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn replace(&mut self, request: ReplaceRequest) -> Result<ReplaceReport, MaintenanceError> {
        let io = |what: &str, e: std::io::Error| MaintenanceError::Io(format!("{what}: {e}"));
        if let Some(store) = self.store.take()
            && let Err(e) = store.close()
        {
            tracing::warn!(table = self.table, error = %e, "closing before replacement failed");
        }
        self.reopen = None;
        let quarantined = match replace::keep_aside(&self.path, &request.quarantine) {
            Ok(q) => q,
            Err(e) => {
                self.reopen_after_failed_replace(None);
                return Err(io("keeping the current file in quarantine", e));
            }
        };
        let put_in = match &request.replacement {
            Some(replacement) => store_core::fsutil::replace_file(replacement, &self.path)
                .map_err(|e| io("renaming the replacement in", e)),
            None => S::create_empty(&self.path, &self.config.store)
                .map_err(|e| MaintenanceError::Replacement(e.to_string())),
        };
        if let Err(e) = put_in {
            self.reopen_after_failed_replace(quarantined.as_deref());
            return Err(e);
        }
        let store = match S::open(&self.path, &self.config.store) {
            Ok(store) => store,
            Err(e) => {
                self.reopen_after_failed_replace(quarantined.as_deref());
                return Err(MaintenanceError::Replacement(e.to_string()));
            }
        };
        let records = store.counters().records;
        if let Some(expected) = request.expected_records
            && expected != records
        {
            drop(store);
            self.reopen_after_failed_replace(quarantined.as_deref());
            return Err(MaintenanceError::Replacement(format!(
                "replacement holds {records} records, expected {expected}"
            )));
        }
        self.shared.publish_counters(store.counters());
        self.store = Some(store);
        self.shared.set_status(match request.degraded {
            Some(detail) => TableStatus::Degraded(detail),
            None => TableStatus::Ok,
        });
        Ok(ReplaceReport {
            quarantined,
            records,
        })
    }

    /// Put the previous file back (from quarantine) after a failed replacement, and reopen it.
    fn reopen_after_failed_replace(&mut self, quarantined: Option<&Path>) {
        if let Some(q) = quarantined
            && let Err(e) = replace::put_back(&self.path, q)
        {
            tracing::error!(table = self.table, error = %e, "cannot put the original file back");
        }
        match S::open(&self.path, &self.config.store) {
            Ok(store) => {
                self.shared.publish_counters(store.counters());
                self.store = Some(store);
                self.shared.set_status(TableStatus::Ok);
            }
            Err(e) => self.shared.set_status(status_after_open_error(&e)),
        }
    }

    /// After a storage failure of a commit: close the store (redb answers every later write
    /// with "Previous I/O error occurred") and open the file again, now or later.
    fn close_after_io_error(&mut self, cause: &str) {
        tracing::warn!(table = self.table, error = %cause, "I/O error: closing and reopening the table file");
        // The attempt ends at its worker's next event, finding the store closed. Until then its
        // snapshot keeps the old file open, and reopening waits (redb locks the file).
        if let Some(compaction) = &self.compaction {
            compaction.cancel();
        }
        if let Some(store) = self.store.take() {
            // Closing a latched database may fail; its last durable commit is on disk anyway.
            let _ = store.close();
        }
        self.shared.set_status(TableStatus::Unavailable(format!(
            "reopening after an I/O error: {cause}"
        )));
        self.reopen = Some(PendingReopen {
            cause: cause.to_string(),
            attempts: 0,
            next: Instant::now(),
        });
        self.try_reopen();
    }

    /// One attempt to reopen after an I/O error, if one is pending and due.
    fn try_reopen(&mut self) {
        let Some(pending) = &mut self.reopen else {
            return;
        };
        if Instant::now() < pending.next {
            return;
        }
        // The file was fine before the failed write: no need to verify every page again.
        let options = StoreOptions {
            check_integrity_on_open: false,
            ..self.config.store.clone()
        };
        match S::open(&self.path, &options) {
            Ok(store) => {
                tracing::info!(
                    table = self.table,
                    attempts = pending.attempts + 1,
                    "table file reopened after an I/O error"
                );
                self.reopen = None;
                self.shared.publish_counters(store.counters());
                self.shared.count_reopen();
                self.store = Some(store);
                self.shared.set_status(TableStatus::Ok);
            }
            Err(e) if e.is_corruption() || e.is_missing() => {
                self.reopen = None;
                let status = status_after_open_error(&e);
                self.shared.report_for_restore(status);
            }
            Err(e) => {
                pending.attempts += 1;
                let delay = REOPEN_FIRST_DELAY
                    .saturating_mul(1 << pending.attempts.min(6))
                    .min(REOPEN_MAX_DELAY);
                pending.next = Instant::now() + delay;
                self.shared.set_status(TableStatus::Unavailable(format!(
                    "reopening after an I/O error ({}) failed {} times, retrying: {e}",
                    pending.cause, pending.attempts
                )));
            }
        }
    }

    /// The [`OwnerHandle::reopen`] command.
    fn reopen_on_request(&mut self) -> Result<(), MaintenanceError> {
        if self.store.is_some() {
            return Ok(());
        }
        self.reopen = None;
        match S::open(&self.path, &self.config.store) {
            Ok(store) => {
                self.shared.publish_counters(store.counters());
                self.store = Some(store);
                self.shared.set_status(TableStatus::Ok);
                Ok(())
            }
            Err(e) => {
                self.shared.set_status(status_after_open_error(&e));
                Err(if e.is_corruption() {
                    MaintenanceError::Corrupted(e.to_string())
                } else {
                    MaintenanceError::Unavailable(e.to_string())
                })
            }
        }
    }
}

enum BatchOutcome {
    Committed,
    Failed(CallError),
    Panicked(usize, String),
}

/// A write batch that records which keys it touched while an online compaction needs them.
struct TrackingBatch<'a, B> {
    inner: B,
    changed: Option<&'a mut BTreeSet<Vec<u8>>>,
}

impl<B: WriteBatch> WriteBatch for TrackingBatch<'_, B> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, WriteError> {
        self.inner.get(key)
    }

    fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<Record>, WriteError> {
        self.inner.scan(range, limit)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), WriteError> {
        if let Some(changed) = &mut self.changed {
            changed.insert(key.to_vec());
        }
        self.inner.put(key, value)
    }

    fn delete(&mut self, key: &[u8]) -> Result<bool, WriteError> {
        if let Some(changed) = &mut self.changed {
            changed.insert(key.to_vec());
        }
        self.inner.delete(key)
    }

    fn commit(self) -> Result<(), WriteError> {
        self.inner.commit()
    }

    fn abort(self) {
        self.inner.abort()
    }
}

pub(crate) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn panic_text(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}
