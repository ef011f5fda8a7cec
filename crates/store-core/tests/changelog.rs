//! The change log on its own: groups read back in order across segments, a torn tail is cut
//! and forgotten, damage stops a reader at the last good group, pruning keeps what a position
//! needs, a reader resumes where an earlier one stopped while the log grows, and a replay
//! brings a table file to the log's state (or to an instant).

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};

use store_core::changelog::{
    ChangeLog, LogCursor, LogError, LogOptions, LogReader, ReplayLimit, list_segments, replay,
};
use store_core::{KeyRange, RedbStore, StoreOptions, TableStore, WriteOp};

fn small_segments() -> LogOptions {
    LogOptions { segment_bytes: 512 }
}

fn ops(i: u64) -> Vec<WriteOp> {
    let key = format!("k{:03}", i % 37);
    if i % 5 == 4 {
        vec![WriteOp::delete(key.as_bytes())]
    } else {
        vec![WriteOp::put(key.as_bytes(), format!("v{i}").as_bytes())]
    }
}

fn apply_model(model: &mut BTreeMap<Vec<u8>, Vec<u8>>, ops: &[WriteOp]) {
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

fn contents(store: &RedbStore) -> BTreeMap<Vec<u8>, Vec<u8>> {
    store
        .scan(&KeyRange::all(), usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect()
}

#[test]
fn groups_read_back_in_order_across_segments_and_reopen_continues() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let mut log = ChangeLog::open(&log_dir, small_segments(), 0).unwrap();
    for i in 1..=100 {
        assert_eq!(log.append(&ops(i)).unwrap().seq, i);
    }
    assert!(
        list_segments(&log_dir).unwrap().len() > 5,
        "small segments rotate"
    );
    drop(log);
    let mut log = ChangeLog::open(&log_dir, small_segments(), 0).unwrap();
    assert_eq!(log.head(), 100);
    assert_eq!(log.append(&ops(101)).unwrap().seq, 101);
    let read: Vec<_> = LogReader::open(&log_dir, 40)
        .unwrap()
        .map(|g| g.unwrap())
        .collect();
    assert_eq!(read.first().unwrap().seq, 41);
    assert_eq!(read.len(), 61);
    for (group, seq) in read.iter().zip(41..) {
        assert_eq!(group.seq, seq);
        assert_eq!(group.ops, ops(seq));
    }
    assert!(
        read.windows(2)
            .all(|w| w[0].unix_micros <= w[1].unix_micros)
    );
}

#[test]
fn a_torn_tail_is_cut_and_the_next_append_follows_the_last_good_group() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let mut log = ChangeLog::open(&log_dir, LogOptions::default(), 0).unwrap();
    for i in 1..=10 {
        log.append(&ops(i)).unwrap();
    }
    drop(log);
    let segment = list_segments(&log_dir).unwrap().pop().unwrap();
    // A crash in the middle of an append: half a record at the end.
    let mut extra = Vec::new();
    {
        let scratch = tempfile::tempdir().unwrap();
        let mut other = ChangeLog::open(scratch.path(), LogOptions::default(), 10).unwrap();
        other.append(&ops(11)).unwrap();
        let seg = list_segments(scratch.path()).unwrap().pop().unwrap();
        let bytes = std::fs::read(seg.path).unwrap();
        extra.extend_from_slice(&bytes[8..bytes.len() - 3]);
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment.path)
        .unwrap()
        .write_all(&extra)
        .unwrap();
    let mut log = ChangeLog::open(&log_dir, LogOptions::default(), 0).unwrap();
    assert_eq!(log.head(), 10, "the torn group was never acknowledged");
    assert_eq!(log.append(&ops(99)).unwrap().seq, 11);
    let read: Vec<_> = LogReader::open(&log_dir, 0)
        .unwrap()
        .map(|g| g.unwrap())
        .collect();
    assert_eq!(read.len(), 11);
    assert_eq!(read[10].ops, ops(99));
}

#[test]
fn damage_stops_a_reader_at_the_last_good_group_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let mut log = ChangeLog::open(&log_dir, small_segments(), 0).unwrap();
    for i in 1..=60 {
        log.append(&ops(i)).unwrap();
    }
    drop(log);
    let segments = list_segments(&log_dir).unwrap();
    let victim = &segments[2];
    // Flip a byte inside the second record of the third segment.
    let bytes = std::fs::read(&victim.path).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&victim.path)
        .unwrap();
    let at = 8 + 12 + 40 + 20;
    file.seek(SeekFrom::Start(at as u64)).unwrap();
    file.write_all(&[bytes[at] ^ 0x40]).unwrap();
    drop(file);
    let results: Vec<_> = LogReader::open(&log_dir, 0).unwrap().collect();
    let good = results.iter().take_while(|r| r.is_ok()).count() as u64;
    assert!(
        good >= victim.first - 1 && good < victim.first + 2,
        "stops near {}: {good}",
        victim.first
    );
    match results.last().unwrap() {
        Err(LogError::Damaged {
            last_good, segment, ..
        }) => {
            assert_eq!(*last_good, good);
            assert_eq!(segment, &victim.path);
        }
        other => panic!("expected damage, got {other:?}"),
    }
    assert_eq!(results.len() as u64, good + 1, "nothing after the damage");
}

