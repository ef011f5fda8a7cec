//! The promises of a `Progress` handle to whoever draws it: what is done never goes down, and
//! never exceeds the total once one is known, even while another thread advances it past a
//! total estimated too small; a paced copy of a real table advances it by the bytes copied.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use store_core::{
    IoRate, Pacer, Progress, RedbStore, StoreOptions, StoreSnapshot, TableStore, WriteOp,
};

#[test]
fn readings_never_go_back_nor_past_the_total_while_a_thread_advances() {
    let progress = Progress::new("copy");
    progress.estimate_total(1_000);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let writer = progress.clone();
        let stop = &stop;
        s.spawn(move || {
            for i in 0..20_000u64 {
                writer.advance(1);
                if i == 10_000 {
                    // The real figure, known half-way.
                    writer.set_phase("check");
                    writer.set_total(15_000);
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        let mut last = 0;
        loop {
            let done_before = stop.load(Ordering::Relaxed);
            let reading = progress.read();
            assert!(reading.bytes_done >= last, "went back: {reading:?}");
            assert!(reading.bytes_done <= reading.bytes_total, "{reading:?}");
            last = reading.bytes_done;
            if done_before {
                break;
            }
        }
    });
    let reading = progress.read();
    assert_eq!(reading.bytes_done, 20_000);
    // The exact total was too small too: raised to what was done, and no longer an estimate.
    assert_eq!(reading.bytes_total, 20_000);
    assert!(!reading.total_estimated);
    assert_eq!(reading.phase, "check");
}

#[test]
fn an_unknown_total_reads_as_zero_and_an_estimate_is_labelled() {
    let progress = Progress::new("upload");
    progress.advance(10);
    let reading = progress.read();
    assert_eq!((reading.bytes_done, reading.bytes_total), (10, 0));
    assert!(!reading.total_estimated);
    progress.estimate_total(40);
    let reading = progress.read();
    assert_eq!(reading.bytes_total, 40);
    assert!(reading.total_estimated);
}

#[test]
fn a_paced_copy_advances_by_the_bytes_it_copies_and_clones_share_the_counters() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RedbStore::open(&dir.path().join("t.redb"), &StoreOptions::default()).unwrap();
    let ops: Vec<WriteOp> = (0..5_000u32)
        .map(|i| WriteOp::put(&i.to_be_bytes(), &[7u8; 200]))
        .collect();
    store.apply(&ops).unwrap();
    let live = store.counters().live_bytes;
    let snapshot = store.snapshot().unwrap();
    let progress = Progress::new("copy");
    progress.set_total(live);
    let watcher = progress.clone();
    let stats = snapshot
        .copy_to_file(
            &dir.path().join("copy.redb"),
            &|_| true,
            &Pacer::new(IoRate::Unlimited),
            &progress,
        )
        .unwrap();
    let reading = watcher.read();
    assert_eq!(stats.live_bytes, live);
    assert_eq!((reading.bytes_done, reading.bytes_total), (live, live));
}
