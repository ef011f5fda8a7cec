//! An owner with a change log: writes are acknowledged once logged; a file brought back from
//! a backup is replayed up to the last acknowledged write; a point-in-time replacement is
//! logged as writes, so that any later replay arrives at it; damage stops a replay at the
//! last good group and is reported; pruning and online compaction keep what replays need.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use store_core::changelog::{LogOptions, list_segments};
use store_core::{KeyRange, RedbStore, TableStore};
use store_owners::{JournalConfig, OnlineConfig, OwnerConfig, OwnerHandle, ReplaceRequest};

const TABLE: &str = "agent_mailbox";

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn config(dir: &Path, segment_bytes: u64) -> OwnerConfig {
    OwnerConfig {
        journal: Some(JournalConfig {
            dir: dir.join("changelog").join(TABLE),
            options: LogOptions { segment_bytes },
        }),
        ..OwnerConfig::default()
    }
}

fn table_path(dir: &Path) -> PathBuf {
    dir.join(format!("{TABLE}.redb"))
}

fn start(dir: &Path, segment_bytes: u64) -> OwnerHandle {
    OwnerHandle::start::<RedbStore>(TABLE, &table_path(dir), config(dir, segment_bytes))
}

/// Write `i`: a put of one of 20 keys, or every fifth one a delete of a key present. Each
/// is one group of the log.
fn write(owner: &OwnerHandle, model: &mut Model, i: u32) {
    if i.is_multiple_of(5)
        && let Some(key) = model.keys().nth(i as usize % model.len().max(1)).cloned()
    {
        let k = key.clone();
        owner
            .write(move |b| {
                assert!(b.delete(&k)?);
                Ok(())
            })
            .unwrap();
        model.remove(&key);
    } else {
        let key = format!("k{:02}", i % 20).into_bytes();
        let value = format!("v{i}").into_bytes();
        let (k, v) = (key.clone(), value.clone());
        owner.write(move |b| b.put(&k, &v)).unwrap();
        model.insert(key, value);
    }
}

fn contents(owner: &OwnerHandle) -> Model {
    owner
        .read(|v| v.scan(&KeyRange::all(), usize::MAX))
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect()
}

/// A backup as the backup code takes one: a snapshot copied into a fresh file.
fn backup(owner: &OwnerHandle, dest: &Path) -> u64 {
    let snapshot = owner.snapshot().unwrap();
    snapshot
        .copy_to_file(
            dest,
            &|_| true,
            &store_core::Pacer::default(),
            &store_core::Progress::new("copy"),
        )
        .unwrap();
    snapshot.log_position()
}

fn replace(
    owner: &OwnerHandle,
    dir: &Path,
    file: &Path,
    replay_log: bool,
) -> store_owners::ReplaceReport {
    let staged = dir.join(format!("{TABLE}.redb.restore"));
    std::fs::copy(file, &staged).unwrap();
    owner
        .replace(ReplaceRequest {
            replacement: Some(staged),
            quarantine: dir
                .join("quarantine")
                .join(format!("{TABLE}.{}.redb", rand_suffix())),
            expected_records: None,
            degraded: None,
            replay_log,
        })
        .unwrap()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn a_restore_replays_every_write_acknowledged_after_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let owner = start(dir.path(), 4096);
    let mut model = Model::new();
    for i in 1..=40 {
        write(&owner, &mut model, i);
    }
    let backup_file = dir.path().join("backup.redb");
    assert_eq!(backup(&owner, &backup_file), 40);
    for i in 41..=90 {
        write(&owner, &mut model, i);
    }
    let report = replace(&owner, dir.path(), &backup_file, true);
    assert_eq!(report.log_replayed, 50);
    assert!(report.log_unrecovered.is_none());
    assert_eq!(contents(&owner), model);
    assert_eq!(owner.shared().log().unwrap().head, 90);
    // And the replayed writes survive a restart.
    drop(owner);
    let owner = start(dir.path(), 4096);
    assert_eq!(contents(&owner), model);
}

