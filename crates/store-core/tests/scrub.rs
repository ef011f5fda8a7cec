//! The scrub: every page checksum of a live file verified from a snapshot while the store
//! keeps committing, without false findings, and damage on disk found.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use store_core::{
    KeyRange, OnRead, RedbStore, ScrubError, StoreOptions, StoreSnapshot, TableStore, WriteOp,
};

fn never_cancel() -> OnRead {
    Arc::new(|_| true)
}

/// Load `n` records with values big enough to spread over many pages.
fn load(store: &mut RedbStore, n: usize, model: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let ops: Vec<_> = chunk
            .iter()
            .map(|i| {
                let (k, v) = (
                    format!("key-{i:06}").into_bytes(),
                    vec![(i % 251) as u8; 300],
                );
                model.insert(k.clone(), v.clone());
                WriteOp::put(&k, &v)
            })
            .collect();
        store.apply(&ops).unwrap();
    }
}

/// Scrubs run against a store that commits meanwhile.
const ROUNDS: u32 = 15;

#[test]
fn a_scrub_of_a_store_that_keeps_committing_finds_nothing_and_reads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let mut store = RedbStore::open(&path, &StoreOptions::default()).unwrap();
    let mut model = BTreeMap::new();
    load(&mut store, 20_000, &mut model);

    // Scrubs run on another thread from snapshots taken between the commits of a writer that
    // overwrites and deletes (so pages are freed and reused while each scrub reads).
    let (snapshots_tx, snapshots_rx) = std::sync::mpsc::channel::<store_core::RedbSnapshot>();
    let scrubber = {
        std::thread::spawn(move || {
            let mut scrubs = 0;
            for snapshot in snapshots_rx {
                let stats = snapshot
                    .scrub(never_cancel())
                    .expect("a clean file scrubs clean");
                // Every page of the records was read.
                assert!(
                    stats.bytes_read >= snapshot.counters().live_bytes,
                    "{stats:?}"
                );
                scrubs += 1;
            }
            scrubs
        })
    };
    for round in 0..ROUNDS {
        snapshots_tx.send(store.scrub_snapshot().unwrap()).unwrap();
        let ops: Vec<_> = (0..400)
            .map(|i| {
                let key = format!("key-{:06}", (round as usize * 997 + i * 13) % 20_000);
                if i % 3 == 0 {
                    model.remove(key.as_bytes());
                    WriteOp::delete(key.as_bytes())
                } else {
                    let value = vec![round as u8; 200 + i];
                    model.insert(key.clone().into_bytes(), value.clone());
                    WriteOp::put(key.as_bytes(), &value)
                }
            })
            .collect();
        store.apply(&ops).unwrap();
    }
    drop(snapshots_tx);
    assert_eq!(scrubber.join().unwrap(), ROUNDS);
    // The store is untouched by the scrubs.
    let got: BTreeMap<_, _> = store
        .scan(&KeyRange::all(), usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(got, model);
    store.check_integrity().unwrap();
}

/// Flip one byte in each of the pages holding `needle` (a value written by the test).
fn flip_pages_holding(path: &Path, needle: &[u8]) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let mut flipped = 0;
    let mut at = 0;
    while let Some(pos) = bytes[at..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + at)
    {
        let offset = (pos + needle.len() / 2) as u64;
        file.write_all_at(&[bytes[offset as usize] ^ 0xFF], offset)
            .unwrap();
        flipped += 1;
        at = pos + 4096;
    }
    file.sync_all().unwrap();
    flipped
}

#[test]
fn a_flipped_byte_in_a_live_page_is_found_while_reads_still_serve() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let mut store = RedbStore::open(&path, &StoreOptions::default()).unwrap();
    let mut model = BTreeMap::new();
    load(&mut store, 5_000, &mut model);
    store
        .apply(&[WriteOp::put(b"marker", &[0xA5; 1500])])
        .unwrap();
    store
        .scrub_snapshot()
        .unwrap()
        .scrub(never_cancel())
        .unwrap();

    assert!(flip_pages_holding(&path, &[0xA5; 1500]) >= 1);
    // Normal reads do not verify checksums; the scrub does.
    match store.scrub_snapshot().unwrap().scrub(never_cancel()) {
        Err(ScrubError::Corrupted(detail)) => assert!(!detail.is_empty()),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn a_scrub_told_to_stop_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let mut store = RedbStore::open(&path, &StoreOptions::default()).unwrap();
    load(&mut store, 5_000, &mut BTreeMap::new());
    let seen = Arc::new(AtomicBool::new(false));
    let on_read: OnRead = {
        let seen = seen.clone();
        Arc::new(move |_| !seen.swap(true, Ordering::Relaxed))
    };
    match store.scrub_snapshot().unwrap().scrub(on_read) {
        Err(ScrubError::Cancelled) => {}
        other => panic!("expected a cancelled scrub, got {other:?}"),
    }
    // A plain snapshot (the one copies and compactions take) carries no header to scrub with.
    assert!(matches!(
        store.snapshot().unwrap().scrub(never_cancel()),
        Err(ScrubError::NotForScrub)
    ));
    // The store serves on.
    store.apply(&[WriteOp::put(b"after", b"1")]).unwrap();
    store
        .scrub_snapshot()
        .unwrap()
        .scrub(never_cancel())
        .unwrap();
}
