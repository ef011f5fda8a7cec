//! `RedbStore::open_paced`: a work file opened with redb's integrity check pays every byte the
//! check reads to the pacer (before, the whole check was one unpaced read of the file), finds
//! what the file holds, and never creates a file that is missing.

use std::collections::BTreeMap;
use std::sync::Arc;

use store_core::{
    IoRate, KeyRange, OpenError, Pacer, RedbStore, StoreOptions, StoreSnapshot, TableStore, WriteOp,
};

fn checked() -> StoreOptions {
    StoreOptions {
        check_integrity_on_open: true,
        cache_bytes: 1 << 20,
        ..StoreOptions::default()
    }
}

#[test]
fn the_integrity_check_of_a_paced_open_is_paid_to_the_pacer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("work.redb");
    let mut model = BTreeMap::new();
    {
        let mut store = RedbStore::open(&path, &StoreOptions::default()).unwrap();
        for chunk in (0..12_000u32).collect::<Vec<_>>().chunks(1000) {
            let ops: Vec<_> = chunk
                .iter()
                .map(|i| {
                    let (k, v) = (i.to_be_bytes().to_vec(), vec![(i % 253) as u8; 400]);
                    model.insert(k.clone(), v.clone());
                    WriteOp::put(&k, &v)
                })
                .collect();
            store.apply(&ops).unwrap();
        }
        store.close().unwrap();
    }
    let live: u64 = model.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();

    let pacer = Arc::new(Pacer::new(IoRate::Unlimited));
    let store = RedbStore::open_paced(&path, &checked(), pacer.clone()).unwrap();
    // The check read every page of the data tree: at least the live bytes went through.
    let paid = pacer.stats().bytes_moved;
    assert!(
        paid >= live,
        "{paid} bytes paid, the file holds {live} live bytes"
    );
    assert_eq!(store.counters().records, model.len() as u64);
    let snapshot = store.snapshot().unwrap();
    let all = snapshot.scan(&KeyRange::all(), usize::MAX).unwrap();
    let found: BTreeMap<_, _> = all.into_iter().map(|r| (r.key, r.value)).collect();
    assert_eq!(found, model);
}

#[test]
fn a_paced_open_of_a_missing_file_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.redb");
    let pacer = Arc::new(Pacer::new(IoRate::Unlimited));
    let err = RedbStore::open_paced(&path, &checked(), pacer).unwrap_err();
    assert!(matches!(err, OpenError::Missing { .. }), "{err:?}");
    assert!(!path.exists());
}
