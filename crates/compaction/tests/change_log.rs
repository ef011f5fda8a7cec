//! Restores with a change log: the corruption test of the backups, extended (the writes made
//! after the last backup are all there after the automatic restore), point-in-time restores
//! against a model at random instants, one instant for all nine tables, refused instants,
//! and the log pruned by backup retention.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use compaction::{MaintenanceConfig, RestoreError, recovery::RecoveryTrigger};
use rand::{Rng, SeedableRng};
use store_owners::{StoresOptions, TABLE_NAMES, TableStatus};
use support::{backup, contents, owner, small_log, table_file};

const TABLE: &str = "message_history";

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn logged() -> StoresOptions {
    StoresOptions {
        change_log: small_log(),
        ..StoresOptions::default()
    }
}

fn open(data: &Path) -> support::RecoveringHub {
    support::open_recovering_with(data, MaintenanceConfig::default(), logged())
}

/// One write group of random puts and deletes on `table`, applied to `model` too.
fn random_group(m: &compaction::Maintainer, table: &str, model: &mut Model, rng: &mut impl Rng) {
    random_group_of(m, table, model, rng, 60, 8);
}

/// [`random_group`] over `keys` keys with values of about `value_len` bytes.
fn random_group_of(
    m: &compaction::Maintainer,
    table: &str,
    model: &mut Model,
    rng: &mut impl Rng,
    keys: u32,
    value_len: usize,
) {
    let mut ops = Vec::new();
    for _ in 0..rng.random_range(1..6) {
        let key = format!("k{:05}", rng.random_range(0..keys)).into_bytes();
        if rng.random_bool(0.25) {
            model.remove(&key);
            ops.push((key, None));
        } else {
            let mut value = format!("v{}-", rng.random::<u32>()).into_bytes();
            value.resize(value_len, b'x');
            model.insert(key.clone(), value.clone());
            ops.push((key, Some(value)));
        }
    }
    owner(m, table)
        .write(move |b| {
            for (key, value) in &ops {
                match value {
                    Some(v) => b.put(key, v)?,
                    None => {
                        b.delete(key)?;
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

/// Flip one byte in every page of the middle half of `path`: whatever the layout the commits
/// left (lazy commits leave pages unused), live pages are hit.
fn flip_every_page(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let len = bytes.len();
    let mut at = len / 4 - len / 4 % 4096 + 2048;
    while at < len * 3 / 4 {
        bytes[at] ^= 0xFF;
        at += 4096;
    }
    std::fs::write(path, bytes).unwrap();
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn writes_after_the_last_backup_survive_the_automatic_restore_of_a_corrupt_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut model = Model::new();
    {
        let hub = open(dir.path());
        let m = &hub.maintainer;
        for _ in 0..400 {
            random_group_of(m, TABLE, &mut model, &mut rng, 3000, 300);
        }
        assert!(backup(m, TABLE).failures.is_empty());
        // Acknowledged after the backup: lost by a plain restore, kept by the log.
        for _ in 0..400 {
            random_group_of(m, TABLE, &mut model, &mut rng, 3000, 300);
        }
    }
    flip_every_page(&table_file(dir.path(), TABLE));
    // Found corrupt at open (the test is only worth anything if it is)...
    let hub = support::open_hub_with(dir.path(), MaintenanceConfig::default(), logged());
    let m = &hub.maintainer;
    let status = owner(m, TABLE).shared().status();
    assert!(matches!(status, TableStatus::Corrupted(_)), "{status}");
    // ... and restored automatically.
    let _recovery = m.start_auto_recovery(hub.reports.clone()).unwrap();
    wait_for(|| owner(m, TABLE).shared().status() == TableStatus::Ok);
    assert_eq!(contents(m, TABLE), model);
    let log = owner(m, TABLE).shared().log().unwrap();
    assert!(
        log.replayed > 0,
        "the writes after the backup came from the log"
    );
    assert!(log.unrecovered.is_none());
}

#[test]
fn a_point_in_time_restore_equals_the_model_at_random_instants() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path());
    let m = &hub.maintainer;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut model = Model::new();
    // (instant, state at that instant), one after each acknowledged group.
    let mut history: Vec<(SystemTime, Model)> = Vec::new();
    for _ in 0..4 {
        assert!(backup(m, TABLE).failures.is_empty());
        for _ in 0..60 {
            random_group(m, TABLE, &mut model, &mut rng);
            history.push((SystemTime::now(), model.clone()));
        }
    }
    // Retention (3 kept) dropped the first backup: instants before the oldest kept one are
    // refused (checked in the next test), the others all restorable.
    let earliest = m.restorable_range(TABLE).unwrap().earliest.unwrap();
    let restorable: Vec<_> = history.iter().filter(|(t, _)| *t >= earliest).collect();
    assert!(restorable.len() >= 120);
    for _ in 0..8 {
        let (at, expected) = restorable[rng.random_range(0..restorable.len())];
        let report = m
            .restore_at(TABLE, *at, RecoveryTrigger::Manual)
            .expect("restore to a point in time");
        assert_eq!(report.restored_to, Some(*at));
        assert_eq!(&contents(m, TABLE), expected, "state at {at:?}");
    }
    // The restores were logged as writes: a restart replays to the same state.
    let last = contents(m, TABLE);
    drop(hub);
    let hub = open(dir.path());
    assert_eq!(contents(&hub.maintainer, TABLE), last);
}

#[test]
fn all_nine_tables_come_back_to_one_instant_and_instants_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path());
    let m = &hub.maintainer;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let before_any_backup = SystemTime::now();
    std::thread::sleep(Duration::from_millis(5));
    let mut models: BTreeMap<&str, Model> = BTreeMap::new();
    for table in TABLE_NAMES {
        assert!(backup(m, table).failures.is_empty());
        let model = models.entry(table).or_default();
        for _ in 0..20 {
            random_group(m, table, model, &mut rng);
        }
    }
    let instant = SystemTime::now();
    let at_instant = models.clone();
    for table in TABLE_NAMES {
        for _ in 0..20 {
            random_group(m, table, models.get_mut(table).unwrap(), &mut rng);
        }
    }
    let reports = m
        .restore_all_at(instant, RecoveryTrigger::Manual)
        .expect("restore all");
    assert_eq!(reports.len(), 9);
    for table in TABLE_NAMES {
        assert_eq!(contents(m, table), at_instant[table], "{table}");
    }
    let refused = m
        .restore_at(TABLE, before_any_backup, RecoveryTrigger::Manual)
        .unwrap_err();
    match &refused {
        RestoreError::OutOfRange {
            earliest, latest, ..
        } => {
            assert!(earliest.is_some_and(|e| e > before_any_backup));
            assert!(*latest >= instant);
        }
        other => panic!("expected out of range, got {other}"),
    }
    let text = refused.to_string();
    assert!(text.contains("restorable from"), "{text}");
    let future = SystemTime::now() + Duration::from_secs(3600);
    assert!(matches!(
        m.restore_all_at(future, RecoveryTrigger::Manual),
        Err(RestoreError::OutOfRange { .. })
    ));
    // Nothing was touched by the refused requests.
    assert_eq!(contents(m, TABLE), at_instant[TABLE]);
}

#[test]
fn backup_retention_prunes_the_log_before_the_oldest_kept_backup() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = MaintenanceConfig::default();
    config.backup.keep = 2;
    let hub = support::open_recovering_with(dir.path(), config, logged());
    let m = &hub.maintainer;
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut model = Model::new();
    let mut firsts = Vec::new();
    for _ in 0..4 {
        for _ in 0..400 {
            random_group(m, TABLE, &mut model, &mut rng);
        }
        assert!(backup(m, TABLE).failures.is_empty());
        firsts.push(owner(m, TABLE).shared().log().unwrap().first.unwrap());
    }
    assert!(
        firsts.last() > firsts.first(),
        "the log was pruned: {firsts:?}"
    );
    // What is left still restores the oldest kept backup to now.
    let report = m
        .restore(
            TABLE,
            compaction::BackupSelector::LatestVerified,
            RecoveryTrigger::Manual,
        )
        .unwrap();
    assert!(report.log_unrecovered.is_none());
    assert_eq!(contents(m, TABLE), model);
}

#[test]
fn a_corrupt_table_with_no_backup_is_rebuilt_whole_from_its_change_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let mut model = Model::new();
    {
        let hub = open(dir.path());
        for _ in 0..600 {
            random_group_of(&hub.maintainer, TABLE, &mut model, &mut rng, 3000, 300);
        }
    }
    flip_every_page(&table_file(dir.path(), TABLE));
    let hub = support::open_hub_with(dir.path(), MaintenanceConfig::default(), logged());
    let m = &hub.maintainer;
    let status = owner(m, TABLE).shared().status();
    assert!(matches!(status, TableStatus::Corrupted(_)), "{status}");
    let report = m.recover_corrupt_table(TABLE).unwrap();
    assert_eq!(
        report.outcome,
        compaction::recovery::RecoveryOutcome::Restored
    );
    assert!(!report.data_lost);
    assert_eq!(owner(m, TABLE).shared().status(), TableStatus::Ok);
    assert_eq!(contents(m, TABLE), model);
}
