//! The owner thread: [`spawn`] starts it; [`OwnerThread::run`] drains the bounded channel,
//! serves reads at once, commits the writes drained together in one transaction (group
//! commit, adaptive: see [`OwnerThread::gather_writers`]), and dispatches maintenance
//! commands, driving an online compaction between them. This thread alone writes the table's
//! status, through its [`TableFile`].

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvError, Sender, bounded, select};
use store_core::{
    IntegrityError, OpenError, Pacer, ScrubError, StoreOptions, StoreSnapshot, TableStore,
};

use super::command::{Command, FileId, Maintenance, ReadJob, Reply, WriteJob};
use super::commit;
use super::file::{TableFile, status_after_open_error};
pub use super::journal::JournalConfig;
use super::watched::Watched;
use crate::error::{CallError, MaintenanceError, panic_text};
use crate::online::{OnlineCompaction, OnlineConfig, Progress, WorkerEvent};
use crate::report::CompactReport;
use crate::shared::{Publisher, Shared, TableStatus};

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
    /// The table's change log. With one, a write is acknowledged once its group is fsynced
    /// in the log, and the table file commits lazily (replayed from the log at open).
    pub journal: Option<JournalConfig>,
    /// The I/O pacer of the maintenance jobs: the owner reports each commit's latency to it
    /// (what its `auto` rate feeds on), and its online compactions and the freeing of the
    /// files they replace are paced by it. Shared by every owner of a data dir.
    pub pacer: Arc<Pacer>,
}

impl Default for OwnerConfig {
    fn default() -> Self {
        OwnerConfig {
            queue_depth: 1024,
            max_batch: 512,
            store: StoreOptions::default(),
            corruption_reports: None,
            journal: None,
            pacer: Arc::new(Pacer::default()),
        }
    }
}

/// Start the owner thread of `table`, whose file at `path` opened as `opened` (or not: the
/// owner then comes up with the status saying why). Returns the command channel, the state
/// the owner publishes, and the thread.
pub(super) fn spawn<S: TableStore>(
    table: &'static str,
    path: &Path,
    config: OwnerConfig,
    opened: Result<S, OpenError>,
) -> (Sender<Command>, Arc<Shared>, JoinHandle<()>) {
    let (store, status) = match opened {
        Ok(store) => (Some(store), TableStatus::Ok),
        Err(e) => {
            tracing::error!(table, error = %e, "table did not open");
            (None, status_after_open_error(&e))
        }
    };
    let (sender, inbox) = bounded(config.queue_depth);
    // Every state a restore can fix is reported, so that automatic recovery sees it.
    let needs_restore = status.needs_restore();
    let publisher = Publisher::new(
        table,
        path.to_path_buf(),
        status,
        config.corruption_reports.clone(),
        config.store.cache_bytes as u64,
    );
    if needs_restore {
        publisher.send_report();
    }
    let shared = publisher.shared().clone();
    let file = TableFile::new(
        table,
        path.to_path_buf(),
        config.store.clone(),
        store,
        publisher,
        config.journal.clone(),
    );
    let owner = OwnerThread {
        table,
        pacer: config.pacer,
        max_batch: config.max_batch,
        file,
        compaction: None,
        last_group: 0,
    };
    let thread = std::thread::Builder::new()
        .name(format!("owner-{table}"))
        .spawn(move || owner.run(inbox))
        .expect("spawning an owner thread");
    (sender, shared, thread)
}

/// The owner thread's state.
struct OwnerThread<S: TableStore> {
    table: &'static str,
    /// The maintenance I/O pacer ([`OwnerConfig::pacer`]).
    pacer: Arc<Pacer>,
    /// Most write commands committed together ([`OwnerConfig::max_batch`]).
    max_batch: usize,
    /// The table file and the status published about it.
    file: TableFile<S>,
    /// The online compaction in progress, if any.
    compaction: Option<Running<S>>,
    /// Write commands in the previous group, the writers [`Self::gather_writers`] waits for.
    last_group: usize,
}

/// An online compaction in progress and what the owner keeps for its end.
struct Running<S: TableStore> {
    compaction: OnlineCompaction<S>,
    reply: Reply<CompactReport>,
    /// The table's status before the compaction, put back when it ends (a degraded table
    /// stays degraded).
    status_before: TableStatus,
}

