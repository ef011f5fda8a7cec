//! Recovery: a manual restore swaps a verified backup in and quarantines the previous file; a
//! backup that fails verification is never restored; flipped bytes in a live table file are
//! caught at open and restored automatically; with every backup corrupt the table ends in
//! degraded mode, its corrupt file in quarantine; bad requests are refused; a restore that
//! fails half-way leaves the original table serving.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use compaction::recovery::RecoveryOutcome;
use compaction::testing::RestoreFault;
use compaction::{
    BackupSelector, Envelope, Event, Maintainer, MaintenanceConfig, RecoveryReport,
    RecoveryTrigger, RestoreError,
};
use crossbeam_channel::Receiver;
use store_owners::TableStatus;
use support::{HeldCompaction, Hub, flip_bytes, owner, put_keys, quarantined};

const TABLE: &str = "thread_messages";

/// Tables opened with the integrity check on and corruption reports wired to a channel.
fn open(data: &Path) -> Hub {
    support::open_hub(data, MaintenanceConfig::default())
}

fn fill(m: &Maintainer, n: usize, tag: &str) {
    let tag = tag.to_string();
    put_keys(m, TABLE, 0..n, move |i| {
        format!("{tag}-{i}-{}", "x".repeat(200)).into_bytes()
    });
}

fn contents(m: &Maintainer) -> BTreeMap<Vec<u8>, Vec<u8>> {
    support::contents(m, TABLE)
}

/// Back up the table; returns the new backup's id.
fn backup(m: &Maintainer) -> String {
    let run = support::backup(m, TABLE);
    assert!(run.failures.is_empty(), "{:?}", run.failures);
    run.backups[0].id.clone()
}

fn table_file(data: &Path) -> PathBuf {
    support::table_file(data, TABLE)
}

fn next_recovery_event(events: &Receiver<Envelope>) -> (bool, RecoveryReport) {
    loop {
        let envelope = events
            .recv_timeout(Duration::from_secs(30))
            .expect("a recovery event");
        match envelope.event {
            Event::RecoveryComplete { report } => return (true, report),
            Event::RecoveryFailed { report } => return (false, report),
            _ => {}
        }
    }
}

#[test]
fn a_manual_restore_swaps_the_backup_in_and_quarantines_the_previous_file() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path());
    let m = &hub.maintainer;
    fill(m, 100, "v1");
    let expected = contents(m);
    let id = backup(m);
    fill(m, 150, "v2");
    let events = m.events().subscribe();

    let report = m
        .restore(
            TABLE,
            BackupSelector::Id(id.clone()),
            RecoveryTrigger::Manual,
        )
        .expect("restore");
    assert_eq!(report.outcome, RecoveryOutcome::Restored);
    assert_eq!(report.backup_id.as_deref(), Some(id.as_str()));
    assert_eq!(report.records, 100);
    assert_eq!(contents(m), expected);
    assert_eq!(owner(m, TABLE).shared().status(), TableStatus::Ok);
    assert_eq!(owner(m, TABLE).shared().counters().records, 100);
    // The previous file is in quarantine, with its 150 records.
    let q = report.quarantined.clone().expect("quarantined");
    assert!(
        q.starts_with(dir.path().join("quarantine")),
        "{}",
        q.display()
    );
    assert_eq!(quarantined(dir.path()), vec![q]);
    let (ok, event) = next_recovery_event(&events);
    assert!(ok);
    assert_eq!(event.trigger, RecoveryTrigger::Manual);
    // The table keeps working after the swap.
    owner(m, TABLE).put(b"after", b"restore").unwrap();
    assert_eq!(
        owner(m, TABLE).get(b"after").unwrap().as_deref(),
        Some(&b"restore"[..])
    );
    // No work file is left in the data dir.
    assert!(
        !std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp"))
    );
}

#[test]
fn restore_is_refused_for_an_unknown_table_or_a_bad_id() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path());
    let m = &hub.maintainer;
    fill(m, 10, "v1");
    let id = backup(m);
    let restore = |table: &str, id: &str| {
        m.restore(
            table,
            BackupSelector::Id(id.into()),
            RecoveryTrigger::Manual,
        )
    };
    assert!(matches!(
        restore("nope", &id),
        Err(RestoreError::UnknownTable(_))
    ));
    assert!(matches!(
        m.restore(
            "nope",
            BackupSelector::LatestVerified,
            RecoveryTrigger::Manual
        ),
        Err(RestoreError::UnknownTable(_))
    ));
    for bad in [
        "../x",
        "..",
        ".",
        "",
        "a/b",
        "/etc/passwd",
        "x\0y",
        &format!("../{TABLE}/{id}"),
    ] {
        assert!(
            matches!(restore(TABLE, bad), Err(RestoreError::InvalidBackupId(_))),
            "{bad:?} accepted"
        );
    }
    assert!(matches!(
        restore(TABLE, "20990101T000000.000Z"),
        Err(RestoreError::BackupNotFound { .. })
    ));
    // A backup of another table is not a backup of this one.
    assert!(matches!(
        restore("agent_mailbox", &id),
        Err(RestoreError::BackupNotFound { .. })
    ));
    assert!(quarantined(dir.path()).is_empty());
    assert_eq!(contents(m).len(), 10);
}

