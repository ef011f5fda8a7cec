//! Compaction runs over the nine tables: threshold skip, force, retry once, unknown table,
//! busy maintenance lock, strategies, events (two readers get every event while a third never
//! reads and publishing never blocks), history capped at 20 and persisted, health metrics,
//! and the scheduler.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use compaction::history::{HISTORY_FILE, HISTORY_LEN};
use compaction::{
    CompactOptions, CompactRequestError, CompactionConfig, Event, HealthStatus, Maintainer,
    MaintenanceConfig, Schedule, Strategy, TableOutcome, Trigger,
};
use store_owners::{Step, StepHook, TABLE_NAMES, TableStatus};
use support::{open, owner};

const TABLE: &str = "message_history";

fn config(compaction: CompactionConfig) -> MaintenanceConfig {
    MaintenanceConfig {
        compaction,
        ..MaintenanceConfig::default()
    }
}

/// Fill `table` with 2,000 records of 1 kB and remove all but 100: far over the default
/// threshold.
fn fragment(m: &Maintainer, table: &str) {
    let owner = owner(m, table);
    owner
        .write(|b| {
            for i in 0..2000u32 {
                b.put(format!("k{i:05}").as_bytes(), &[b'v'; 1000])?;
            }
            Ok(())
        })
        .unwrap();
    owner
        .write(|b| {
            for i in 100..2000u32 {
                b.delete(format!("k{i:05}").as_bytes())?;
            }
            Ok(())
        })
        .unwrap();
}

fn check_kept(m: &Maintainer, table: &str) {
    let owner = owner(m, table);
    for i in 0..100u32 {
        assert_eq!(
            owner.get(format!("k{i:05}").as_bytes()).unwrap(),
            Some(vec![b'v'; 1000])
        );
    }
    assert_eq!(owner.get(b"k00100").unwrap(), None);
}

fn manual() -> CompactOptions {
    CompactOptions::default()
}

/// A hook failing at the swap for the first `n_failures` calls there.
fn failing_hook(n_failures: u32) -> (StepHook, Arc<AtomicU32>) {
    let n_swaps = Arc::new(AtomicU32::new(0));
    let counter = n_swaps.clone();
    let hook = StepHook::new(move |step| {
        if step == Step::Swap && counter.fetch_add(1, Ordering::SeqCst) < n_failures {
            return Err("test fault".into());
        }
        Ok(())
    });
    (hook, n_swaps)
}

#[test]
fn tables_under_the_threshold_are_skipped_with_the_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), MaintenanceConfig::default());
    fragment(&m, TABLE);
    let ratio = owner(&m, TABLE).shared().metrics().fragmentation_ratio;
    assert!(ratio > 0.10, "the test table must be fragmented: {ratio}");
    let run = m.compact_all(manual()).unwrap();
    assert_eq!(run.trigger, "manual");
    let names: Vec<&str> = run.results.iter().map(|r| r.table.as_str()).collect();
    assert_eq!(names, TABLE_NAMES.to_vec(), "every table, in order");
    for result in &run.results {
        if result.table == TABLE {
            assert_eq!(result.outcome, TableOutcome::Compacted, "{result:?}");
            assert!(result.bytes_after < result.bytes_before, "{result:?}");
            assert!(!result.retried);
            assert!((result.fragmentation_before - ratio).abs() < 1e-9);
        } else {
            let TableOutcome::Skipped(reason) = &result.outcome else {
                panic!("{result:?}")
            };
            assert!(
                reason.contains("0.100"),
                "reason names the threshold: {reason}"
            );
            assert!(
                reason.contains(&format!("{:.3}", result.fragmentation_before)),
                "{reason}"
            );
            assert_eq!(result.bytes_before, result.bytes_after);
        }
    }
    check_kept(&m, TABLE);
    // Now packed: skipped at the next run.
    let run = m.compact_one(TABLE, manual()).unwrap();
    assert!(
        matches!(run.results[0].outcome, TableOutcome::Skipped(_)),
        "{run:?}"
    );
}