impl<S: TableStore> OwnerThread<S> {
    fn run(mut self, inbox: Receiver<Command>) {
        let mut pending: Vec<Command> = Vec::new();
        loop {
            self.file.try_reopen();
            if self.file.sync_due().is_some_and(|at| at <= Instant::now()) {
                self.file.sync();
            }
            let worker_events = self.compaction.as_ref().map(|r| r.compaction.events());
            let retry_at = match (self.file.retry_at(), self.file.sync_due()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let first = match &worker_events {
                Some(events) => select! {
                    recv(inbox) -> cmd => cmd.ok(),
                    recv(events) -> event => {
                        self.on_worker_event(event);
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
            while pending.len() < self.max_batch {
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
        if let Some(running) = self.compaction.take() {
            running.compaction.end(false);
            let why = "the owner is shutting down".to_string();
            let _ = running.reply.send(Err(MaintenanceError::Abandoned(why)));
        }
        self.file.close();
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
        while pending.len() < self.last_group.min(self.max_batch) {
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
                Command::Read(job) => self.serve_read(job),
                Command::Maintenance(m) => {
                    self.commit_group(std::mem::take(&mut writes));
                    self.serve_maintenance(m);
                }
            }
        }
        self.commit_group(writes);
    }

    /// Run a read job against the store, watching for corruption: if the store met any (or
    /// the job's result is one), the table is reported corrupted before the caller is
    /// answered, with [`CallError::Corrupted`] whatever the job made of the error.
    fn serve_read(&mut self, mut job: Box<dyn ReadJob>) {
        let Some(store) = self.file.store() else {
            job.finish(Err(self.file.unavailable()));
            return;
        };
        let view = Watched {
            inner: store,
            corrupted: RefCell::new(None),
        };
        let ran = catch_unwind(AssertUnwindSafe(|| job.run(&view)));
        // Corruption the store met, or that the job's own result reports.
        let corrupted = view
            .corrupted
            .into_inner()
            .or_else(|| ran.as_ref().ok().cloned().flatten());
        if let Some(detail) = &corrupted {
            self.file.report_corruption(detail.clone());
        }
        match (ran, corrupted) {
            (Err(panic), _) => {
                tracing::error!(
                    table = self.table,
                    panic = panic_text(&panic),
                    "read job panicked"
                );
                // Dropped unanswered: the caller sees its reply channel close (a panic).
                drop(job);
            }
            (Ok(_), Some(detail)) => job.finish(Err(CallError::Corrupted(detail))),
            (Ok(_), None) => job.finish(Ok(())),
        }
    }

    /// Run `jobs` in one write transaction and commit it durably; acknowledge each job only
    /// after the commit returned. A failed commit changes the table's status (corrupted, or
    /// closed and reopened after an I/O error) before the jobs hear of it.
    fn commit_group(&mut self, mut jobs: Vec<Box<dyn WriteJob>>) {
        if jobs.is_empty() {
            return;
        }
        let changed: Option<&mut BTreeSet<Vec<u8>>> =
            self.compaction.as_mut().map(|r| r.compaction.changed());
        let started = Instant::now();
        let outcome = match self.file.store_and_journal() {
            Some((store, journal)) => {
                commit::commit(self.table, store, journal, changed, &mut jobs)
            }
            None => Err(self.file.unavailable()),
        };
        if outcome.is_ok() {
            let latency = started.elapsed();
            self.pacer.observe_commit(latency);
            self.file.shared().count_commit(latency);
        }
        match &outcome {
            Ok(()) => {
                self.file.publish_counters();
                self.file.publish_log_progress();
            }
            Err(CallError::Corrupted(detail)) => {
                self.file.report_corruption(detail.clone());
            }
            // Jobs only fail through their batch: this is the store's own failure (a write or
            // fsync refused, a full disk), which latches redb.
            Err(CallError::Storage(source)) => self.close_after_io_error(&**source),
            Err(_) => {}
        }
        for job in jobs {
            job.finish(outcome.clone());
        }
    }

    /// Close the store after a storage failure and start reopening it. An online compaction
    /// is cancelled: it ends at its worker's next event, finding the store closed. Until then
    /// its snapshot keeps the old file open, and reopening waits (redb locks the file).
    fn close_after_io_error(&mut self, cause: &dyn std::error::Error) {
        if let Some(running) = &self.compaction {
            running.compaction.cancel();
        }
        self.file.close_after_io_error(cause);
    }

    fn serve_maintenance(&mut self, m: Maintenance) {
        match m {
            Maintenance::Snapshot(reply) => {
                let result = match self.file.store() {
                    Some(store) => store
                        .snapshot()
                        .map(|s| Box::new(s) as Box<dyn StoreSnapshot>)
                        .map_err(MaintenanceError::from),
                    None => Err(MaintenanceError::Unavailable(
                        self.file.status().to_string(),
                    )),
                };
                let _ = reply.send(result);
            }
            Maintenance::CompactInPlace(reply) => {
                let _ = reply.send(self.compact_in_place());
            }
            Maintenance::CompactOnline(config, reply) => self.start_online(config, reply),
            Maintenance::CheckIntegrity(reply) => {
                let _ = reply.send(self.check_integrity());
            }
            Maintenance::Reopen(reply) => {
                let _ = reply.send(self.file.reopen_on_request());
            }
            Maintenance::ScrubSnapshot(reply) => {
                // The scrub reads the header on disk: it must name the latest commit.
                self.file.sync();
                let _ = reply.send(self.scrub_snapshot());
            }
            Maintenance::PruneLog { keep_after, reply } => {
                let _ = reply.send(self.file.prune_log(keep_after));
            }
            Maintenance::ScrubFound {
                detail,
                file,
                reply,
            } => {
                let current = self.file.identity().ok();
                let still_served = current == Some(file) && self.file.store().is_some();
                if still_served {
                    self.file.report_corruption(detail);
                }
                let _ = reply.send(Ok(still_served));
            }
            Maintenance::Replace(request, reply) => {
                let result = if self.compaction.is_some() {
                    Err(MaintenanceError::Busy("online compaction"))
                } else {
                    self.file.replace(request)
                };
                let _ = reply.send(result);
            }
        }
    }

    fn compact_in_place(&mut self) -> Result<CompactReport, MaintenanceError> {
        if self.compaction.is_some() {
            return Err(MaintenanceError::Busy("online compaction"));
        }
        let started = Instant::now();
        let file_bytes = |file: &TableFile<S>| file.shared().metrics().file_bytes;
        let bytes_before = file_bytes(&self.file);
        let records = self.file.compact_in_place()?;
        let duration = started.elapsed();
        Ok(CompactReport {
            bytes_before,
            bytes_after: file_bytes(&self.file),
            records,
            duration,
            max_pause: duration,
            catch_up_rounds: 0,
            copy: Duration::ZERO,
            paused_at: Duration::ZERO,
        })
    }

    /// A snapshot of the served file and that file's identity, read together between two
    /// commits.
    fn scrub_snapshot(&self) -> Result<(Box<dyn StoreSnapshot>, FileId), MaintenanceError> {
        let Some(store) = self.file.store() else {
            return Err(MaintenanceError::Unavailable(
                self.file.status().to_string(),
            ));
        };
        let snapshot = store.scrub_snapshot().map_err(|e| match e {
            ScrubError::Corrupted(detail) => MaintenanceError::Corrupted(detail),
            other => MaintenanceError::Storage(Arc::new(other)),
        })?;
        let file = self
            .file
            .identity()
            .map_err(|e| MaintenanceError::io("stat the table file", e))?;
        Ok((Box::new(snapshot), file))
    }

    fn check_integrity(&mut self) -> Result<(), MaintenanceError> {
        // The check reads the file as it is on disk: the lazy commits first.
        self.file.sync();
        let Some(store) = self.file.store_mut() else {
            return Err(MaintenanceError::Unavailable("table is not open".into()));
        };
        match store.check_integrity() {
            Ok(()) => Ok(()),
            Err(IntegrityError::Corrupted(detail)) => {
                self.file.report_corruption(detail.clone());
                Err(MaintenanceError::Corrupted(detail))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Begin an online compaction (see [`crate::online`]); the table is `Compacting` until it
    /// ends.
    fn start_online(&mut self, config: OnlineConfig, reply: Reply<CompactReport>) {
        if self.compaction.is_some() {
            let _ = reply.send(Err(MaintenanceError::Busy("online compaction")));
            return;
        }
        let status_before = self.file.status();
        let Some(store) = self.file.store() else {
            let _ = reply.send(Err(MaintenanceError::Unavailable(
                status_before.to_string(),
            )));
            return;
        };
        // Copying a table known to be damaged would only spread the damage.
        if let TableStatus::Corrupted(detail) = &status_before {
            let _ = reply.send(Err(MaintenanceError::Corrupted(detail.clone())));
            return;
        }
        let pacer = self.pacer.clone();
        match OnlineCompaction::start(self.table, store, self.file.options(), config, pacer) {
            Ok(compaction) => {
                self.file.set_status(TableStatus::Compacting);
                self.compaction = Some(Running {
                    compaction,
                    reply,
                    status_before,
                });
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Hand the worker's event to the compaction and do what it asks.
    fn on_worker_event(&mut self, event: Result<WorkerEvent<S>, RecvError>) {
        let Some(mut running) = self.compaction.take() else {
            return;
        };
        let result = match running.compaction.on_event(event, self.file.store_mut()) {
            Progress::Running => {
                self.compaction = Some(running);
                return;
            }
            Progress::Over(result) => result,
            Progress::ReopenThenOver(error) => {
                self.file.reopen_after_swap_failure();
                Err(error)
            }
        };
        if result.is_ok() {
            // Swapped in: the counters of the fresh file.
            self.file.publish_counters();
        }
        let Running {
            compaction,
            reply,
            status_before,
        } = running;
        compaction.end(result.is_ok());
        // A status set while compacting (corruption found, table unavailable) wins.
        if self.file.status() == TableStatus::Compacting {
            self.file.set_status(status_before);
        }
        if let Err(e) = &result {
            tracing::warn!(table = self.table, error = %e, "online compaction did not complete");
        }
        let _ = reply.send(result);
    }
}