#[test]
fn a_backup_that_fails_verification_is_never_restored() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path());
    let m = &hub.maintainer;
    fill(m, 100, "v1");
    let v1 = contents(m);
    let old = backup(m);
    fill(m, 200, "v2");
    let new = backup(m);
    fill(m, 300, "v3");
    let v3 = contents(m);
    flip_bytes(&m.table_backup_dir(TABLE).join(format!("{new}.redb")));

    // Asked for by id, it is refused and the table is untouched.
    let err = m
        .restore(
            TABLE,
            BackupSelector::Id(new.clone()),
            RecoveryTrigger::Manual,
        )
        .unwrap_err();
    assert!(matches!(err, RestoreError::Verify { .. }), "{err}");
    assert_eq!(contents(m), v3);
    assert!(quarantined(dir.path()).is_empty());

    // The latest verified one is the older backup.
    let report = m
        .restore(
            TABLE,
            BackupSelector::LatestVerified,
            RecoveryTrigger::Manual,
        )
        .expect("restore");
    assert_eq!(report.backup_id.as_deref(), Some(old.as_str()));
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].id, new);
    assert_eq!(contents(m), v1);

    // With the older one corrupt too, nothing verifies: refused, table untouched.
    flip_bytes(&m.table_backup_dir(TABLE).join(format!("{old}.redb")));
    let err = m
        .restore(
            TABLE,
            BackupSelector::LatestVerified,
            RecoveryTrigger::Manual,
        )
        .unwrap_err();
    assert!(
        matches!(&err, RestoreError::NoVerifiedBackup { rejected, .. } if rejected.len() == 2),
        "{err}"
    );
    assert_eq!(contents(m), v1);
}

#[test]
fn flipped_bytes_in_a_live_table_are_detected_at_open_and_restored_automatically() {
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let hub = open(dir.path());
        fill(&hub.maintainer, 500, "v1");
        backup(&hub.maintainer);
        contents(&hub.maintainer)
    };
    let corrupt = std::fs::read(table_file(dir.path())).unwrap();
    flip_bytes(&table_file(dir.path()));
    let corrupt_flipped = std::fs::read(table_file(dir.path())).unwrap();
    assert_ne!(corrupt, corrupt_flipped);

    let hub = open(dir.path());
    let m = &hub.maintainer;
    assert!(
        matches!(owner(m, TABLE).shared().status(), TableStatus::Corrupted(_)),
        "flipped bytes not detected at open: {}",
        owner(m, TABLE).shared().status()
    );
    let events = m.events().subscribe();
    let recovery = m
        .start_auto_recovery(hub.reports.clone())
        .expect("start recovery");
    let (ok, report) = next_recovery_event(&events);
    recovery.stop();
    assert!(ok, "{report:?}");
    assert_eq!(report.trigger, RecoveryTrigger::Auto);
    assert_eq!(report.outcome, RecoveryOutcome::Restored);
    assert_eq!(owner(m, TABLE).shared().status(), TableStatus::Ok);
    assert_eq!(contents(m), expected);
    // The corrupt file is kept, byte for byte.
    let q = report.quarantined.expect("quarantined");
    assert_eq!(std::fs::read(q).unwrap(), corrupt_flipped);
    // The other tables were never touched.
    assert_eq!(owner(m, "agent_mailbox").shared().status(), TableStatus::Ok);
}

