//! Backups: taken hot under concurrent writes they restore to a consistent state (every record
//! of the snapshot, no write torn); files and dirs are private; verification catches flipped
//! bytes; retention keeps the newest verified backups; the schedule runs on its own; backups
//! and verification move their bytes through the configured I/O pacer.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use compaction::backup::{BackupFailure, BackupManifest, BackupRequestError, VerifyError};
use compaction::{
    BackupInfo, BackupOptions, BackupRun, BackupSelector, BackupState, BackupTrigger, Event,
    Maintainer, MaintenanceConfig, PacingConfig, RecoveryTrigger,
};
use support::{HeldCompaction, contents, flip_bytes, open, owner, put_keys};

const TABLE: &str = "message_history";

/// Write `n` records tagged `tag` to `table`, 100 per write job.
fn fill(m: &Maintainer, table: &str, n: usize, tag: &str) {
    for start in (0..n).step_by(100) {
        let tag = tag.to_string();
        put_keys(m, table, start..(start + 100).min(n), move |i| {
            format!("{tag}-{i}").into_bytes()
        });
    }
}

fn manual() -> BackupOptions {
    BackupOptions {
        trigger: BackupTrigger::Manual,
        wait: true,
    }
}

#[test]
fn a_backup_taken_under_concurrent_writes_restores_a_consistent_state() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), MaintenanceConfig::default());
    let stop = Arc::new(AtomicBool::new(false));
    let n_writers = 3;
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..n_writers).map(|_| AtomicU64::new(0)).collect());
    let writers: Vec<_> = (0..n_writers)
        .map(|w| {
            let owner = owner(&m, TABLE).clone();
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut i = 1u64;
                while !stop.load(Ordering::SeqCst) {
                    // A pair written in one job: a restored table must hold both or neither.
                    owner
                        .write(move |b| {
                            b.put(format!("w{w}-{i:08}-a").as_bytes(), &i.to_le_bytes())?;
                            b.put(format!("w{w}-{i:08}-b").as_bytes(), &i.to_le_bytes())
                        })
                        .expect("write pair");
                    acked[w].store(i, Ordering::SeqCst);
                    i += 1;
                }
            })
        })
        .collect();
    while acked.iter().any(|a| a.load(Ordering::SeqCst) < 20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    let run = m.backup_one(TABLE, manual()).expect("backup");
    let after: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    assert!(run.failures.is_empty(), "{:?}", run.failures);
    let backup = &run.backups[0];

    let report = m
        .restore(
            TABLE,
            BackupSelector::Id(backup.id.clone()),
            RecoveryTrigger::Manual,
        )
        .expect("restore");
    assert_eq!(report.records, backup.records);
    let restored = contents(&m, TABLE);
    assert_eq!(restored.len() as u64, backup.records);
    for w in 0..n_writers {
        let mut seen: BTreeMap<u64, Vec<char>> = BTreeMap::new();
        for key in restored.keys() {
            let key = String::from_utf8(key.clone()).unwrap();
            if let Some(rest) = key.strip_prefix(&format!("w{w}-")) {
                let (i, side) = rest.split_once('-').unwrap();
                seen.entry(i.parse().unwrap())
                    .or_default()
                    .push(side.chars().next().unwrap());
            }
        }
        // Each writer waits for its acknowledgement, so the snapshot holds a prefix of its
        // pairs: every pair acknowledged before the backup, none torn, nothing skipped.
        let last = *seen.keys().next_back().expect("some pairs");
        assert!(
            last >= before[w] && last <= after[w] + 1,
            "writer {w}: last {last}, acked {before:?}..{after:?}"
        );
        assert_eq!(
            seen.len() as u64,
            last,
            "writer {w}: pairs missing in the prefix"
        );
        for (i, sides) in &seen {
            assert_eq!(sides, &vec!['a', 'b'], "writer {w}: pair {i} torn");
        }
    }
}