#[test]
fn force_ignores_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), MaintenanceConfig::default());
    owner(&m, "agent_channels").put(b"a", b"b").unwrap();
    let run = m
        .compact_all(CompactOptions {
            force: true,
            ..manual()
        })
        .unwrap();
    assert!(
        run.results
            .iter()
            .all(|r| r.outcome == TableOutcome::Compacted),
        "{run:?}"
    );
    assert_eq!(
        owner(&m, "agent_channels").get(b"a").unwrap(),
        Some(b"b".to_vec())
    );
}

#[test]
fn in_place_strategy_compacts_through_redb() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(
        dir.path(),
        config(CompactionConfig {
            strategy: Strategy::InPlace,
            ..CompactionConfig::default()
        }),
    );
    fragment(&m, TABLE);
    let run = m.compact_one(TABLE, manual()).unwrap();
    let result = &run.results[0];
    assert_eq!(result.outcome, TableOutcome::Compacted, "{result:?}");
    assert!(result.bytes_after <= result.bytes_before, "{result:?}");
    check_kept(&m, TABLE);
}

#[test]
fn a_failure_is_retried_once() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), MaintenanceConfig::default());
    fragment(&m, TABLE);
    let events = m.events().subscribe();

    // A fault on the first attempt only: compacted on the second.
    let (hook, n_swaps) = failing_hook(1);
    m.set_compaction_hook(Some(hook));
    let run = m.compact_one(TABLE, manual()).unwrap();
    let result = &run.results[0];
    assert_eq!(result.outcome, TableOutcome::Compacted, "{result:?}");
    assert!(result.retried);
    assert!(result.bytes_after < result.bytes_before, "{result:?}");
    assert_eq!(n_swaps.load(Ordering::SeqCst), 2);
    check_kept(&m, TABLE);
    let names: Vec<&str> = events.try_iter().map(|e| e.event.name()).collect();
    assert_eq!(names, ["compaction_complete"]);

    // A fault on both attempts: failed, left as it was, reported.
    fragment(&m, TABLE);
    let bytes_before = owner(&m, TABLE).shared().metrics().file_bytes;
    let (hook, n_swaps) = failing_hook(2);
    m.set_compaction_hook(Some(hook));
    let run = m.compact_one(TABLE, manual()).unwrap();
    let result = &run.results[0];
    let TableOutcome::Failed(reason) = &result.outcome else {
        panic!("{result:?}")
    };
    assert!(reason.contains("test fault"), "{reason}");
    assert!(result.retried);
    assert_eq!(n_swaps.load(Ordering::SeqCst), 2, "exactly one retry");
    assert_eq!(result.bytes_before, bytes_before);
    assert_eq!(owner(&m, TABLE).shared().status(), TableStatus::Ok);
    check_kept(&m, TABLE);
    let received: Vec<Event> = events.try_iter().map(|e| e.event).collect();
    assert_eq!(received.len(), 2, "{received:?}");
    assert!(matches!(&received[0], Event::CompactionComplete { run: r } if *r == run));
    let Event::CompactionFailed { failures } = &received[1] else {
        panic!("{received:?}")
    };
    assert_eq!(failures, &vec![result.clone()]);

    // Left for the next run, which succeeds.
    m.set_compaction_hook(None);
    let run = m.compact_one(TABLE, manual()).unwrap();
    assert_eq!(run.results[0].outcome, TableOutcome::Compacted);
    assert!(!run.results[0].retried);
}

#[test]
fn an_unknown_table_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), MaintenanceConfig::default());
    let error = m.compact_one("no_such_table", manual()).unwrap_err();
    assert_eq!(
        error,
        CompactRequestError::UnknownTable("no_such_table".into())
    );
    assert!(m.history().is_empty());
}

