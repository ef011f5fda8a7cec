//! Fault campaign: every write and every fsync that a compaction, a backup and a restore make
//! through redb is failed in turn (each step, not a sample). After each fault the source table
//! must still serve all its data, the operation must report the failure (or have survived it
//! through its retry), no temporary file may survive the next open, and the data dir must
//! reopen with every acknowledged write.
//!
//! Faults are injected with `StoreOptions::io_faults`, which opens the table file and the
//! files its snapshots are copied into through `store_core::FaultBackend`. The plan's
//! counters are shared by all nine tables; only the table under test does I/O while armed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use compaction::{
    BackupOptions, BackupSelector, CompactOptions, CompactionConfig, Maintainer, MaintenanceConfig,
    RecoveryTrigger, Strategy, TableOutcome,
};
use store_core::{FaultPlan, KeyRange, StoreOptions};
use store_owners::{OwnerConfig, Stores, StoresOptions, TableStatus};

const TABLE: &str = "channel_history";
const N_RECORDS: u32 = 240;

fn open(data: &Path, plan: Option<Arc<FaultPlan>>) -> Arc<Maintainer> {
    let options = StoresOptions {
        owner: OwnerConfig {
            store: StoreOptions {
                io_faults: plan,
                ..StoreOptions::default()
            },
            ..OwnerConfig::default()
        },
        ..StoresOptions::default()
    };
    let stores = Stores::open(data, options).expect("open stores");
    let config = MaintenanceConfig {
        compaction: CompactionConfig {
            strategy: Strategy::Online,
            ..CompactionConfig::default()
        },
        ..MaintenanceConfig::default()
    };
    Arc::new(Maintainer::new(Arc::new(stores), config))
}

/// Write `N_RECORDS` records and delete every other one; returns the acknowledged state.
fn load(m: &Maintainer) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let owner = m.stores().owner(TABLE).expect("known table");
    let mut model = BTreeMap::new();
    for i in 0..N_RECORDS {
        let (k, v) = (
            format!("key-{i:05}").into_bytes(),
            vec![(i % 251) as u8; 300],
        );
        model.insert(k, v);
    }
    let puts = model.clone();
    owner
        .write(move |b| {
            for (k, v) in &puts {
                b.put(k, v)?;
            }
            Ok(())
        })
        .expect("load");
    let doomed: Vec<Vec<u8>> = model.keys().step_by(2).cloned().collect();
    for k in &doomed {
        model.remove(k);
    }
    owner
        .write(move |b| {
            for k in &doomed {
                b.delete(k)?;
            }
            Ok(())
        })
        .expect("delete half");
    model
}

fn table_state(m: &Maintainer) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let owner = m.stores().owner(TABLE).expect("known table");
    owner
        .scan(KeyRange::all(), usize::MAX)
        .expect("the table serves")
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect()
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walk(dir) {
        let name = entry
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.contains(".compact-") || name.contains(".tmp") || name.ends_with(".partial") {
            found.push(entry.display().to_string());
        }
    }
    found
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Reopen the data dir without faults: the table opens by itself, holds `expected`, and no
/// temporary file survived the open.
fn check_reopened(data: &Path, expected: &BTreeMap<Vec<u8>, Vec<u8>>, context: &str) {
    let m = open(data, None);
    let owner = m.stores().owner(TABLE).expect("known table");
    assert_eq!(
        owner.shared().status(),
        TableStatus::Ok,
        "{context}: status after reopen"
    );
    assert_eq!(&table_state(&m), expected, "{context}: data after reopen");
    let left = leftovers(data);
    assert!(
        left.is_empty(),
        "{context}: temporary files survived the reopen: {left:?}"
    );
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Write,
    Fsync,
}

fn arm(plan: &FaultPlan, kind: Kind, n: u64, sticky: bool) {
    plan.set_sticky(sticky);
    match kind {
        Kind::Write => plan.fail_write_after(n),
        Kind::Fsync => plan.fail_sync_after(n),
    }
}

fn count(plan: &FaultPlan, kind: Kind) -> u64 {
    match kind {
        Kind::Write => plan.writes(),
        Kind::Fsync => plan.syncs(),
    }
}

/// I/O calls of one kind an operation makes, measured on a dry run.
fn measure(kind: Kind, setup: impl Fn(&Maintainer), op: impl Fn(&Maintainer)) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let m = open(dir.path(), Some(plan.clone()));
    setup(&m);
    let before = count(&plan, kind);
    op(&m);
    count(&plan, kind) - before
}

fn compact(m: &Maintainer) -> compaction::history::TableResult {
    let run = m
        .compact_one(
            TABLE,
            CompactOptions {
                force: true,
                ..CompactOptions::default()
            },
        )
        .expect("compaction runs");
    run.results.into_iter().next().expect("one result")
}