#[test]
fn backups_are_private_and_carry_a_manifest_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), MaintenanceConfig::default());
    fill(&m, TABLE, 300, "v1");
    let run = m.backup_all(manual()).expect("backup all");
    assert!(run.failures.is_empty(), "{:?}", run.failures);
    assert_eq!(run.backups.len(), 9);
    let b = run.backups.iter().find(|b| b.table == TABLE).unwrap();
    assert_eq!(b.records, 300);

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(m.backup_dir()), 0o700);
    assert_eq!(mode(&m.table_backup_dir(TABLE)), 0o700);
    assert_eq!(mode(&b.path), 0o600);
    let manifest_path = b.path.with_extension("json");
    assert_eq!(mode(&manifest_path), 0o600);
    assert_eq!(
        b.path.file_name().unwrap().to_string_lossy(),
        format!("{}.redb", b.id)
    );
    assert!(
        b.id.len() == 20 && b.id.ends_with('Z') && b.id.as_bytes()[8] == b'T',
        "id {}",
        b.id
    );

    let manifest: BackupManifest =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(manifest.table, TABLE);
    assert_eq!(manifest.records, 300);
    assert_eq!(manifest.bytes, std::fs::metadata(&b.path).unwrap().len());
    assert_eq!(
        manifest.blake3,
        blake3::hash(&std::fs::read(&b.path).unwrap())
            .to_hex()
            .to_string()
    );

    let info = m.verify_backup(TABLE, &b.id).expect("verifies");
    assert_eq!(info.state, BackupState::Verified);
    // Verification never modifies the backup.
    assert_eq!(
        manifest.blake3,
        blake3::hash(&std::fs::read(&b.path).unwrap())
            .to_hex()
            .to_string()
    );
    let listed = m.list_backups(true).expect("list");
    assert_eq!(listed.len(), 9);
    assert!(
        listed.iter().all(|i| i.state == BackupState::Verified),
        "{listed:?}"
    );
    assert_eq!(m.last_backup(TABLE).map(|i| i.id), Some(b.id.clone()));
    // Listings and runs travel as JSON (admin API, events) and come back unchanged.
    let json = serde_json::to_string(&listed).unwrap();
    assert!(json.contains(r#""state":"verified""#), "{json}");
    assert_eq!(
        serde_json::from_str::<Vec<BackupInfo>>(&json).unwrap(),
        listed
    );
    let json = serde_json::to_string(&run).unwrap();
    assert_eq!(serde_json::from_str::<BackupRun>(&json).unwrap(), run);
    // No work file is left behind: the backup, its manifest, the record of its verification.
    let mut names: Vec<String> = std::fs::read_dir(m.table_backup_dir(TABLE))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let id = &b.id;
    assert_eq!(
        names,
        [
            format!("{id}.json"),
            format!("{id}.redb"),
            format!("{id}.verified")
        ],
    );
}

#[test]
fn a_backup_with_flipped_bytes_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), MaintenanceConfig::default());
    fill(&m, TABLE, 2000, "v1");
    let run = m.backup_one(TABLE, manual()).unwrap();
    let b = &run.backups[0];
    flip_bytes(&b.path);
    match m.verify_backup(TABLE, &b.id) {
        Err(VerifyError::ChecksumMismatch { .. }) => {}
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    let listed = m.backups_of(TABLE, true).unwrap();
    assert!(
        matches!(listed[0].state, BackupState::Corrupt(_)),
        "{listed:?}"
    );
    // Without verification, only the manifest and the size are checked: the flip goes unseen.
    assert_eq!(
        m.backups_of(TABLE, false).unwrap()[0].state,
        BackupState::Unchecked
    );

    // A manifest edited to match the flipped file still fails: redb's integrity check.
    let manifest_path = b.path.with_extension("json");
    let mut manifest: BackupManifest =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest.blake3 = blake3::hash(&std::fs::read(&b.path).unwrap())
        .to_hex()
        .to_string();
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    match m.verify_backup(TABLE, &b.id) {
        Err(e @ (VerifyError::Corrupted(_) | VerifyError::RecordCountMismatch { .. })) => {
            assert!(e.is_corruption())
        }
        other => panic!("expected the integrity check to fail, got {other:?}"),
    }

    // A manifest whose record count lies is caught too.
    let run = m.backup_one(TABLE, manual()).unwrap();
    let b = &run.backups[0];
    let manifest_path = b.path.with_extension("json");
    let mut manifest: BackupManifest =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest.records += 1;
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    assert!(matches!(
        m.verify_backup(TABLE, &b.id),
        Err(VerifyError::RecordCountMismatch {
            expected: 2001,
            actual: 2000
        })
    ));
}

