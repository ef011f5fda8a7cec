//! Background scrubs: tables that open without verifying are walked while they serve; damage
//! found is restored automatically from the newest verified backup; a stopped scrub stops.

mod support;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use compaction::recovery::RecoveryOutcome;
use compaction::{
    Event, MaintenanceConfig, PacingConfig, ScrubConfig, ScrubOutcome, ScrubRequestError,
};
use store_core::IoRate;
use store_owners::{Stores, StoresOptions, TableStatus};
use support::{backup, contents, owner, put_keys, table_file};

const TABLE: &str = "channel_history";
const MARK: [u8; 900] = [0x5A; 900];

/// Flip a byte in the middle of each copy of [`MARK`] in `path`.
fn damage_the_marked_value(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let mut at = 0;
    while let Some(pos) = bytes[at..].windows(MARK.len()).position(|w| w == MARK) {
        let offset = at + pos + MARK.len() / 2;
        file.write_all_at(&[!bytes[offset]], offset as u64).unwrap();
        at += pos + MARK.len();
    }
    assert!(at > 0, "the marked value is in the file");
    file.sync_all().unwrap();
}

#[test]
fn damage_found_by_a_scrub_is_restored_from_the_newest_backup() {
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let m = support::open(dir.path(), MaintenanceConfig::default());
        put_keys(&m, TABLE, 0..2_000, |i| format!("v{i}").into_bytes());
        owner(&m, TABLE).put(b"marked", &MARK).unwrap();
        backup(&m, TABLE);
        contents(&m, TABLE)
    };
    damage_the_marked_value(&table_file(dir.path(), TABLE));

    // Opened as the daemon opens: no verification at open, reports wired to recovery.
    let (tx, reports) = crossbeam_channel::unbounded();
    let options = StoresOptions {
        corruption_reports: Some(tx),
        ..StoresOptions::default()
    };
    let stores = Stores::open(dir.path(), options).unwrap();
    let m = Arc::new(compaction::Maintainer::new(
        Arc::new(stores),
        MaintenanceConfig::default(),
    ));
    assert_eq!(owner(&m, TABLE).shared().status(), TableStatus::Ok);
    let events = m.events().subscribe();
    let _recovery = m.start_auto_recovery(reports).unwrap();

    let run = m.scrub_all(&Arc::new(AtomicBool::new(false))).unwrap();
    for result in &run.results {
        let expected = if result.table == TABLE {
            ScrubOutcome::Corrupted
        } else {
            ScrubOutcome::Clean
        };
        assert_eq!(result.outcome, expected, "{result:?}");
    }
    assert_eq!(
        m.last_scrub(TABLE).map(|r| r.outcome),
        Some(ScrubOutcome::Corrupted)
    );
    let report = loop {
        let envelope = events.recv_timeout(Duration::from_secs(30)).unwrap();
        if let Event::RecoveryComplete { report } = envelope.event {
            break report;
        }
    };
    assert_eq!(report.table, TABLE);
    assert_eq!(report.outcome, RecoveryOutcome::Restored);
    assert_eq!(owner(&m, TABLE).shared().status(), TableStatus::Ok);
    assert_eq!(contents(&m, TABLE), expected);
    // The restored file scrubs clean.
    let again = m
        .scrub_table(TABLE, &Arc::new(AtomicBool::new(false)))
        .unwrap();
    assert_eq!(again.outcome, ScrubOutcome::Clean, "{again:?}");
    assert!(m.scrub_bytes_read() > 0);
    assert!(m.scrub_progress().is_none());
}

#[test]
fn the_schedule_scrubs_soon_after_start_and_a_stop_request_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = MaintenanceConfig {
        scrub: ScrubConfig {
            after_start: Duration::from_millis(10),
            interval: Duration::from_secs(3600),
            max_rate: 0,
        },
        ..MaintenanceConfig::default()
    };
    let m = support::open(dir.path(), config);
    put_keys(&m, TABLE, 0..500, |i| format!("v{i}").into_bytes());
    let schedule = m.start_scrub_schedule().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while schedule.n_runs() == 0 {
        assert!(std::time::Instant::now() < deadline, "no scrub ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        m.last_scrub(TABLE).map(|r| r.outcome),
        Some(ScrubOutcome::Clean)
    );
    assert!(m.next_scrub().is_some());
    schedule.stop();

    // A run asked to stop before it starts scrubs nothing.
    let stopped = m.scrub_all(&Arc::new(AtomicBool::new(true))).unwrap();
    assert!(
        stopped
            .results
            .iter()
            .all(|r| r.outcome == ScrubOutcome::Skipped && r.bytes_read == 0)
    );
    assert_eq!(
        m.scrub_table("no_such_table", &Arc::new(AtomicBool::new(false))),
        Err(ScrubRequestError::UnknownTable("no_such_table".into()))
    );
}

#[test]
fn a_paced_scrub_waits_for_its_pace_and_an_unpaced_one_never_does() {
    let dir = tempfile::tempdir().unwrap();
    let scrub_at = |max_rate| {
        let config = MaintenanceConfig {
            scrub: ScrubConfig {
                max_rate,
                ..ScrubConfig::default()
            },
            // Only the scrub's own cap here; the shared pace is the next test's.
            pacing: PacingConfig {
                io_rate: IoRate::Unlimited,
            },
            ..MaintenanceConfig::default()
        };
        let m = support::open(dir.path(), config);
        put_keys(&m, TABLE, 0..2_000, |i| vec![(i % 251) as u8; 200]);
        let result = m
            .scrub_table(TABLE, &Arc::new(AtomicBool::new(false)))
            .unwrap();
        assert_eq!(result.outcome, ScrubOutcome::Clean, "{result:?}");
        (result.bytes_read, m.scrub_waited())
    };
    let (read, waited) = scrub_at(0);
    assert!(read > 400_000);
    assert_eq!(waited, Duration::ZERO);
    // At a quarter of the bytes per second, the walk must wait for most of a second.
    let (read, waited) = scrub_at(read * 4);
    assert!(read > 400_000);
    assert!(waited > Duration::ZERO);
}

#[test]
fn a_scrub_takes_its_share_of_the_maintenance_io_pace() {
    let dir = tempfile::tempdir().unwrap();
    let config = MaintenanceConfig {
        // No cap of the scrub's own: whatever it waits, it waits for the shared pacer.
        scrub: ScrubConfig {
            max_rate: 0,
            ..ScrubConfig::default()
        },
        pacing: PacingConfig {
            io_rate: "1MiB/s".parse().unwrap(),
        },
        ..MaintenanceConfig::default()
    };
    let m = support::open(dir.path(), config);
    put_keys(&m, TABLE, 0..2_000, |i| vec![(i % 251) as u8; 200]);
    let pacer = m.stores().pacer().clone();
    let before = pacer.stats();

    let result = m
        .scrub_table(TABLE, &Arc::new(AtomicBool::new(false)))
        .unwrap();
    assert_eq!(result.outcome, ScrubOutcome::Clean, "{result:?}");
    let after = pacer.stats();
    // Every byte the walk read went through the shared pacer, which made it wait.
    assert!(result.bytes_read > 400_000);
    assert!(after.bytes_moved - before.bytes_moved >= result.bytes_read);
    assert!(after.waited > before.waited);
    assert!(m.scrub_waited() > Duration::ZERO);
}