fn compaction_campaign(kind: Kind) {
    let n = measure(
        kind,
        |m| {
            load(m);
        },
        |m| {
            compact(m);
        },
    );
    assert!(n > 0, "a compaction makes {kind:?} calls");
    let mut n_retried = 0;
    for step in 1..=n {
        for sticky in [false, true] {
            let context = format!("compaction, {kind:?} #{step} of {n}, sticky {sticky}");
            let dir = tempfile::tempdir().unwrap();
            let plan = FaultPlan::new();
            let m = open(dir.path(), Some(plan.clone()));
            let model = load(&m);
            arm(&plan, kind, step, sticky);
            let result = compact(&m);
            let fired = plan.failures() > 0;
            let threads = plan.failed_threads();
            plan.disarm();
            match (&result.outcome, sticky) {
                // A one-shot fault fails the first attempt; the retry succeeds. The one
                // exception: a fault while closing the replaced file, already unlinked after
                // the swap, is not a failure of the compaction.
                (TableOutcome::Compacted, false) => {
                    let after_swap = threads.iter().all(|t| t == "close-replaced");
                    assert!(
                        !fired || result.retried || after_swap,
                        "{context}: fault fired on {threads:?} but no retry: {result:?}"
                    );
                    n_retried += usize::from(result.retried);
                }
                // A dead disk fails both attempts: reported, retried once.
                (TableOutcome::Failed(_), true) => {
                    assert!(
                        result.retried,
                        "{context}: failed without a retry: {result:?}"
                    )
                }
                // A dead disk from the close of the replaced file on: the compaction is done.
                (TableOutcome::Compacted, true) => {
                    assert!(
                        threads.iter().all(|t| t == "close-replaced"),
                        "{context}: sticky fault on {threads:?} yet compacted: {result:?}"
                    );
                }
                (outcome, _) => panic!("{context}: unexpected outcome {outcome:?}"),
            }
            assert_eq!(
                table_state(&m),
                model,
                "{context}: the table serves its data"
            );
            drop(m);
            check_reopened(dir.path(), &model, &context);
        }
    }
    assert!(
        n_retried > 0,
        "some one-shot fault was survived through the retry"
    );
    println!(
        "compaction: {n} {kind:?} calls, each failed once and for good: {} faults, {n_retried} survived by the retry",
        2 * n
    );
}

#[test]
fn every_write_of_a_compaction_fails_in_turn() {
    compaction_campaign(Kind::Write);
}

#[test]
fn every_fsync_of_a_compaction_fails_in_turn() {
    compaction_campaign(Kind::Fsync);
}

fn backup_campaign(kind: Kind) {
    let backup = |m: &Maintainer| {
        m.backup_one(TABLE, BackupOptions::default())
            .expect("backup runs")
    };
    let n = measure(
        kind,
        |m| {
            load(m);
        },
        |m| {
            backup(m);
        },
    );
    assert!(n > 0, "a backup makes {kind:?} calls");
    for step in 1..=n {
        let context = format!("backup, {kind:?} #{step} of {n}");
        let dir = tempfile::tempdir().unwrap();
        let plan = FaultPlan::new();
        let m = open(dir.path(), Some(plan.clone()));
        let model = load(&m);
        arm(&plan, kind, step, false);
        let run = backup(&m);
        let fired = plan.failures() > 0;
        plan.disarm();
        if fired {
            assert_eq!(
                run.failures.len(),
                1,
                "{context}: the failure is reported: {run:?}"
            );
            assert!(
                run.backups.is_empty(),
                "{context}: no backup claimed: {run:?}"
            );
        }
        assert_eq!(
            table_state(&m),
            model,
            "{context}: the table serves its data"
        );
        // Whatever the backup dir holds now verifies, and a new backup works.
        for info in m.list_backups(true).expect("list") {
            assert!(
                matches!(info.state, compaction::BackupState::Verified),
                "{context}: a listed backup does not verify: {info:?}"
            );
        }
        let again = backup(&m);
        assert!(
            again.failures.is_empty(),
            "{context}: next backup fails: {again:?}"
        );
        drop(m);
        check_reopened(dir.path(), &model, &context);
    }
    println!("backup: {n} {kind:?} calls, each failed in turn");
}

#[test]
fn every_write_of_a_backup_fails_in_turn() {
    backup_campaign(Kind::Write);
}

#[test]
fn every_fsync_of_a_backup_fails_in_turn() {
    backup_campaign(Kind::Fsync);
}

fn restore_campaign(kind: Kind) {
    // The backup holds `model`; the live table then diverges to `live`. A restore ends in
    // one of the two states, never anything else, and the table keeps serving.
    let prepare = |m: &Maintainer| {
        let model = load(m);
        let run = m
            .backup_one(TABLE, BackupOptions::default())
            .expect("backup runs");
        assert!(run.failures.is_empty(), "backup failed: {run:?}");
        let owner = m.stores().owner(TABLE).expect("known table");
        owner
            .put(b"after-backup", b"only in the live table")
            .expect("put");
        let mut live = model.clone();
        live.insert(b"after-backup".to_vec(), b"only in the live table".to_vec());
        (model, live)
    };
    let restore = |m: &Maintainer| {
        m.restore(
            TABLE,
            BackupSelector::LatestVerified,
            RecoveryTrigger::Manual,
        )
    };
    let n = measure(
        kind,
        |m| {
            prepare(m);
        },
        |m| {
            restore(m).expect("restore");
        },
    );
    for step in 1..=n.max(1) {
        let context = format!("restore, {kind:?} #{step} of {n}");
        let dir = tempfile::tempdir().unwrap();
        let plan = FaultPlan::new();
        let m = open(dir.path(), Some(plan.clone()));
        let (backed_up, live) = prepare(&m);
        arm(&plan, kind, step, false);
        let result = restore(&m);
        let fired = plan.failures() > 0;
        plan.disarm();
        let state = table_state(&m);
        match &result {
            Ok(_) => assert_eq!(state, backed_up, "{context}: restored data"),
            Err(e) => {
                assert!(fired, "{context}: restore failed without a fault: {e}");
                assert_eq!(state, live, "{context}: the original table keeps serving");
            }
        }
        let expected = state;
        drop(m);
        check_reopened(dir.path(), &expected, &context);
    }
    println!("restore: {n} {kind:?} calls, each failed in turn");
}

#[test]
fn every_write_of_a_restore_fails_in_turn() {
    restore_campaign(Kind::Write);
}

#[test]
fn every_fsync_of_a_restore_fails_in_turn() {
    restore_campaign(Kind::Fsync);
}
