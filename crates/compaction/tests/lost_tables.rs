//! Tables whose file is gone, and what a restore leaves behind. Guards the defects an
//! independent campaign found: a table whose file was missing at open (a kill mid-restore, a
//! deleted or truncated file) came back as an empty table with status ok, was then backed up
//! empty until retention pushed the last good backup out; a directory at a table path was
//! never restored; a manifest of an unknown format was restored; quarantined files were
//! readable by everyone and the quarantine grew without bound.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use compaction::backup::VerifyError;
use compaction::recovery::RecoveryOutcome;
use compaction::{
    BackupSelector, Maintainer, MaintenanceConfig, QuarantineConfig, RecoveryTrigger, RestoreError,
};
use store_core::KeyRange;
use store_owners::{CallError, Stores, StoresOptions, TableStatus};
use support::{RecoveringHub, open_recovering, owner, put_keys};

const TABLE: &str = "task_queue";

/// Tables opened as the daemon opens them: integrity checked, reports wired to automatic
/// recovery.
fn open(data: &Path) -> RecoveringHub {
    open_recovering(data, MaintenanceConfig::default())
}

fn fill(m: &Maintainer, n: usize) {
    put_keys(m, TABLE, 0..n, |_| vec![b'v'; 100]);
}

fn records(m: &Maintainer) -> Result<usize, CallError> {
    Ok(owner(m, TABLE).scan(KeyRange::all(), usize::MAX)?.len())
}

fn backup(m: &Maintainer) -> compaction::BackupRun {
    support::backup(m, TABLE)
}

/// A manual restore of the newest verified backup of [`TABLE`], which must succeed.
fn restore_latest(m: &Maintainer) -> compaction::RecoveryReport {
    m.restore(
        TABLE,
        BackupSelector::LatestVerified,
        RecoveryTrigger::Manual,
    )
    .unwrap()
}

fn table_file(data: &Path) -> PathBuf {
    support::table_file(data, TABLE)
}

/// Wait until the table serves `n` records (automatic recovery runs on its own thread).
fn wait_for_records(m: &Maintainer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if records(m).ok() == Some(n) && owner(m, TABLE).shared().status() == TableStatus::Ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "table not restored: {:?}, status {}",
            records(m),
            owner(m, TABLE).shared().status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A table with 1000 records and one verified backup of them; the hub is closed.
fn table_with_a_backup(data: &Path) {
    let hub = open(data);
    fill(&hub.maintainer, 1000);
    assert!(backup(&hub.maintainer).failures.is_empty());
}

#[test]
fn a_missing_table_file_is_lost_not_empty_and_is_restored_automatically() {
    let dir = tempfile::tempdir().unwrap();
    table_with_a_backup(dir.path());
    std::fs::remove_file(table_file(dir.path())).unwrap();

    let hub = open(dir.path());
    wait_for_records(&hub.maintainer, 1000);
}

#[test]
fn an_empty_table_file_is_lost_and_is_restored_automatically() {
    let dir = tempfile::tempdir().unwrap();
    table_with_a_backup(dir.path());
    std::fs::write(table_file(dir.path()), b"").unwrap();

    let hub = open(dir.path());
    wait_for_records(&hub.maintainer, 1000);
    // The empty file went to quarantine, not away.
    let quarantine = hub.maintainer.quarantine().unwrap();
    assert_eq!(quarantine.len(), 1, "{quarantine:?}");
    assert_eq!(quarantine[0].bytes, 0);
}

#[test]
fn a_directory_at_the_table_path_is_restored_automatically_and_kept_in_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    table_with_a_backup(dir.path());
    let path = table_file(dir.path());
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("stray"), b"someone's file").unwrap();

    let hub = open(dir.path());
    wait_for_records(&hub.maintainer, 1000);
    assert!(path.is_file());
    let quarantine = hub.maintainer.quarantine().unwrap();
    assert_eq!(quarantine.len(), 1, "{quarantine:?}");
    assert_eq!(
        std::fs::read(quarantine[0].path.join("stray")).unwrap(),
        b"someone's file"
    );
}

