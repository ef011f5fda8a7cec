//! Group commit: the write jobs drained together run in one write transaction, committed
//! durably once. A job that panics is rolled back with its batch and answered alone; the
//! others re-run without it. While an online compaction runs, the batch records every key it
//! touches, for the compaction's catch-up rounds.
//!
//! With a change log, the group's writes are appended to the log and fsynced before the table
//! file commits them lazily (no fsync): the log is where the group becomes durable.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use store_core::{KeyRange, Record, TableStore, WriteBatch, WriteError, WriteOp};

use super::command::WriteJob;
use super::journal::Journal;
use crate::error::{CallError, panic_text};

/// Run `jobs` in one write transaction of `store` and commit it durably, recording the keys
/// written into `changed` if given. A job that panics is answered with
/// [`CallError::Panicked`] and removed from `jobs`, and the batch re-run without it. The
/// others are not answered here: the caller answers them with the outcome, after acting on
/// it (a failed commit changes the table's status first).
pub(super) fn commit<S: TableStore>(
    table: &'static str,
    store: &mut S,
    mut journal: Option<&mut Journal>,
    mut changed: Option<&mut BTreeSet<Vec<u8>>>,
    jobs: &mut Vec<Box<dyn WriteJob>>,
) -> Result<(), CallError> {
    loop {
        if jobs.is_empty() {
            return Ok(());
        }
        match try_batch(
            table,
            store,
            journal.as_deref_mut(),
            changed.as_deref_mut(),
            jobs,
        ) {
            BatchOutcome::Committed => return Ok(()),
            BatchOutcome::Failed(error) => return Err(error),
            BatchOutcome::Panicked(index, text) => {
                let job = jobs.remove(index);
                job.finish(Err(CallError::Panicked(text)));
            }
        }
    }
}

enum BatchOutcome {
    Committed,
    Failed(CallError),
    Panicked(usize, String),
}

fn try_batch<S: TableStore>(
    table: &'static str,
    store: &mut S,
    journal: Option<&mut Journal>,
    changed: Option<&mut BTreeSet<Vec<u8>>>,
    jobs: &mut [Box<dyn WriteJob>],
) -> BatchOutcome {
    let batch = match journal {
        Some(_) => store.begin_lazy_batch(),
        None => store.begin_batch(),
    };
    let batch = match batch {
        Ok(b) => b,
        Err(e) => return BatchOutcome::Failed(e.into()),
    };
    let mut batch = TrackingBatch {
        inner: batch,
        changed,
        ops: journal.is_some().then(Vec::new),
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
                tracing::error!(table, panic = %text, "write job panicked; batch re-run without it");
                return BatchOutcome::Panicked(index, text);
            }
        }
    }
    let TrackingBatch {
        mut inner,
        changed: _,
        ops,
    } = batch;
    let (Some(journal), Some(ops)) = (journal, ops) else {
        return match inner.commit() {
            Ok(()) => BatchOutcome::Committed,
            Err(e) => BatchOutcome::Failed(e.into()),
        };
    };
    if ops.is_empty() {
        // Nothing written: nothing to log, nothing to make durable.
        inner.abort();
        return BatchOutcome::Committed;
    }
    // The log first: once the group is fsynced there, it survives whatever happens to the
    // table file's lazy commit.
    let group = match journal.append(&ops) {
        Ok(g) => g,
        Err(e) => {
            inner.abort();
            return BatchOutcome::Failed(CallError::Storage(std::sync::Arc::new(e)));
        }
    };
    inner.set_log_position(group.seq);
    match inner.commit() {
        Ok(()) => {
            journal.committed_lazily();
            BatchOutcome::Committed
        }
        Err(e) => {
            journal.retract(group.seq);
            BatchOutcome::Failed(e.into())
        }
    }
}

/// A write batch that records which keys it touched while an online compaction needs them,
/// and its writes when they go to a change log.
struct TrackingBatch<'a, B> {
    inner: B,
    changed: Option<&'a mut BTreeSet<Vec<u8>>>,
    ops: Option<Vec<WriteOp>>,
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
        if let Some(ops) = &mut self.ops {
            ops.push(WriteOp::put(key, value));
        }
        self.inner.put(key, value)
    }

    fn delete(&mut self, key: &[u8]) -> Result<bool, WriteError> {
        if let Some(changed) = &mut self.changed {
            changed.insert(key.to_vec());
        }
        let existed = self.inner.delete(key)?;
        if existed && let Some(ops) = &mut self.ops {
            ops.push(WriteOp::delete(key));
        }
        Ok(existed)
    }

    fn set_log_position(&mut self, seq: u64) {
        self.inner.set_log_position(seq)
    }

    fn commit(self) -> Result<(), WriteError> {
        self.inner.commit()
    }

    fn abort(self) {
        self.inner.abort()
    }
}
