//! The client side of an owner: [`OwnerHandle`] starts the owner thread and sends it
//! commands (reads, writes, maintenance); [`PendingWrite`] is a write in flight. Every call
//! is a command on the owner's bounded channel and an answer on a channel of its own.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};
use store_core::{
    KeyRange, OnRead, Pacer, ReadError, ReadView, Record, ScrubError, ScrubStats, StoreSnapshot,
    TableStore, WriteBatch, WriteError,
};

use super::command::{Command, Maintenance, Reply, TypedReadJob, TypedWriteJob};
use super::thread::{self, OwnerConfig};
use crate::error::{CallError, MaintenanceError};
use crate::online::{OnlineConfig, remove_leftovers};
use crate::report::{CompactReport, ReplaceReport, ReplaceRequest};
use crate::shared::Shared;

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
    /// The I/O pacer this owner reports its commits to ([`OwnerConfig::pacer`]).
    pacer: Arc<Pacer>,
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
    /// comes up [`crate::TableStatus::Unavailable`] (or corrupted, or lost), answers every
    /// data command with [`CallError::Unavailable`], and can be brought back with a file
    /// replacement.
    pub fn start<S: TableStore>(
        table: &'static str,
        path: &Path,
        config: OwnerConfig,
    ) -> OwnerHandle {
        remove_leftovers(path, &config.pacer);
        let opened = S::open(path, &config.store);
        Self::spawn(table, path, config, opened)
    }

    /// Start an owner around a store the caller opened (for example through a fault-injecting
    /// backend).
    pub fn start_with_store<S: TableStore>(
        table: &'static str,
        store: S,
        config: OwnerConfig,
    ) -> OwnerHandle {
        let path = store.path().to_path_buf();
        Self::spawn(table, &path, config, Ok(store))
    }

    fn spawn<S: TableStore>(
        table: &'static str,
        path: &Path,
        config: OwnerConfig,
        opened: Result<S, store_core::OpenError>,
    ) -> OwnerHandle {
        let pacer = config.pacer.clone();
        let (sender, shared, thread) = thread::spawn(table, path, config, opened);
        OwnerHandle {
            sender,
            shared,
            pacer,
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

    /// The I/O pacer of this owner's maintenance, fed with its commit latencies.
    pub fn pacer(&self) -> &Arc<Pacer> {
        &self.pacer
    }

    /// Commands waiting in the queue, not yet taken by the owner thread.
    pub fn queued_commands(&self) -> usize {
        self.sender.len()
    }

    fn send(&self, command: Command) -> Result<(), CallError> {
        self.sender.send(command).map_err(|_| CallError::Closed)
    }

    /// Run `f` against the committed state of the table, on the owner thread.
    ///
    /// Corruption is the owner's to see: when the store meets some while `f` reads (whatever
    /// `f` made of the error), or `f` answers [`ReadError::Corrupted`], the owner thread
    /// reports the table corrupted before this returns [`CallError::Corrupted`].
    pub fn read<R, F>(&self, f: F) -> Result<R, CallError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn ReadView) -> Result<R, ReadError> + Send + 'static,
    {
        let (tx, rx) = bounded(1);
        self.send(Command::Read(Box::new(TypedReadJob {
            f: Some(f),
            result: None,
            reply: tx,
        })))?;
        // A dropped reply sender means the job panicked: an error, never a hang.
        rx.recv()
            .unwrap_or_else(|_| Err(CallError::Panicked("read job panicked".into())))
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
        make: impl FnOnce(Reply<R>) -> Maintenance,
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

    /// Verify every page checksum of the table file while the table keeps serving (see
    /// [`StoreSnapshot::scrub`]), on the calling thread. `on_read` is told the size of each
    /// read before it is made and cancels the scrub by returning false. Damage found is
    /// reported as the owner reports corruption met by a read (status corrupted, a report to
    /// automatic recovery), unless the table file was replaced meanwhile: then the scrub
    /// answers [`MaintenanceError::Cancelled`] and reports nothing.
    pub fn scrub(&self, on_read: OnRead) -> Result<ScrubStats, MaintenanceError> {
        let (snapshot, file) = self.maintenance(Maintenance::ScrubSnapshot)?;
        let outcome = snapshot.scrub(on_read);
        // The snapshot pins pages of the file: released before anything else is asked.
        drop(snapshot);
        match outcome {
            Ok(stats) => Ok(stats),
            Err(ScrubError::Corrupted(detail)) => {
                let reported = self.maintenance(|reply| Maintenance::ScrubFound {
                    detail: detail.clone(),
                    file,
                    reply,
                })?;
                if reported {
                    Err(MaintenanceError::Corrupted(detail))
                } else {
                    Err(MaintenanceError::Cancelled(
                        "the table file was replaced during the scrub",
                    ))
                }
            }
            Err(ScrubError::Cancelled) => Err(MaintenanceError::Cancelled("scrub cancelled")),
            Err(other) => Err(MaintenanceError::Storage(Arc::new(other))),
        }
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

    /// Delete the change-log segments no restore needs: those whose groups are all at or
    /// before `keep_after` (the oldest kept backup's log position) and durable in the table
    /// file. Returns the bytes freed (0 without a change log).
    pub fn prune_log(&self, keep_after: u64) -> Result<u64, MaintenanceError> {
        self.maintenance(|reply| Maintenance::PruneLog { keep_after, reply })
    }

    /// Replace the table file (restore): the current file gets a second name in quarantine,
    /// the replacement is renamed over the table path, and the table reopened. If the
    /// replacement does not open, the previous file is put back and keeps serving. The table
    /// path names a complete file at every instant (see `owner/file.rs`).
    pub fn replace(&self, request: ReplaceRequest) -> Result<ReplaceReport, MaintenanceError> {
        self.maintenance(|tx| Maintenance::Replace(request, tx))
    }

    /// Stop the owner: queued commands are answered and the file is closed before this
    /// returns (if this is the last handle).
    pub fn close(self) {
        drop(self);
    }
}