#[test]
fn a_table_whose_backups_are_all_corrupt_ends_degraded_with_its_file_in_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    {
        let hub = open(dir.path());
        fill(&hub.maintainer, 500, "v1");
        let id = backup(&hub.maintainer);
        flip_bytes(
            &hub.maintainer
                .table_backup_dir(TABLE)
                .join(format!("{id}.redb")),
        );
    }
    flip_bytes(&table_file(dir.path()));
    let corrupt = std::fs::read(table_file(dir.path())).unwrap();

    let hub = open(dir.path());
    let m = &hub.maintainer;
    let events = m.events().subscribe();
    let recovery = m
        .start_auto_recovery(hub.reports.clone())
        .expect("start recovery");
    let (ok, report) = next_recovery_event(&events);
    recovery.stop();
    assert!(!ok);
    assert_eq!(report.outcome, RecoveryOutcome::Degraded);
    assert!(report.data_lost);
    assert_eq!(report.trigger, RecoveryTrigger::Auto);
    assert_eq!(report.rejected.len(), 1);
    assert!(matches!(
        owner(m, TABLE).shared().status(),
        TableStatus::Degraded(_)
    ));
    let q = report.quarantined.expect("quarantined");
    assert_eq!(quarantined(dir.path()), vec![q.clone()]);
    assert_eq!(std::fs::read(&q).unwrap(), corrupt);
    // The hub keeps running on an empty table.
    assert!(contents(m).is_empty());
    owner(m, TABLE).put(b"k", b"v").unwrap();
    assert_eq!(
        owner(m, TABLE).get(b"k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
}

#[test]
fn a_restore_that_fails_half_way_leaves_the_original_table_serving() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path());
    let m = &hub.maintainer;
    fill(m, 100, "v1");
    let id = backup(m);
    fill(m, 200, "v2");
    let v2 = contents(m);
    let events = m.events().subscribe();

    for fault in [
        RestoreFault::GarbleStagedCopy,
        RestoreFault::TruncateStagedCopy,
    ] {
        m.inject_restore_fault(Some(fault));
        let err = m
            .restore(
                TABLE,
                BackupSelector::Id(id.clone()),
                RecoveryTrigger::Manual,
            )
            .unwrap_err();
        assert!(matches!(err, RestoreError::Replace(_)), "{fault:?}: {err}");
        let (ok, report) = next_recovery_event(&events);
        assert!(!ok);
        assert_eq!(report.outcome, RecoveryOutcome::Failed);
        assert_eq!(
            owner(m, TABLE).shared().status(),
            TableStatus::Ok,
            "{fault:?}"
        );
        assert_eq!(contents(m), v2, "{fault:?}");
        owner(m, TABLE).put(b"still", b"writable").unwrap();
        owner(m, TABLE).delete(b"still").unwrap();
        // The original went back from quarantine to the table's path.
        assert!(quarantined(dir.path()).is_empty(), "{fault:?}");
    }

    m.inject_restore_fault(None);
    let report = m
        .restore(TABLE, BackupSelector::Id(id), RecoveryTrigger::Manual)
        .expect("restore");
    assert_eq!(report.records, 100);
}

#[test]
fn corruption_found_at_run_time_is_restored_automatically() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path());
    let m = &hub.maintainer;
    fill(m, 500, "v1");
    let expected = contents(m);
    backup(m);
    let events = m.events().subscribe();
    let recovery = m
        .start_auto_recovery(hub.reports.clone())
        .expect("start recovery");

    // The disk rots under the open table; the next integrity check finds it.
    flip_bytes(&table_file(dir.path()));
    let found = owner(m, TABLE).check_integrity();
    assert!(
        found.is_err(),
        "flipped bytes not found by a run-time integrity check"
    );
    let (ok, report) = next_recovery_event(&events);
    recovery.stop();
    assert!(ok, "{report:?}");
    assert_eq!(report.trigger, RecoveryTrigger::Auto);
    assert_eq!(owner(m, TABLE).shared().status(), TableStatus::Ok);
    assert_eq!(contents(m), expected);
    assert_eq!(quarantined(dir.path()).len(), 1);
}

#[test]
fn a_restore_asked_during_a_compaction_is_busy_at_once_or_waits_when_asked_to() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path());
    let m = &hub.maintainer;
    fill(m, 100, "v1");
    let id = backup(m);
    // A compaction that holds the maintenance lock until told to go on.
    let held = HeldCompaction::start(m, TABLE);
    let events = m.events().subscribe();
    let asked = std::time::Instant::now();
    let refused = m.try_restore(
        TABLE,
        BackupSelector::Id(id.clone()),
        RecoveryTrigger::Manual,
    );
    assert!(matches!(refused, Err(RestoreError::Busy)), "{refused:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    // A refusal is not a failed recovery: no event.
    assert!(events.try_recv().is_err());
    // A waiting restore (as automatic recovery does) runs once the compaction is done.
    let waiting = {
        let m = m.clone();
        let id = id.clone();
        std::thread::spawn(move || m.restore(TABLE, BackupSelector::Id(id), RecoveryTrigger::Auto))
    };
    held.finish();
    let report = waiting
        .join()
        .unwrap()
        .expect("restore after the compaction");
    assert_eq!(report.outcome, RecoveryOutcome::Restored);
    m.set_compaction_hook(None);
}