#[test]
fn a_run_in_progress_makes_a_non_waiting_request_busy() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), MaintenanceConfig::default());
    // The first run stops at the swap until released.
    let (entered_tx, entered) = crossbeam_channel::bounded::<()>(1);
    let (release, released) = crossbeam_channel::bounded::<()>(1);
    let hook = StepHook::new(move |step| {
        if step == Step::Swap {
            let _ = entered_tx.send(());
            let _ = released.recv();
        }
        Ok(())
    });
    let first = {
        let m = m.clone();
        m.set_compaction_hook(Some(hook));
        std::thread::spawn(move || {
            m.compact_one(
                TABLE,
                CompactOptions {
                    force: true,
                    ..manual()
                },
            )
        })
    };
    entered.recv().unwrap();
    let error = m
        .compact_all(CompactOptions {
            wait: false,
            ..manual()
        })
        .unwrap_err();
    assert_eq!(error, CompactRequestError::Busy);
    // The table keeps serving while it is being compacted.
    assert_eq!(owner(&m, "agent_mailbox").get(b"x").unwrap(), None);
    release.send(()).unwrap();
    let run = first.join().unwrap().unwrap();
    assert_eq!(run.results[0].outcome, TableOutcome::Compacted);
    assert_eq!(m.history().len(), 1, "the refused request left no run");
}

#[test]
fn history_is_capped_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), MaintenanceConfig::default());
    fragment(&m, TABLE);
    m.compact_one(TABLE, manual()).unwrap();
    for _ in 0..HISTORY_LEN + 3 {
        m.compact_one("agentcom_config", manual()).unwrap();
    }
    let history = m.history();
    assert_eq!(history.len(), HISTORY_LEN);
    // The oldest runs went first: the compaction of TABLE is gone.
    assert!(
        history
            .iter()
            .all(|run| run.results[0].table == "agentcom_config")
    );
    assert_eq!(m.last_compaction().as_ref(), history.last());
    assert!(
        history
            .windows(2)
            .all(|w| w[0].started_at <= w[1].started_at)
    );
    drop(m);

    let m = open(dir.path(), MaintenanceConfig::default());
    assert_eq!(m.history(), history);
    m.compact_one(
        "agentcom_config",
        CompactOptions {
            trigger: Trigger::Schedule,
            ..manual()
        },
    )
    .unwrap();
    assert_eq!(m.history().len(), HISTORY_LEN);
    assert_eq!(m.last_compaction().unwrap().trigger, "schedule");
}

#[test]
fn a_corrupt_history_file_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(HISTORY_FILE), b"{ not json").unwrap();
    let m = open(dir.path(), MaintenanceConfig::default());
    assert!(m.history().is_empty());
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{HISTORY_FILE}.corrupt-"))
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(std::fs::read(aside[0].path()).unwrap(), b"{ not json");
    m.compact_one(TABLE, manual()).unwrap();
    assert_eq!(m.history().len(), 1);
}

#[test]
fn two_subscribers_get_every_event_while_a_third_never_reads() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), MaintenanceConfig::default());
    let first = m.events().subscribe();
    let second = m.events().subscribe();
    let _never_read = m.events().subscribe();
    let n_runs = compaction::events::SUBSCRIBER_QUEUE + 20;
    let (mut got_first, mut got_second) = (Vec::new(), Vec::new());
    for _ in 0..n_runs {
        m.compact_one("agentcom_config", manual()).unwrap();
        got_first.extend(first.try_iter());
        got_second.extend(second.try_iter());
    }
    assert_eq!(got_first.len(), n_runs);
    assert_eq!(got_first, got_second);
    assert!(
        got_first
            .iter()
            .all(|e| e.topic == "backups" && e.event.name() == "compaction_complete")
    );
    // The silent subscriber's queue filled up; its overflow was dropped, nothing blocked.
    assert_eq!(m.events().dropped(), 20);
    let json = serde_json::to_value(&got_first[0]).unwrap();
    assert_eq!(json["topic"], "backups");
    assert_eq!(json["event"], "compaction_complete");
    assert_eq!(json["run"]["results"][0]["table"], "agentcom_config");
    assert_eq!(json["run"]["results"][0]["status"], "skipped");
}

