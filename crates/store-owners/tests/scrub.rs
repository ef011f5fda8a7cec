//! Scrubs through an owner: the table serves throughout, damage is reported as corruption
//! met by a read would be, and a finding in a file replaced meanwhile reports nothing.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, unbounded};
use store_core::{OnRead, RedbStore};
use store_owners::{MaintenanceError, OnlineConfig, OwnerConfig, OwnerHandle, TableStatus};

const MARK: [u8; 1200] = [0xC3; 1200];

fn start(path: &Path) -> (OwnerHandle, Receiver<&'static str>) {
    let (reports_tx, reports) = unbounded();
    let config = OwnerConfig {
        corruption_reports: Some(reports_tx),
        ..OwnerConfig::default()
    };
    let owner = OwnerHandle::start::<RedbStore>("task_queue", path, config);
    for chunk in 0..10 {
        owner
            .write(move |batch| {
                for i in chunk * 500..(chunk + 1) * 500 {
                    batch.put(format!("key-{i:05}").as_bytes(), &[7u8; 250])?;
                }
                Ok(())
            })
            .unwrap();
    }
    owner.put(b"marked", &MARK).unwrap();
    (owner, reports)
}

fn read_on() -> OnRead {
    Arc::new(|_| true)
}

/// Flip a byte in the middle of each copy of [`MARK`] in the file: the value's page no
/// longer matches its checksum, and nothing else changes.
fn damage_the_marked_value(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let mut at = 0;
    let mut flipped = 0;
    while let Some(pos) = bytes[at..].windows(MARK.len()).position(|w| w == MARK) {
        let offset = at + pos + MARK.len() / 2;
        file.write_all_at(&[!bytes[offset]], offset as u64).unwrap();
        at += pos + MARK.len();
        flipped += 1;
    }
    assert!(flipped > 0, "the marked value is in the file");
    file.sync_all().unwrap();
}

#[test]
fn a_clean_table_scrubs_clean_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("task_queue.redb");
    let (owner, reports) = start(&path);
    let stats = owner.scrub(read_on()).unwrap();
    assert!(stats.bytes_read >= 5_000 * 250, "{stats:?}");
    assert_eq!(owner.shared().status(), TableStatus::Ok);
    assert!(reports.try_recv().is_err());
    owner.put(b"after", b"1").unwrap();
}

#[test]
fn damage_found_by_a_scrub_is_reported_for_restore() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("task_queue.redb");
    let (owner, reports) = start(&path);
    damage_the_marked_value(&path);
    // A plain read does not see it (redb checks checksums only in integrity checks).
    assert!(owner.get(b"marked").is_ok());
    match owner.scrub(read_on()) {
        Err(MaintenanceError::Corrupted(detail)) => assert!(!detail.is_empty()),
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(matches!(owner.shared().status(), TableStatus::Corrupted(_)));
    assert_eq!(reports.try_recv(), Ok("task_queue"));
}

#[test]
fn a_finding_in_a_file_replaced_during_the_scrub_reports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("task_queue.redb");
    let (owner, reports) = start(&path);
    damage_the_marked_value(&path);
    // At the scrub's first read, an online compaction copies the records into a new file
    // and renames it over the table path: the scrub goes on reading the old file.
    let compacted = Arc::new(AtomicBool::new(false));
    let on_read: OnRead = {
        let (owner, compacted) = (owner.clone(), compacted.clone());
        Arc::new(move |_| {
            if !compacted.swap(true, Ordering::SeqCst) {
                owner.compact_online(OnlineConfig::default()).unwrap();
            }
            true
        })
    };
    match owner.scrub(on_read) {
        Err(MaintenanceError::Cancelled(why)) => assert!(why.contains("replaced"), "{why}"),
        other => panic!("expected a stale finding, got {other:?}"),
    }
    assert_eq!(owner.shared().status(), TableStatus::Ok);
    assert!(reports.try_recv().is_err());
}