#[test]
fn retention_keeps_the_newest_verified_backups_and_never_the_only_good_one_away() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = MaintenanceConfig::default();
    config.backup.keep = 2;
    let m = open(dir.path(), config);
    let ids = |m: &Maintainer| -> Vec<String> {
        m.backups_of(TABLE, false)
            .unwrap()
            .into_iter()
            .map(|b| b.id)
            .collect()
    };

    let mut made = Vec::new();
    for round in 0..4 {
        fill(&m, TABLE, 50 + round, &format!("r{round}"));
        made.push(m.backup_one(TABLE, manual()).unwrap().backups[0].id.clone());
    }
    assert_eq!(ids(&m), vec![made[3].clone(), made[2].clone()]);

    // A corrupt backup newer than the oldest kept good one stays (for an operator to look at).
    let corrupt = made[3].clone();
    flip_bytes(&m.table_backup_dir(TABLE).join(format!("{corrupt}.redb")));
    let newer = m.backup_one(TABLE, manual()).unwrap().backups[0].clone();
    assert!(newer.removed.is_empty(), "{:?}", newer.removed);
    assert_eq!(
        ids(&m),
        vec![newer.id.clone(), corrupt.clone(), made[2].clone()]
    );

    // Once two newer verified backups exist, it goes, with the older good one.
    let newest = m.backup_one(TABLE, manual()).unwrap().backups[0].clone();
    assert_eq!(newest.removed, vec![corrupt.clone(), made[2].clone()]);
    assert_eq!(ids(&m), vec![newest.id.clone(), newer.id.clone()]);

    // keep = 0 still keeps one.
    let dir2 = tempfile::tempdir().unwrap();
    let mut config = MaintenanceConfig::default();
    config.backup.keep = 0;
    let m2 = open(dir2.path(), config);
    fill(&m2, TABLE, 10, "x");
    m2.backup_one(TABLE, manual()).unwrap();
    let last = m2.backup_one(TABLE, manual()).unwrap().backups[0]
        .id
        .clone();
    assert_eq!(ids(&m2), vec![last]);
}

#[test]
fn backup_requests_for_unknown_tables_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), MaintenanceConfig::default());
    assert!(
        matches!(m.backup_one("nope", manual()), Err(BackupRequestError::UnknownTable(t)) if t == "nope")
    );
    assert!(m.backups_of("nope", false).is_err());
    assert!(matches!(
        m.verify_backup("nope", "20260101T000000.000Z"),
        Err(VerifyError::UnknownTable(_))
    ));
    assert!(matches!(
        m.verify_backup(TABLE, "../x"),
        Err(VerifyError::InvalidBackupId(_))
    ));
    assert!(matches!(
        m.verify_backup(TABLE, "20260101T000000.000Z"),
        Err(VerifyError::NotFound { .. })
    ));
    assert!(m.last_backup(TABLE).is_none());
}

#[test]
fn the_schedule_backs_up_every_table_and_publishes_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = MaintenanceConfig::default();
    config.backup.interval = Duration::from_millis(50);
    let m = open(dir.path(), config);
    fill(&m, TABLE, 20, "s");
    let events = m.events().subscribe();
    let schedule = m.start_backup_schedule().expect("schedule");
    let run = loop {
        let envelope = events
            .recv_timeout(Duration::from_secs(30))
            .expect("a backup event");
        if let Event::BackupComplete { run } = envelope.event {
            break run;
        }
    };
    schedule.stop();
    assert_eq!(run.trigger, BackupTrigger::Schedule);
    assert_eq!(run.backups.len(), 9, "{:?}", run.failures);
    assert_eq!(
        run.backups
            .iter()
            .find(|b| b.table == TABLE)
            .unwrap()
            .records,
        20
    );
    // Events serialize with the topic and the event name.
    let json = serde_json::to_value(Event::BackupFailed {
        failures: vec![BackupFailure {
            table: TABLE.into(),
            error: "x".into(),
            corruption: false,
        }],
    })
    .unwrap();
    assert_eq!(json["event"], "backup_failed");
}