#[test]
fn health_reports_every_table_without_asking_the_owners() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), MaintenanceConfig::default());
    fragment(&m, TABLE);
    let before = m.health_metrics();
    assert_eq!(before.tables.len(), TABLE_NAMES.len());
    let t = before.table(TABLE).unwrap();
    assert_eq!(t.status, HealthStatus::Ok);
    assert_eq!(t.records, 100);
    assert!(
        t.fragmentation_ratio > 0.10 && t.reclaimable_bytes > 0,
        "{t:?}"
    );
    assert!(t.last_compacted_at.is_none() && t.last_result.is_none());
    assert!(before.last_compaction.is_none());

    let run = m.compact_all(manual()).unwrap();
    // Degraded mode is entered through a replacement, as after a data loss.
    owner(&m, "task_queue")
        .replace(store_owners::ReplaceRequest {
            replacement: None,
            quarantine: m.data_dir().join("quarantine/task_queue.test.redb"),
            expected_records: None,
            degraded: Some("test".into()),
            replay_log: true,
        })
        .unwrap();
    let after = m.health_metrics();
    let t = after.table(TABLE).unwrap();
    assert_eq!(t.last_compacted_at, Some(run.started_at));
    assert_eq!(
        t.last_result.as_ref().unwrap().outcome,
        TableOutcome::Compacted
    );
    assert!(t.file_bytes < before.table(TABLE).unwrap().file_bytes);
    let skipped = after.table("agent_mailbox").unwrap();
    assert!(skipped.last_compacted_at.is_none());
    assert!(matches!(
        skipped.last_result.as_ref().unwrap().outcome,
        TableOutcome::Skipped(_)
    ));
    let degraded = after.table("task_queue").unwrap();
    assert_eq!(degraded.status, HealthStatus::Degraded);
    assert_eq!(degraded.status_detail.as_deref(), Some("test"));
    assert_eq!(after.last_compaction, Some(run.started_at));
    assert_eq!(after.history, vec![run]);
    assert!(after.next_compaction.is_none(), "no schedule started");
    let schedule = m.start_compaction_schedule().unwrap();
    let due = m.health_metrics().next_compaction.unwrap();
    assert_eq!(Some(due), schedule.next_run());
    assert!(
        due > std::time::SystemTime::now() + Duration::from_secs(3600),
        "6 h from now"
    );
    drop(schedule);
    assert!(m.health_metrics().next_compaction.is_none());
    // JSON out and back.
    let json = serde_json::to_string(&after).unwrap();
    let back: compaction::HealthReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, after);
}

#[test]
fn the_scheduler_never_overlaps_runs_and_stops_cleanly() {
    let running = Arc::new(AtomicBool::new(false));
    let n_overlaps = Arc::new(AtomicU32::new(0));
    let n_started = Arc::new(AtomicU32::new(0));
    let schedule = {
        let (running, n_overlaps, n_started) =
            (running.clone(), n_overlaps.clone(), n_started.clone());
        // Runs far slower than the interval.
        Schedule::start("test-schedule", Duration::from_millis(2), move || {
            if running.swap(true, Ordering::SeqCst) {
                n_overlaps.fetch_add(1, Ordering::SeqCst);
            }
            n_started.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            running.store(false, Ordering::SeqCst);
        })
        .unwrap()
    };
    assert_eq!(schedule.name(), "test-schedule");
    let deadline = Instant::now() + Duration::from_secs(5);
    while schedule.n_runs() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(schedule.n_runs() >= 3);
    schedule.stop();
    let n = n_started.load(Ordering::SeqCst);
    assert_eq!(n_overlaps.load(Ordering::SeqCst), 0);
    assert!(
        !running.load(Ordering::SeqCst),
        "stop waited for the run in progress"
    );
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(n_started.load(Ordering::SeqCst), n, "no run after stop");
}

#[test]
fn a_panicking_job_does_not_stop_the_schedule() {
    let n = Arc::new(AtomicU32::new(0));
    let schedule = {
        let n = n.clone();
        Schedule::start("panicky", Duration::from_millis(1), move || {
            n.fetch_add(1, Ordering::SeqCst);
            panic!("job panics");
        })
        .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while schedule.n_runs() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(n.load(Ordering::SeqCst) >= 2);
    drop(schedule);
}

#[test]
fn the_compaction_schedule_runs_compact_all() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(
        dir.path(),
        config(CompactionConfig {
            interval: Duration::from_millis(10),
            ..CompactionConfig::default()
        }),
    );
    fragment(&m, TABLE);
    let schedule = m.start_compaction_schedule().unwrap();
    let first_due = schedule.next_run();
    let deadline = Instant::now() + Duration::from_secs(8);
    while m.history().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(schedule);
    assert!(first_due.is_some());
    let history = m.history();
    assert!(!history.is_empty());
    assert_eq!(history[0].trigger, "schedule");
    assert_eq!(history[0].results.len(), TABLE_NAMES.len());
    let ours = history[0]
        .results
        .iter()
        .find(|r| r.table == TABLE)
        .unwrap();
    assert_eq!(ours.outcome, TableOutcome::Compacted);
    check_kept(&m, TABLE);
}