#[test]
fn a_lost_table_with_no_backup_still_is_never_served_as_ok() {
    let dir = tempfile::tempdir().unwrap();
    {
        let hub = open(dir.path());
        fill(&hub.maintainer, 10);
    }
    std::fs::remove_file(table_file(dir.path())).unwrap();
    // Without automatic recovery the table stays lost and refuses service.
    let stores = Stores::open(dir.path(), StoresOptions::default()).unwrap();
    let status = stores.task_queue.owner().shared().status();
    assert!(matches!(status, TableStatus::Lost(_)), "{status}");
    assert!(matches!(
        stores.task_queue.owner().get(b"k000001"),
        Err(CallError::Unavailable { .. })
    ));
    drop(stores);
    // With it, the table serves empty but says that its data was lost.
    let hub = open(dir.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(
        owner(&hub.maintainer, TABLE).shared().status(),
        TableStatus::Degraded(_)
    ) {
        assert!(Instant::now() < deadline, "never degraded");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(records(&hub.maintainer).unwrap(), 0);
}

#[test]
fn no_backup_of_a_lost_table_is_taken_so_retention_keeps_its_good_backups() {
    let dir = tempfile::tempdir().unwrap();
    table_with_a_backup(dir.path());
    std::fs::rename(table_file(dir.path()), dir.path().join("moved-away")).unwrap();
    // Opened without automatic recovery, as a CLI verb run by hand does.
    let stores = Stores::open(dir.path(), StoresOptions::default()).unwrap();
    let m = Maintainer::new(Arc::new(stores), MaintenanceConfig::default());
    let keep = m.config().backup.keep;
    for _ in 0..keep + 1 {
        let run = backup(&m);
        assert!(run.backups.is_empty(), "{run:?}");
        assert_eq!(run.failures.len(), 1);
    }
    let backups = m.backups_of(TABLE, true).unwrap();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(backups[0].manifest.as_ref().unwrap().records, 1000);
    let report = restore_latest(&m);
    assert_eq!(report.records, 1000);
    assert_eq!(report.quarantined, None, "nothing was at the table path");
}

#[test]
fn the_table_path_holds_a_complete_file_at_every_instant_of_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    table_with_a_backup(dir.path());
    let hub = open(dir.path());
    let m = &hub.maintainer;
    let path = table_file(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let (mut looks, mut holes) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                looks += 1;
                if !std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() > 0) {
                    holes += 1;
                }
            }
            (looks, holes)
        })
    };
    for _ in 0..30 {
        let report = restore_latest(m);
        assert_eq!(report.outcome, RecoveryOutcome::Restored);
    }
    stop.store(true, Ordering::Relaxed);
    let (looks, holes) = watcher.join().unwrap();
    assert!(looks > 1000, "the watcher barely ran: {looks} looks");
    assert_eq!(
        holes, 0,
        "the table path was empty {holes} times of {looks}"
    );
    assert_eq!(records(m).unwrap(), 1000);
}

#[test]
fn a_manifest_of_an_unknown_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path());
    let m = &hub.maintainer;
    fill(m, 10);
    let older = backup(m).backups[0].id.clone();
    fill(m, 20);
    let newer = backup(m).backups[0].id.clone();
    let manifest = m.table_backup_dir(TABLE).join(format!("{newer}.json"));
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("\"format\": 1"), "{text}");
    std::fs::write(&manifest, text.replace("\"format\": 1", "\"format\": 99")).unwrap();

    let error = m.verify_backup(TABLE, &newer).unwrap_err();
    assert!(
        matches!(
            error,
            VerifyError::UnsupportedFormat {
                found: 99,
                supported: 1
            }
        ),
        "{error}"
    );
    assert!(matches!(
        m.restore(TABLE, BackupSelector::Id(newer), RecoveryTrigger::Manual),
        Err(RestoreError::Verify { .. })
    ));
    // The latest verified one is the older backup.
    let report = restore_latest(m);
    assert_eq!(report.backup_id, Some(older));
    assert_eq!(report.records, 10);
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn everything_holding_user_data_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hub = open(&data);
    let m = &hub.maintainer;
    fill(m, 10);
    backup(m);
    let report = restore_latest(m);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&table_file(&data)), 0o600);
    let quarantined = report.quarantined.unwrap();
    assert_eq!(mode(&quarantined), 0o600);
    assert_eq!(mode(quarantined.parent().unwrap()), 0o700);
    assert_eq!(mode(m.backup_dir()), 0o700);
    assert_eq!(mode(&m.table_backup_dir(TABLE)), 0o700);
    for entry in std::fs::read_dir(m.table_backup_dir(TABLE)).unwrap() {
        assert_eq!(mode(&entry.unwrap().path()), 0o600);
    }
}

#[test]
fn the_quarantine_is_bounded_but_keeps_the_newest_copy_of_each_table() {
    let dir = tempfile::tempdir().unwrap();
    // Every restore below quarantines a copy of the backup (the first one, the original).
    let one_file = {
        let hub = open(dir.path());
        fill(&hub.maintainer, 1000);
        backup(&hub.maintainer).backups[0].bytes
    };
    let config = MaintenanceConfig {
        quarantine: QuarantineConfig {
            max_age: Duration::from_secs(3600),
            // Room for two copies and a half.
            max_bytes: one_file * 5 / 2,
        },
        ..MaintenanceConfig::default()
    };
    let hub = open_recovering(dir.path(), config);
    let m = &hub.maintainer;
    let mut newest = None;
    for _ in 0..6 {
        let report = restore_latest(m);
        newest = report.quarantined;
    }
    let kept = m.quarantine().unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.iter().any(|f| Some(&f.path) == newest.as_ref()));
    assert_eq!(m.quarantine_pruned(), 4);
    assert_eq!(records(m).unwrap(), 1000);

    // A table's newest copy is kept even when it alone is over the budget.
    let config = MaintenanceConfig {
        quarantine: QuarantineConfig {
            max_age: Duration::from_secs(3600),
            max_bytes: 1,
        },
        ..MaintenanceConfig::default()
    };
    drop(hub);
    let hub = open_recovering(dir.path(), config);
    hub.maintainer.prune_quarantine();
    let kept = hub.maintainer.quarantine().unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(Some(&kept[0].path), newest.as_ref());
}
