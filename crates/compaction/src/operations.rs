//! The registry of running operations: which compactions, backups, verifications, restores
//! and uploads move bytes right now, and how far each has come
//! ([`crate::Maintainer::operations`]). A leaf: it imports only [`crate::report`].
//!
//! One writer per fact: an operation registers itself when it begins (`Operations::begin`)
//! and the `OperationGuard` it gets back removes it when dropped, whichever way the
//! operation ends (success, error, panic). Nothing else adds or removes an entry, so an
//! operation is listed exactly while it runs. The bytes are the operation's own
//! [`store_core::Progress`], advanced where it pays them to the pacer; the registry only reads it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use store_core::Progress;

/// What a running operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// An online compaction's copy of a table.
    Compaction,
    /// A backup of a table (copy, integrity check, hash).
    Backup,
    /// A full verification of one backup (copy and hash, integrity check).
    Verify,
    /// A restore: the chosen backup verified into a work copy, then swapped in.
    Restore,
    /// An upload of one backup off-site.
    Upload,
}

impl OperationKind {
    /// The kind's one spelling, as in JSON: `compaction`, `backup`...
    pub fn name(self) -> &'static str {
        match self {
            OperationKind::Compaction => "compaction",
            OperationKind::Backup => "backup",
            OperationKind::Verify => "verify",
            OperationKind::Restore => "restore",
            OperationKind::Upload => "upload",
        }
    }
}

/// One running operation, as [`crate::Maintainer::operations`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationInfo {
    /// Unique among the operations of this maintainer, increasing in the order they began.
    pub id: u64,
    /// What it does.
    pub kind: OperationKind,
    /// The table it works on.
    pub table: String,
    /// Its current step (`copy`, `check`, `hash`, `upload`...).
    pub phase: String,
    /// Bytes moved so far; never goes down, never more than `bytes_total` once that is known.
    pub bytes_done: u64,
    /// Bytes it moves in all; 0 while unknown.
    pub bytes_total: u64,
    /// Whether `bytes_total` is an estimate (the real figure comes later in the operation).
    pub total_estimated: bool,
    /// Time since it began.
    #[serde(rename = "elapsed_seconds", with = "crate::report::seconds")]
    pub elapsed: Duration,
}

/// The running operations of one maintainer. Cheap to clone: clones share the list.
#[derive(Debug, Clone, Default)]
pub(crate) struct Operations {
    /// The list, shared with every guard.
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The id of the next operation.
    next_id: AtomicU64,
    /// The running operations by id.
    running: Mutex<BTreeMap<u64, Entry>>,
}

#[derive(Debug)]
struct Entry {
    kind: OperationKind,
    table: String,
    progress: Progress,
}

impl Operations {
    /// Register an operation of `kind` on `table` beginning now, in `phase`; it is listed
    /// until the guard is dropped.
    pub(crate) fn begin(
        &self,
        kind: OperationKind,
        table: &str,
        phase: &'static str,
    ) -> OperationGuard {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let progress = Progress::new(phase);
        self.lock().insert(
            id,
            Entry {
                kind,
                table: table.to_string(),
                progress: progress.clone(),
            },
        );
        OperationGuard {
            operations: self.clone(),
            id,
            progress,
        }
    }

    /// The running operations, oldest first.
    pub(crate) fn list(&self) -> Vec<OperationInfo> {
        self.lock()
            .iter()
            .map(|(&id, entry)| {
                let reading = entry.progress.read();
                OperationInfo {
                    id,
                    kind: entry.kind,
                    table: entry.table.clone(),
                    phase: reading.phase.to_string(),
                    bytes_done: reading.bytes_done,
                    bytes_total: reading.bytes_total,
                    total_estimated: reading.total_estimated,
                    elapsed: reading.elapsed,
                }
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A registered operation; dropping it removes the operation from the list.
#[derive(Debug)]
pub(crate) struct OperationGuard {
    /// The list it is in.
    operations: Operations,
    /// Its id there.
    id: u64,
    /// Its progress, which the operation advances.
    progress: Progress,
}

impl OperationGuard {
    /// The operation's progress: advance it where the bytes are paid to the pacer.
    pub(crate) fn progress(&self) -> &Progress {
        &self.progress
    }
}

impl Drop for OperationGuard {
    fn drop(&mut self) {
        self.operations.lock().remove(&self.id);
    }
}