#[test]
fn a_table_that_did_not_open_is_skipped_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("agent_mailbox.redb"),
        vec![0xa5u8; 64 * 1024],
    )
    .unwrap();
    let m = open(dir.path(), MaintenanceConfig::default());
    let status = owner(&m, "agent_mailbox").shared().status();
    assert!(
        matches!(
            status,
            TableStatus::Corrupted(_) | TableStatus::Unavailable(_)
        ),
        "{status:?}"
    );
    let run = m
        .compact_all(CompactOptions {
            force: true,
            ..manual()
        })
        .unwrap();
    for result in &run.results {
        if result.table == "agent_mailbox" {
            let TableOutcome::Skipped(reason) = &result.outcome else {
                panic!("{result:?}")
            };
            assert!(reason.contains(&status.to_string()), "{reason}");
        } else {
            assert_eq!(result.outcome, TableOutcome::Compacted, "{result:?}");
        }
    }
    // The damaged file is left alone for recovery.
    assert_eq!(
        std::fs::read(dir.path().join("agent_mailbox.redb")).unwrap(),
        vec![0xa5u8; 64 * 1024]
    );
    let health = m.health_metrics();
    let mailbox = health.table("agent_mailbox").unwrap();
    assert!(matches!(
        mailbox.status,
        HealthStatus::Corrupted | HealthStatus::Unavailable
    ));
    assert!(mailbox.status_detail.is_some());
}

#[test]
fn a_stoppable_job_sees_the_stop_request() {
    let (started_tx, started) = crossbeam_channel::bounded::<()>(1);
    let saw_stop = Arc::new(AtomicBool::new(false));
    let schedule = {
        let saw_stop = saw_stop.clone();
        Schedule::start_stoppable("stoppable", Duration::from_millis(1), move |stopping| {
            let _ = started_tx.try_send(());
            let deadline = Instant::now() + Duration::from_secs(5);
            while !stopping.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            saw_stop.store(stopping.load(Ordering::SeqCst), Ordering::SeqCst);
        })
        .unwrap()
    };
    started.recv().unwrap();
    schedule.stop();
    assert!(saw_stop.load(Ordering::SeqCst));
}

#[test]
fn stopping_the_compaction_schedule_skips_the_tables_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(
        dir.path(),
        config(CompactionConfig {
            interval: Duration::from_millis(10),
            ..CompactionConfig::default()
        }),
    );
    fragment(&m, TABLE);
    fragment(&m, "task_dead_letter");
    // The first table's swap waits until the stop has been requested.
    let (entered_tx, entered) = crossbeam_channel::bounded::<()>(1);
    let (release, released) = crossbeam_channel::bounded::<()>(1);
    m.set_compaction_hook(Some(StepHook::new(move |step| {
        if step == Step::Swap && entered_tx.try_send(()).is_ok() {
            let _ = released.recv();
        }
        Ok(())
    })));
    let schedule = m.start_compaction_schedule().unwrap();
    entered.recv().unwrap();
    schedule.request_stop();
    release.send(()).unwrap();
    drop(schedule);
    let history = m.history();
    assert_eq!(history.len(), 1, "no run after the stop");
    let outcome = |table: &str| {
        history[0]
            .results
            .iter()
            .find(|r| r.table == table)
            .unwrap()
            .outcome
            .clone()
    };
    assert_eq!(outcome(TABLE), TableOutcome::Compacted);
    assert_eq!(
        outcome("task_dead_letter"),
        TableOutcome::Skipped("maintenance is stopping".into())
    );
    check_kept(&m, TABLE);
}
