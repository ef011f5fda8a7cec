//! I/O failures during a commit, injected with `FaultBackend`: a failed write or fsync makes
//! the commit return an error (it is never acknowledged), and after the store is dropped the
//! file reopens with a plain `RedbStore::open` holding exactly its last committed data, never
//! a part of the failed batch. Guards against a store that acknowledges a batch it could not
//! make durable, or that leaves a file which does not open after an I/O error.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use store_core::{
    FaultBackend, FaultPlan, KeyRange, RedbStore, StoreOptions, TableStore, WriteError, WriteOp,
};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn open_faulty(path: &Path, plan: &Arc<FaultPlan>) -> RedbStore {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    let backend = FaultBackend::new(file, plan.clone()).unwrap();
    RedbStore::open_with_backend(path, backend, &StoreOptions::default()).unwrap()
}

/// Puts of `n` records named `{tag}{i}`, plus a delete of one earlier key, so that a batch
/// both adds and removes.
fn batch(tag: &str, n: usize, delete: Option<&[u8]>) -> Vec<WriteOp> {
    let mut ops: Vec<WriteOp> = (0..n)
        .map(|i| WriteOp::put(format!("{tag}{i:04}").as_bytes(), &[i as u8; 100]))
        .collect();
    ops.extend(delete.map(WriteOp::delete));
    ops
}

fn apply_to_model(model: &mut Model, ops: &[WriteOp]) {
    for op in ops {
        match op {
            WriteOp::Put { key, value } => {
                model.insert(key.clone(), value.clone());
            }
            WriteOp::Delete { key } => {
                model.remove(key);
            }
        }
    }
}

fn contents(store: &RedbStore) -> Model {
    store
        .scan(&KeyRange::all(), usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Fail the `n`-th write of the commit.
    Write(u64),
    /// Fail the `n`-th fsync of the commit.
    Sync(u64),
}

/// Commit two batches, fail the third with `fault` (a dead disk if `sticky`: every later
/// write and fsync fails too, including those of the drop), then reopen the file plainly.
fn fault_during_commit(fault: Fault, sticky: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let plan = FaultPlan::new();
    let mut model = Model::new();
    {
        let mut store = open_faulty(&path, &plan);
        for ops in [batch("a", 200, None), batch("b", 50, Some(b"a0007"))] {
            store.apply(&ops).unwrap();
            apply_to_model(&mut model, &ops);
        }
        assert_eq!(contents(&store), model);

        plan.set_sticky(sticky);
        match fault {
            Fault::Write(n) => plan.fail_write_after(n),
            Fault::Sync(n) => plan.fail_sync_after(n),
        }
        let failed = batch("c", 300, Some(b"a0001"));
        let result = store.apply(&failed);
        assert!(
            matches!(result, Err(WriteError::Storage(_))),
            "{fault:?}: {result:?}"
        );
        assert!(plan.failures() >= 1);
        // The store's counters never saw the failed batch.
        assert_eq!(store.counters().records, model.len() as u64);
    }
    plan.disarm();

    let reopened = RedbStore::open(&path, &StoreOptions::default()).unwrap();
    assert_eq!(contents(&reopened), model, "{fault:?}, sticky {sticky}");
    assert_eq!(reopened.counters().records, model.len() as u64);
    let live: usize = model.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert_eq!(reopened.counters().live_bytes, live as u64);
    // And it takes writes again.
    let mut reopened = reopened;
    reopened.apply(&[WriteOp::put(b"after", b"1")]).unwrap();
    reopened.close().unwrap();
    assert_eq!(
        RedbStore::open(&path, &StoreOptions::default())
            .unwrap()
            .get(b"after")
            .unwrap()
            .as_deref(),
        Some(&b"1"[..])
    );
}

#[test]
fn failed_first_write_of_a_commit() {
    fault_during_commit(Fault::Write(1), false);
}

#[test]
fn failed_later_write_of_a_commit() {
    fault_during_commit(Fault::Write(3), false);
}

#[test]
fn failed_write_on_a_dead_disk() {
    fault_during_commit(Fault::Write(1), true);
}

#[test]
fn failed_first_fsync_of_a_commit() {
    fault_during_commit(Fault::Sync(1), false);
}

#[test]
fn failed_fsync_on_a_dead_disk() {
    fault_during_commit(Fault::Sync(1), true);
}

/// The second fsync of a commit comes after its header is written: the error still reaches
/// the caller, and what reopens is the previous commit.
#[test]
fn failed_second_fsync_of_a_commit() {
    fault_during_commit(Fault::Sync(2), false);
}
