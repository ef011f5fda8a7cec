//! The three required behaviours of `fragmentation_ratio` on a real redb file: a freshly
//! loaded table with no deletes reports < 0.10 (growth slack at the end of the file is not
//! fragmentation); after deleting half of the records at random it reports >= 0.30; after a
//! compaction by copy (snapshot copied to a fresh file, swapped in) it is back under 0.10.
//!
//! 30 000 records of 200 bytes (key plus value), loaded in batches of 1 000, in random key
//! order and in ascending key order. The measured numbers are printed (`--nocapture`).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use store_core::{
    IoRate, Pacer, RedbStore, ReplacedFile, StoreOptions, StoreSnapshot, TableMetrics, TableStore,
    WriteBatch,
};

const N_RECORDS: u64 = 30_000;
const RECORD_BYTES: usize = 200;
const KEY_BYTES: usize = 16;
const BATCH: usize = 1_000;

fn key(i: u64) -> Vec<u8> {
    // Big-endian id padded to 16 bytes: keys sort by id.
    let mut k = vec![b'k'; KEY_BYTES - 8];
    k.extend_from_slice(&i.to_be_bytes());
    k
}

fn write_batches(store: &mut RedbStore, ids: &[u64], rng: &mut StdRng, delete: bool) {
    for chunk in ids.chunks(BATCH) {
        let mut batch = store.begin_batch().unwrap();
        for &id in chunk {
            if delete {
                assert!(batch.delete(&key(id)).unwrap());
            } else {
                let mut value = vec![0u8; RECORD_BYTES - KEY_BYTES];
                rng.fill_bytes(&mut value);
                batch.put(&key(id), &value).unwrap();
            }
        }
        batch.commit().unwrap();
    }
}

fn report(stage: &str, m: &TableMetrics) {
    eprintln!(
        "{stage:<28} file {:>10} B  live {:>6} rec {:>9} B  packed~{:>9} B  reclaimable {:>9} B  ratio {:.3}",
        m.file_bytes,
        m.live_records,
        m.live_bytes,
        m.packed_bytes_estimate,
        m.reclaimable_bytes,
        m.fragmentation_ratio
    );
}

fn three_behaviours(random_order: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let options = StoreOptions::default();
    let mut store = RedbStore::open(&path, &options).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let order = if random_order { "random" } else { "ascending" };

    let mut ids: Vec<u64> = (0..N_RECORDS).collect();
    if random_order {
        ids.shuffle(&mut rng);
    }
    write_batches(&mut store, &ids, &mut rng, false);
    let loaded = store.metrics().unwrap();
    report(&format!("loaded ({order})"), &loaded);
    assert_eq!(loaded.live_records, N_RECORDS);
    assert_eq!(loaded.live_bytes, N_RECORDS * RECORD_BYTES as u64);
    assert!(
        loaded.fragmentation_ratio < 0.10,
        "freshly loaded: {loaded:?}"
    );

    let mut victims: Vec<u64> = (0..N_RECORDS).collect();
    victims.shuffle(&mut rng);
    victims.truncate(N_RECORDS as usize / 2);
    write_batches(&mut store, &victims, &mut rng, true);
    let holed = store.metrics().unwrap();
    report(&format!("half deleted ({order})"), &holed);
    assert_eq!(holed.live_records, N_RECORDS / 2);
    assert!(
        holed.fragmentation_ratio >= 0.30,
        "after deleting half: {holed:?}"
    );

    let fresh_path = dir.path().join("t.redb.compact");
    let snapshot = store.snapshot().unwrap();
    let progress = store_core::Progress::new("copy");
    let copied = snapshot
        .copy_to_file(
            &fresh_path,
            &|_| true,
            &Pacer::new(IoRate::Unlimited),
            &progress,
        )
        .unwrap();
    drop(snapshot);
    assert_eq!(copied.records, N_RECORDS / 2);
    // Every live byte copied advanced the progress, the last chunk's too.
    assert_eq!(progress.read().bytes_done, copied.live_bytes);
    let fresh = RedbStore::open(&fresh_path, &options).unwrap();
    store
        .swap_in(fresh)
        .unwrap()
        .release(&Pacer::new(IoRate::Unlimited));
    let compacted = store.metrics().unwrap();
    report(&format!("compacted ({order})"), &compacted);
    assert_eq!(store.path(), path);
    assert_eq!(compacted.live_records, N_RECORDS / 2);
    assert!(compacted.file_bytes < holed.file_bytes);
    assert!(
        compacted.fragmentation_ratio < 0.10,
        "after compaction: {compacted:?}"
    );

    // The swapped-in file is the table now: it reopens with the survivors.
    store.close().unwrap();
    let reopened = RedbStore::open(&path, &options).unwrap();
    assert_eq!(reopened.counters().records, N_RECORDS / 2);
    assert_eq!(reopened.get(&key(victims[0])).unwrap(), None);
}

#[test]
fn fragmentation_behaviours_random_insertion_order() {
    three_behaviours(true);
}

#[test]
fn fragmentation_behaviours_ascending_insertion_order() {
    three_behaviours(false);
}
