//! The worker thread of an online compaction: it copies the snapshot into the fresh file,
//! applies the catch-up rounds the owner sends, and hands the fresh file over. It talks to
//! the owner only through two channels ([`WorkerCommand`] in, [`WorkerEvent`] out) and
//! removes the fresh file itself when it gives up.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender};
use store_core::{
    CopyError, CopyStats, Pacer, Progress, StoreOptions, StoreSnapshot, TableStore, WriteBatch,
};

use super::hook::{Hooks, Step};
use crate::error::MaintenanceError;

/// What the worker tells the owner.
pub(crate) enum WorkerEvent<S> {
    /// The snapshot copy ended (the fresh file is durable), or failed.
    Copied(Result<CopyStats, MaintenanceError>),
    /// A catch-up round carried this many keys over, or failed.
    CaughtUp(Result<usize, MaintenanceError>),
    /// The fresh file, handed over for the final pause.
    Ready(S),
}

/// What the owner tells the worker.
pub(super) enum WorkerCommand<Snap> {
    /// Bring `keys` of the fresh file to their values in `snapshot`.
    CatchUp { keys: Vec<Vec<u8>>, snapshot: Snap },
    /// Hand the fresh file over ([`WorkerEvent::Ready`]).
    HandOver,
}

/// What the worker thread needs besides its channels.
pub(super) struct WorkerJob {
    pub(super) fresh_path: PathBuf,
    pub(super) options: StoreOptions,
    /// Set by the owner to stop the snapshot copy at its next chunk.
    pub(super) cancel: Arc<AtomicBool>,
    pub(super) hooks: Hooks,
    /// Paces the copy and the catch-up rounds.
    pub(super) pacer: Arc<Pacer>,
    /// Advanced by the snapshot copy.
    pub(super) progress: Progress,
}

/// The worker thread: copy the snapshot, then apply catch-up rounds, then hand the file over.
pub(super) fn run<S: TableStore>(
    snapshot: S::Snapshot,
    job: WorkerJob,
    commands: Receiver<WorkerCommand<S::Snapshot>>,
    events: Sender<WorkerEvent<S>>,
) {
    let WorkerJob {
        fresh_path,
        options,
        cancel,
        hooks,
        pacer,
        progress,
    } = job;
    let injected = std::sync::Mutex::new(None);
    let keep_going = |records: u64| {
        if cancel.load(Ordering::Relaxed) {
            return false;
        }
        match hooks.at(Step::CopyChunk(records)) {
            Ok(()) => true,
            Err(e) => {
                *injected.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                false
            }
        }
    };
    let copied = snapshot.copy_to_file(&fresh_path, &keep_going, &pacer, &progress);
    drop(snapshot);
    let copied = match copied {
        Ok(stats) => hooks.at(Step::Copied).map(|()| stats),
        Err(e) => Err(injected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| match e {
                CopyError::Corrupted(detail) => MaintenanceError::Corrupted(detail),
                other => MaintenanceError::Storage(Arc::new(other)),
            })),
    };
    let failed = copied.is_err();
    let _ = events.send(WorkerEvent::Copied(copied));
    if failed {
        super::remove_off_thread(&fresh_path, &pacer);
        return;
    }
    let mut fresh = match S::open(&fresh_path, &options) {
        Ok(f) => f,
        Err(e) => {
            let _ = events.send(WorkerEvent::CaughtUp(Err(MaintenanceError::Storage(
                Arc::new(e),
            ))));
            super::remove_off_thread(&fresh_path, &pacer);
            return;
        }
    };
    for command in commands.iter() {
        match command {
            WorkerCommand::CatchUp { keys, snapshot } => {
                let result = hooks
                    .at(Step::CatchUp)
                    .and_then(|()| copy_keys(&snapshot, &keys, &mut fresh));
                drop(snapshot);
                if let Ok(bytes) = result {
                    pacer.pace(bytes);
                }
                let failed = result.is_err();
                let _ = events.send(WorkerEvent::CaughtUp(result.map(|_| keys.len())));
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
    super::remove_off_thread(&fresh_path, &pacer);
}

/// Bring `keys` of `fresh` to their values in `source`, in one commit. Returns the key and
/// value bytes written.
pub(super) fn copy_keys<S: TableStore>(
    source: &dyn SnapshotGet,
    keys: &[Vec<u8>],
    fresh: &mut S,
) -> Result<u64, MaintenanceError> {
    if keys.is_empty() {
        // Nothing to carry over; the fresh file is already durable.
        return Ok(0);
    }
    let mut bytes = 0;
    let mut batch = fresh.begin_batch()?;
    for key in keys {
        bytes += key.len() as u64;
        match source.get_value(key)? {
            Some(value) => {
                bytes += value.len() as u64;
                batch.put(key, &value)?
            }
            None => {
                batch.delete(key)?;
            }
        }
    }
    batch.commit()?;
    Ok(bytes)
}

/// Point reads from wherever the current value of a key lives (a snapshot or the live store).
pub(super) trait SnapshotGet {
    fn get_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MaintenanceError>;
}

impl<T: StoreSnapshot> SnapshotGet for T {
    fn get_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MaintenanceError> {
        Ok(self.get(key)?)
    }
}

/// The live store as a source of current values (the final copy, in the pause).
pub(super) struct LiveStore<'a, S>(pub(super) &'a S);

impl<S: TableStore> SnapshotGet for LiveStore<'_, S> {
    fn get_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MaintenanceError> {
        Ok(self.0.get(key)?)
    }
}
