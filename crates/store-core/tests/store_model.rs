//! Property test: random sequences of store operations (put, delete, write batches that
//! commit or abort with reads inside them, point reads, ordered scans in both directions,
//! snapshots, close and reopen) run against `RedbStore` and against a `BTreeMap` model; every
//! answer, and the exact counters behind the fragmentation metrics, must match the model.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use proptest::prelude::*;
use store_core::{
    KeyRange, RedbSnapshot, RedbStore, StoreOptions, StoreSnapshot, TableStore, WriteBatch,
};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Clone)]
enum BatchOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Get(Vec<u8>),
    Scan(KeyRange, usize),
}

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// A batch of writes, committed (`true`) or aborted.
    Batch(Vec<BatchOp>, bool),
    Get(Vec<u8>),
    Scan(KeyRange, usize),
    /// Take a snapshot; it must keep showing this state while later operations run.
    Snapshot,
    /// Close the file (or just drop the store) and open it again.
    Reopen {
        close: bool,
    },
}

/// Few distinct short keys, so that overwrites, deletes of present keys and prefix
/// relations are frequent.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u8..4, 0..4)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..48)
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        key().prop_map(Bound::Included),
        key().prop_map(Bound::Excluded),
    ]
}

fn range() -> impl Strategy<Value = KeyRange> {
    prop_oneof![
        (bound(), bound(), any::<bool>()).prop_map(|(start, end, reverse)| KeyRange {
            start,
            end,
            reverse
        }),
        (key(), any::<bool>()).prop_map(|(p, reverse)| {
            let r = KeyRange::prefix(&p);
            if reverse { r.reversed() } else { r }
        }),
    ]
}

fn limit() -> impl Strategy<Value = usize> {
    prop_oneof![Just(usize::MAX), 0usize..5]
}

fn batch_op() -> impl Strategy<Value = BatchOp> {
    prop_oneof![
        3 => (key(), value()).prop_map(|(k, v)| BatchOp::Put(k, v)),
        2 => key().prop_map(BatchOp::Delete),
        1 => key().prop_map(BatchOp::Get),
        1 => (range(), limit()).prop_map(|(r, l)| BatchOp::Scan(r, l)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key(), value()).prop_map(|(k, v)| Op::Put(k, v)),
        3 => key().prop_map(Op::Delete),
        3 => (prop::collection::vec(batch_op(), 0..8), prop::bool::weighted(0.8)).prop_map(|(ops, commit)| Op::Batch(ops, commit)),
        3 => key().prop_map(Op::Get),
        3 => (range(), limit()).prop_map(|(r, l)| Op::Scan(r, l)),
        1 => Just(Op::Snapshot),
        1 => any::<bool>().prop_map(|close| Op::Reopen { close }),
    ]
}

fn model_scan(model: &Model, range: &KeyRange, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let matching = model
        .iter()
        .filter(|(k, _)| range.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()));
    if range.reverse {
        matching.rev().take(limit).collect()
    } else {
        matching.take(limit).collect()
    }
}

fn pairs(records: Vec<store_core::Record>) -> Vec<(Vec<u8>, Vec<u8>)> {
    records.into_iter().map(|r| (r.key, r.value)).collect()
}

fn open(path: &Path) -> RedbStore {
    RedbStore::open(
        path,
        &StoreOptions {
            check_integrity_on_open: false,
            cache_bytes: 1 << 20,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

/// The store's exact counters agree with the model.
fn check_counters(store: &RedbStore, model: &Model) {
    let counters = store.counters();
    assert_eq!(counters.records, model.len() as u64);
    let live: usize = model.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert_eq!(counters.live_bytes, live as u64);
}

fn check_snapshot(snapshot: &RedbSnapshot, model: &Model) {
    assert_eq!(snapshot.len().unwrap(), model.len() as u64);
    assert_eq!(
        pairs(snapshot.scan(&KeyRange::all(), usize::MAX).unwrap()),
        model_scan(model, &KeyRange::all(), usize::MAX)
    );
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.redb");
    let mut store = open(&path);
    let mut model = Model::new();
    let mut snapshot: Option<(RedbSnapshot, Model)> = None;
    for op in ops {
        match op {
            Op::Put(k, v) => {
                store.apply(&[store_core::WriteOp::put(&k, &v)]).unwrap();
                model.insert(k, v);
            }
            Op::Delete(k) => {
                store.apply(&[store_core::WriteOp::delete(&k)]).unwrap();
                model.remove(&k);
            }
            Op::Batch(ops, commit) => {
                let mut pending = model.clone();
                let mut batch = store.begin_batch().unwrap();
                for op in ops {
                    match op {
                        BatchOp::Put(k, v) => {
                            batch.put(&k, &v).unwrap();
                            pending.insert(k, v);
                        }
                        BatchOp::Delete(k) => {
                            assert_eq!(batch.delete(&k).unwrap(), pending.remove(&k).is_some());
                        }
                        BatchOp::Get(k) => {
                            assert_eq!(batch.get(&k).unwrap(), pending.get(&k).cloned())
                        }
                        BatchOp::Scan(r, l) => {
                            assert_eq!(
                                pairs(batch.scan(&r, l).unwrap()),
                                model_scan(&pending, &r, l)
                            )
                        }
                    }
                }
                if commit {
                    batch.commit().unwrap();
                    model = pending;
                } else {
                    batch.abort();
                }
            }
            Op::Get(k) => assert_eq!(store.get(&k).unwrap(), model.get(&k).cloned()),
            Op::Scan(r, l) => {
                assert_eq!(pairs(store.scan(&r, l).unwrap()), model_scan(&model, &r, l))
            }
            Op::Snapshot => snapshot = Some((store.snapshot().unwrap(), model.clone())),
            Op::Reopen { close } => {
                // A live snapshot keeps the file open; it goes first.
                snapshot = None;
                if close {
                    store.close().unwrap();
                } else {
                    drop(store);
                }
                store = open(&path);
            }
        }
        check_counters(&store, &model);
        if let Some((snap, then)) = &snapshot {
            check_snapshot(snap, then);
        }
    }
    drop(snapshot);
    store.close().unwrap();
    let store = open(&path);
    check_counters(&store, &model);
    assert_eq!(
        pairs(store.scan(&KeyRange::all(), usize::MAX).unwrap()),
        model_scan(&model, &KeyRange::all(), usize::MAX)
    );
}

proptest! {
    // Every write is a durable commit (an fsync), so cases are kept few and short.
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_btreemap_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