#[test]
fn a_restart_replays_what_the_table_file_had_not_made_durable() {
    let dir = tempfile::tempdir().unwrap();
    let owner = start(dir.path(), 1 << 20);
    let mut model = Model::new();
    for i in 1..=60 {
        write(&owner, &mut model, i);
    }
    // What a crash leaves: the table file as of its last durable commit (a copy opens
    // there: lazy commits are not in its header) and the log.
    let crashed = tempfile::tempdir().unwrap();
    std::fs::copy(table_path(dir.path()), table_path(crashed.path())).unwrap();
    let log_dir = crashed.path().join("changelog").join(TABLE);
    std::fs::create_dir_all(&log_dir).unwrap();
    for segment in list_segments(&dir.path().join("changelog").join(TABLE)).unwrap() {
        std::fs::copy(
            &segment.path,
            log_dir.join(segment.path.file_name().unwrap()),
        )
        .unwrap();
    }
    drop(owner);
    let recovered = start(crashed.path(), 1 << 20);
    assert_eq!(contents(&recovered), model);
    let log = recovered.shared().log().unwrap();
    assert_eq!(log.head, 60);
    assert_eq!(
        log.durable_position, 60,
        "the replay ends with a durable commit"
    );
}

#[test]
fn a_point_in_time_replacement_is_logged_so_later_replays_arrive_at_it() {
    let dir = tempfile::tempdir().unwrap();
    let owner = start(dir.path(), 4096);
    let mut model = Model::new();
    for i in 1..=30 {
        write(&owner, &mut model, i);
    }
    let early = dir.path().join("early.redb");
    backup(&owner, &early);
    let at_30 = model.clone();
    for i in 31..=60 {
        write(&owner, &mut model, i);
    }
    // Back to the state after group 30, as a point-in-time restore does.
    replace(&owner, dir.path(), &early, false);
    assert_eq!(contents(&owner), at_30);
    let mut model = at_30;
    for i in 61..=70 {
        write(&owner, &mut model, i);
    }
    drop(owner);
    let owner = start(dir.path(), 4096);
    assert_eq!(contents(&owner), model, "after a restart");
    // A restore from the same early backup replays through the logged difference.
    let report = replace(&owner, dir.path(), &early, true);
    assert!(report.log_unrecovered.is_none());
    assert_eq!(
        contents(&owner),
        model,
        "after a replay from an earlier backup"
    );
}

#[test]
fn damage_in_the_log_stops_the_replay_and_names_the_range_lost() {
    let dir = tempfile::tempdir().unwrap();
    let owner = start(dir.path(), 512);
    let mut model = Model::new();
    for i in 1..=10 {
        write(&owner, &mut model, i);
    }
    let backup_file = dir.path().join("backup.redb");
    backup(&owner, &backup_file);
    for i in 11..=80 {
        write(&owner, &mut model, i);
    }
    let log_dir = dir.path().join("changelog").join(TABLE);
    let segments = list_segments(&log_dir).unwrap();
    assert!(segments.len() > 4);
    let victim = &segments[segments.len() / 2];
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&victim.path)
        .unwrap();
    f.seek(SeekFrom::Start(30)).unwrap();
    f.write_all(b"\xff\xff").unwrap();
    drop(f);
    let report = replace(&owner, dir.path(), &backup_file, true);
    let gap = report.log_unrecovered.expect("the damage is reported");
    assert_eq!(gap.through, 80);
    assert!(
        gap.from >= victim.first && gap.from <= victim.first + 1,
        "{gap}"
    );
    assert_eq!(owner.shared().log().unwrap().unrecovered, Some(gap.clone()));
    // Writes after the damage are logged past it and survive a restart.
    write(&owner, &mut model, 81);
    let expected_81 = contents(&owner);
    drop(owner);
    let owner = start(dir.path(), 512);
    assert_eq!(contents(&owner), expected_81);
    assert_eq!(owner.shared().log().unwrap().head, 81);
}

#[test]
fn pruning_and_online_compaction_keep_what_replays_need() {
    let dir = tempfile::tempdir().unwrap();
    let owner = start(dir.path(), 512);
    let mut model = Model::new();
    for i in 1..=100 {
        write(&owner, &mut model, i);
    }
    let backup_file = dir.path().join("backup.redb");
    assert_eq!(backup(&owner, &backup_file), 100);
    for i in 101..=150 {
        write(&owner, &mut model, i);
    }
    let before = owner.shared().log().unwrap();
    // The file is durable up to at most 150; everything up to the backup may go.
    owner.compact_online(OnlineConfig::default()).unwrap();
    let freed = owner.prune_log(100).unwrap();
    let after = owner.shared().log().unwrap();
    assert!(freed > 0 && after.disk_bytes < before.disk_bytes);
    assert!(after.first.unwrap() <= 101);
    let report = replace(&owner, dir.path(), &backup_file, true);
    assert!(
        report.log_unrecovered.is_none(),
        "{:?}",
        report.log_unrecovered
    );
    assert_eq!(contents(&owner), model);
    drop(owner);
    let reopened = RedbStore::open(&table_path(dir.path()), &Default::default()).unwrap();
    assert_eq!(reopened.log_position(), 150);
}
