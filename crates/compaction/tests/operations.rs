//! The registry of running operations (`Maintainer::operations`): an operation is listed
//! exactly while it runs, with the bytes it has moved growing towards a known total. The
//! operations are slowed by a real I/O rate (`[maintenance] io_rate`) so that another thread
//! sees them run; nothing here depends on how long they take.

mod support;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use compaction::{
    CompactOptions, Maintainer, MaintenanceConfig, OperationInfo, OperationKind, PacingConfig,
};
use support::{backup, flip_bytes, open, put_keys};

const TABLE: &str = "message_history";

/// `n` records of about 60 bytes each, in write jobs of 10 000.
fn fill(m: &Maintainer, n: usize) {
    for start in (0..n).step_by(10_000) {
        put_keys(m, TABLE, start..(start + 10_000).min(n), |i| {
            format!("{i:08}-a-value-long-enough-to-weigh-something-{i:08}").into_bytes()
        });
    }
}

fn paced(rate: &str) -> MaintenanceConfig {
    MaintenanceConfig {
        pacing: PacingConfig {
            io_rate: rate.parse().unwrap(),
        },
        ..MaintenanceConfig::default()
    }
}

/// Run `job` on a thread and read `m.operations()` until it ends; every reading of `kind`.
fn watch(
    m: &Arc<Maintainer>,
    kind: OperationKind,
    job: impl FnOnce(&Maintainer) + Send + 'static,
) -> Vec<OperationInfo> {
    let worker = {
        let m = Arc::clone(m);
        thread::spawn(move || job(&m))
    };
    let mut seen = Vec::new();
    while !worker.is_finished() {
        seen.extend(m.operations().into_iter().filter(|op| op.kind == kind));
        thread::sleep(Duration::from_millis(20));
    }
    worker.join().unwrap();
    seen
}

/// The readings of one operation: same id throughout, done never down nor past the total,
/// and done seen growing.
fn check_readings(seen: &[OperationInfo]) {
    assert!(seen.len() >= 2, "the operation was seen running: {seen:?}");
    assert!(
        seen.iter()
            .all(|op| op.id == seen[0].id && op.table == TABLE)
    );
    for pair in seen.windows(2) {
        assert!(pair[1].bytes_done >= pair[0].bytes_done, "{pair:?}");
    }
    for op in seen {
        assert!(op.bytes_total > 0, "{op:?}");
        assert!(op.bytes_done <= op.bytes_total, "{op:?}");
    }
    let (first, last) = (&seen[0], &seen[seen.len() - 1]);
    assert!(last.bytes_done > first.bytes_done, "{first:?} .. {last:?}");
}

#[test]
fn a_paced_backup_is_listed_while_it_runs_with_its_bytes_growing_then_removed() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), paced("8MiB/s"));
    fill(&m, 200_000);
    assert!(m.operations().is_empty());
    let seen = watch(&m, OperationKind::Backup, |m| {
        let run = backup(m, TABLE);
        assert!(run.failures.is_empty(), "{:?}", run.failures);
    });
    check_readings(&seen);
    // The copy, then the check and the hash of the copy; the estimate is replaced by the
    // real figure once the copy's size is known.
    let phases: Vec<&str> = seen.iter().map(|op| op.phase.as_str()).collect();
    assert!(phases.contains(&"copy"), "{phases:?}");
    assert!(seen.iter().any(|op| !op.total_estimated), "{seen:?}");
    assert!(m.operations().is_empty(), "{:?}", m.operations());
}

#[test]
fn a_paced_compaction_and_a_verification_are_listed_while_they_run() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), paced("8MiB/s"));
    fill(&m, 120_000);
    let seen = watch(&m, OperationKind::Compaction, |m| {
        let run = m
            .compact_one(
                TABLE,
                CompactOptions {
                    force: true,
                    ..CompactOptions::default()
                },
            )
            .unwrap();
        assert_eq!(run.results.len(), 1);
    });
    check_readings(&seen);
    assert!(m.operations().is_empty(), "{:?}", m.operations());

    let id = backup(&m, TABLE).backups[0].id.clone();
    let seen = watch(&m, OperationKind::Verify, move |m| {
        m.verify_backup(TABLE, &id).unwrap();
    });
    check_readings(&seen);
    assert!(m.operations().is_empty(), "{:?}", m.operations());
}

#[test]
fn an_operation_that_fails_is_removed_from_the_list_too() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path(), MaintenanceConfig::default());
    fill(&m, 2_000);
    let made = backup(&m, TABLE).backups[0].clone();
    flip_bytes(&made.path);
    assert!(m.verify_backup(TABLE, &made.id).is_err());
    assert!(m.operations().is_empty(), "{:?}", m.operations());
}