#[test]
fn a_reader_resumes_at_its_cursor_while_the_log_grows_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let mut log = ChangeLog::open(&log_dir, small_segments(), 0).unwrap();
    let mut cursor: Option<LogCursor> = None;
    let mut seen = Vec::new();
    for round in 0..12u64 {
        for i in 1..=7 {
            log.append(&ops(round * 7 + i)).unwrap();
        }
        let mut reader = match cursor {
            Some(c) => LogReader::resume(&log_dir, c).unwrap(),
            None => LogReader::open(&log_dir, 0).unwrap(),
        };
        for group in reader.by_ref() {
            let group = group.unwrap();
            assert_eq!(group.ops, ops(group.seq));
            seen.push(group.seq);
        }
        cursor = reader.cursor();
        assert_eq!(cursor.map(|c| c.seq), Some(log.head()));
    }
    assert_eq!(seen, (1..=84).collect::<Vec<_>>());
    // A cursor into a pruned segment reads on from its group all the same.
    let old = cursor.unwrap();
    for i in 85..=120 {
        log.append(&ops(i)).unwrap();
    }
    log.prune_through(100).unwrap();
    let stale = LogCursor {
        segment: 1,
        offset: 9,
        seq: 100,
    };
    let from_stale: Vec<u64> = LogReader::resume(&log_dir, stale)
        .unwrap()
        .map(|g| g.unwrap().seq)
        .collect();
    assert_eq!(from_stale, (101..=120).collect::<Vec<_>>());
    assert!(old.seq < 100);
}

#[test]
fn pruning_keeps_every_group_after_the_position_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let mut log = ChangeLog::open(&log_dir, small_segments(), 0).unwrap();
    for i in 1..=80 {
        log.append(&ops(i)).unwrap();
    }
    let before = log.disk_bytes();
    let freed = log.prune_through(50).unwrap();
    assert!(freed > 0);
    assert_eq!(log.disk_bytes(), before - freed);
    assert!(log.first().unwrap() <= 51);
    let read: Vec<_> = LogReader::open(&log_dir, 50)
        .unwrap()
        .map(|g| g.unwrap().seq)
        .collect();
    assert_eq!(read, (51..=80).collect::<Vec<_>>());
    // Asking for what was pruned is an error, not a silent gap.
    let early: Vec<_> = LogReader::open(&log_dir, 0).unwrap().collect();
    assert!(matches!(
        early.first(),
        Some(Err(LogError::Missing { wanted: 1, .. }))
    ));
}

#[test]
fn replay_brings_a_file_to_the_log_or_to_an_instant() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let mut log = ChangeLog::open(&log_dir, small_segments(), 0).unwrap();
    let mut models = vec![BTreeMap::new()];
    let mut times = vec![0];
    for i in 1..=120 {
        let group = log.append(&ops(i)).unwrap();
        let mut next = models.last().unwrap().clone();
        apply_model(&mut next, &ops(i));
        models.push(next);
        times.push(group.unix_micros);
    }
    let mut full =
        RedbStore::open(&dir.path().join("full.redb"), &StoreOptions::default()).unwrap();
    let outcome = replay(&mut full, &log_dir, ReplayLimit::default()).unwrap();
    assert!(outcome.stopped.is_none());
    assert_eq!((outcome.groups, outcome.position), (120, 120));
    assert_eq!(contents(&full), models[120]);
    assert_eq!(full.log_position(), 120);
    // Replaying again applies nothing: the file knows its position.
    assert_eq!(
        replay(&mut full, &log_dir, ReplayLimit::default())
            .unwrap()
            .groups,
        0
    );

    let mut partial =
        RedbStore::open(&dir.path().join("partial.redb"), &StoreOptions::default()).unwrap();
    let through = replay(
        &mut partial,
        &log_dir,
        ReplayLimit {
            through: Some(77),
            ..ReplayLimit::default()
        },
    )
    .unwrap();
    assert_eq!(through.position, 77);
    assert_eq!(contents(&partial), models[77]);
    let until = times[90];
    let mut at = RedbStore::open(&dir.path().join("at.redb"), &StoreOptions::default()).unwrap();
    replay(
        &mut at,
        &log_dir,
        ReplayLimit {
            until_micros: Some(until),
            ..ReplayLimit::default()
        },
    )
    .unwrap();
    // Every group committed at or before the instant, none after.
    let last = times.iter().rposition(|&t| t <= until).unwrap();
    assert_eq!(contents(&at), models[last]);
}

#[test]
fn a_copy_of_a_snapshot_keeps_the_log_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RedbStore::open(&dir.path().join("t.redb"), &StoreOptions::default()).unwrap();
    let mut batch = store.begin_lazy_batch().unwrap();
    store_core::WriteBatch::put(&mut batch, b"a", b"1").unwrap();
    store_core::WriteBatch::set_log_position(&mut batch, 42);
    store_core::WriteBatch::commit(batch).unwrap();
    store.sync().unwrap();
    let snapshot = store.snapshot().unwrap();
    use store_core::StoreSnapshot;
    assert_eq!(snapshot.log_position(), 42);
    snapshot
        .copy_to_file(
            &dir.path().join("copy.redb"),
            &|_| true,
            &store_core::Pacer::default(),
            &store_core::Progress::new("copy"),
        )
        .unwrap();
    drop(snapshot);
    let copy = RedbStore::open(&dir.path().join("copy.redb"), &StoreOptions::default()).unwrap();
    assert_eq!(copy.log_position(), 42);
    drop(store);
    let reopened = RedbStore::open(&dir.path().join("t.redb"), &StoreOptions::default()).unwrap();
    assert_eq!(
        reopened.log_position(),
        42,
        "sync made the lazy commit durable"
    );
}