#[test]
fn a_backup_waits_for_or_refuses_a_compaction_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), MaintenanceConfig::default());
    fill(&m, TABLE, 200, "v1");
    // A compaction that holds the maintenance lock until told to go on.
    let held = HeldCompaction::start(&m, TABLE);
    let refused = m.backup_one(
        TABLE,
        BackupOptions {
            trigger: BackupTrigger::Manual,
            wait: false,
        },
    );
    assert!(
        matches!(refused, Err(BackupRequestError::Busy)),
        "{refused:?}"
    );
    assert!(matches!(
        m.backup_all(BackupOptions {
            trigger: BackupTrigger::Manual,
            wait: false
        }),
        Err(BackupRequestError::Busy)
    ));
    let waiting = {
        let m = m.clone();
        std::thread::spawn(move || m.backup_one(TABLE, manual()))
    };
    held.finish();
    let run = waiting
        .join()
        .unwrap()
        .expect("the waiting backup ran after the compaction");
    assert_eq!(run.backups[0].records, 200);
}

#[test]
fn backups_and_their_verification_are_paced_by_the_configured_io_rate() {
    let dir = tempfile::tempdir().unwrap();
    let config = MaintenanceConfig {
        pacing: PacingConfig {
            io_rate: "1MiB/s".parse().unwrap(),
        },
        ..MaintenanceConfig::default()
    };
    let m = open(dir.path(), config);
    let pacer = m.stores().pacer().clone();
    assert_eq!(pacer.stats().mode, "1MiB/s".parse().unwrap());
    fill(&m, TABLE, 2_000, "paced");
    let commits = pacer.stats().n_commits;
    assert!(commits >= 20, "the owners report their commits: {commits}");

    let run = m.backup_one(TABLE, manual()).unwrap();
    let backup = &run.backups[0];
    let after_backup = pacer.stats();
    // The copy, the integrity check and the hash each moved the file's worth of bytes.
    assert!(
        after_backup.bytes_moved >= 2 * backup.bytes,
        "{} bytes moved for a {}-byte backup",
        after_backup.bytes_moved,
        backup.bytes
    );
    assert!(after_backup.waited > Duration::ZERO);

    // A full verification reads the backup and writes its work copy through the pacer too.
    m.verify_backup(TABLE, &backup.id).unwrap();
    assert!(pacer.stats().bytes_moved >= after_backup.bytes_moved + 2 * backup.bytes);
    assert_eq!(
        m.health_metrics().pacing.bytes_moved,
        pacer.stats().bytes_moved
    );
}

#[test]
fn a_listing_says_when_each_backup_was_last_fully_verified() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), MaintenanceConfig::default());
    fill(&m, TABLE, 200, "v");
    let run = m.backup_one(TABLE, manual()).unwrap();
    let id = run.backups[0].id.clone();
    let listed = |m: &Maintainer| m.backups_of(TABLE, false).unwrap().remove(0);

    // Verified as it was made: the listing says so without reading the file again.
    let first = listed(&m);
    assert_eq!(first.state, BackupState::Unchecked);
    let created = first.manifest.as_ref().unwrap().created_at;
    assert_eq!(first.verified_at, Some(created));

    // A full verification is remembered (to the second).
    std::thread::sleep(Duration::from_millis(1100));
    let verified = m.verify_backup(TABLE, &id).unwrap();
    let later = listed(&m).verified_at.unwrap();
    assert!(later > created, "{later:?} after {created:?}");
    assert!(later <= verified.verified_at.unwrap());

    // Retention removes the record with the backup.
    let config = MaintenanceConfig {
        backup: compaction::BackupConfig {
            keep: 1,
            ..Default::default()
        },
        ..MaintenanceConfig::default()
    };
    drop(m);
    let m = open(dir.path(), config);
    m.backup_one(TABLE, manual()).unwrap();
    let marker = m.table_backup_dir(TABLE).join(format!("{id}.verified"));
    assert!(!marker.exists());
    assert_eq!(m.backups_of(TABLE, false).unwrap().len(), 1);
}
