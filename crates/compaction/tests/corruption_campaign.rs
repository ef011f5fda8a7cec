//! Corruption campaign: bytes flipped at random offsets of a table file and of backup files.
//!
//! Table file: after each flip the data dir is opened as the daemon opens it (integrity
//! checked on open, corruption reported). Either the flip is detected, and the table ends
//! restored from its verified backup with the corrupt file in quarantine, byte for byte; or
//! it is not, and then every record reads back exactly as written (the flip hit space no
//! page in use covers). Wrong data is never served.
//!
//! Backup file: every flip anywhere in a backup file fails its verification (checksum over
//! the whole file), and a restore never uses it.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use compaction::{
    BackupOptions, BackupSelector, BackupState, Maintainer, MaintenanceConfig, RecoveryTrigger,
};
use crossbeam_channel::Receiver;
use rand::{Rng, SeedableRng};
use store_owners::TableStatus;
use support::quarantined;

const TABLE: &str = "agent_mailbox";
const N_TABLE_FLIPS: usize = 48;
const N_BACKUP_FLIPS: usize = 24;

fn open(data: &Path) -> (Arc<Maintainer>, Receiver<&'static str>) {
    let hub = support::open_hub(data, MaintenanceConfig::default());
    (hub.maintainer, hub.reports)
}

fn contents(m: &Maintainer) -> BTreeMap<Vec<u8>, Vec<u8>> {
    support::contents(m, TABLE)
}

/// A data dir whose table holds a few rewritten generations of records, with one verified
/// backup of its final state.
fn template(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let (m, _) = open(dir);
    let owner = m.stores().owner(TABLE).expect("known table");
    for generation in 0..3u8 {
        owner
            .write(move |b| {
                for i in 0..300u32 {
                    let value = vec![generation.wrapping_mul(31).wrapping_add(i as u8); 180];
                    b.put(format!("agent-{:03}/{i:06}", i % 7).as_bytes(), &value)?;
                }
                Ok(())
            })
            .expect("write");
    }
    let run = m
        .backup_one(TABLE, BackupOptions::default())
        .expect("backup");
    assert!(run.failures.is_empty(), "{run:?}");
    contents(&m)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != ".lock" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn flip(path: &Path, offset: u64, mask: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= mask;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn flipped_bytes_in_a_table_file_are_detected_or_harmless_and_never_served() {
    let root = tempfile::tempdir().unwrap();
    let pristine = root.path().join("pristine");
    let expected = template(&pristine);
    let table_file = |data: &Path| data.join(format!("{TABLE}.redb"));
    let len = std::fs::metadata(table_file(&pristine)).unwrap().len();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let (mut n_detected, mut n_harmless) = (0, 0);
    for i in 0..N_TABLE_FLIPS {
        let data = root.path().join(format!("flip-{i}"));
        copy_dir(&pristine, &data);
        let offset = rng.random_range(0..len);
        let mask = rng.random_range(1..=255u8);
        flip(&table_file(&data), offset, mask);
        let flipped = std::fs::read(table_file(&data)).unwrap();
        let context = format!("flip #{i} at offset {offset} (mask {mask:#04x}) of {len} bytes");

        let (m, reports) = open(&data);
        let owner = m.stores().owner(TABLE).expect("known table");
        match owner.shared().status() {
            TableStatus::Ok => {
                // Not detected: then nothing in use was touched.
                assert_eq!(
                    contents(&m),
                    expected,
                    "{context}: undetected flip served wrong data"
                );
                assert!(
                    reports.try_recv().is_err(),
                    "{context}: reported yet serving"
                );
                n_harmless += 1;
            }
            TableStatus::Corrupted(_) | TableStatus::Unavailable(_) => {
                assert_eq!(
                    reports.try_recv().ok(),
                    Some(TABLE),
                    "{context}: not reported"
                );
                // Nothing is served from the corrupt file meanwhile.
                assert!(
                    owner.get(b"agent-000/000000").is_err(),
                    "{context}: corrupt file served"
                );
                let report = m.recover_corrupt_table(TABLE).expect("recovery runs");
                assert_eq!(report.trigger, RecoveryTrigger::Auto, "{context}");
                assert_eq!(
                    owner.shared().status(),
                    TableStatus::Ok,
                    "{context}: {report:?}"
                );
                assert_eq!(contents(&m), expected, "{context}: restored data");
                let kept = quarantined(&data);
                assert_eq!(kept.len(), 1, "{context}: quarantine {kept:?}");
                assert_eq!(
                    std::fs::read(&kept[0]).unwrap(),
                    flipped,
                    "{context}: quarantined copy"
                );
                n_detected += 1;
            }
            other => panic!("{context}: unexpected status {other}"),
        }
        drop(m);
        std::fs::remove_dir_all(&data).unwrap();
    }
    println!(
        "table flips: {N_TABLE_FLIPS}, detected and restored: {n_detected}, harmless: {n_harmless}"
    );
    assert!(n_detected > 0, "no flip was detected at all");
}

#[test]
fn flipped_bytes_in_a_backup_always_fail_verification_and_are_never_restored() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let expected = template(&data);
    let (m, _) = open(&data);
    // A second, newer backup: the one every flip lands in.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let run = m
        .backup_one(TABLE, BackupOptions::default())
        .expect("backup");
    let newest = run.backups[0].id.clone();
    let newest_path = m.table_backup_dir(TABLE).join(format!("{newest}.redb"));
    let pristine = std::fs::read(&newest_path).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xbac);
    for i in 0..N_BACKUP_FLIPS {
        let offset = rng.random_range(0..pristine.len() as u64);
        let mask = rng.random_range(1..=255u8);
        let context = format!("backup flip #{i} at offset {offset} (mask {mask:#04x})");
        std::fs::write(&newest_path, &pristine).unwrap();
        flip(&newest_path, offset, mask);
        assert!(
            m.verify_backup(TABLE, &newest).is_err(),
            "{context}: verified"
        );
        let listed = m.list_backups(true).expect("list");
        let state = &listed
            .iter()
            .find(|b| b.id == newest)
            .expect("listed")
            .state;
        assert!(
            matches!(state, BackupState::Corrupt(_)),
            "{context}: listed as {state:?}"
        );
        assert!(
            m.restore(
                TABLE,
                BackupSelector::Id(newest.clone()),
                RecoveryTrigger::Manual
            )
            .is_err(),
            "{context}: restored by id"
        );
        let report = m
            .restore(
                TABLE,
                BackupSelector::LatestVerified,
                RecoveryTrigger::Manual,
            )
            .expect("the older backup restores");
        assert_ne!(
            report.backup_id.as_deref(),
            Some(newest.as_str()),
            "{context}"
        );
        assert_eq!(contents(&m), expected, "{context}: restored data");
    }
}
