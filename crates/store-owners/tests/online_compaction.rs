//! Online compaction through an owner: the table keeps serving while its live records are
//! copied into a fresh file, and no acknowledged write is lost or served stale, whether the
//! compaction succeeds, fails at any step, is abandoned for a long pause, or the process is
//! killed between steps.
//!
//! The model: every writer records what was acknowledged to it (a key and its value, or its
//! removal); each key is written by one thread only, once, so the acknowledged state is the
//! only correct answer for a read that starts after the acknowledgement.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use store_core::RedbStore;
use store_owners::{
    MaintenanceError, OnlineConfig, OwnerConfig, OwnerHandle, Step, StepHook, TableStatus,
};

/// Acknowledged state: `Some(value)` for a put, `None` for a delete.
type Acked = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Which steps a hook fails.
type FailsAt = fn(Step) -> bool;

const TABLE: &str = "message_history";

fn table_path(dir: &Path) -> PathBuf {
    dir.join(format!("{TABLE}.redb"))
}

fn start(dir: &Path) -> OwnerHandle {
    OwnerHandle::start::<RedbStore>(TABLE, &table_path(dir), OwnerConfig::default())
}

fn key(n: u32) -> Vec<u8> {
    format!("pre-{n:06}").into_bytes()
}

fn value(n: u32, len: usize) -> Vec<u8> {
    let mut v = format!("value-{n}-").into_bytes();
    v.resize(len, b'x');
    v
}

/// `n` records of `len` bytes in one commit, then every other one deleted in another.
fn preload_half_deleted(owner: &OwnerHandle, n: u32, len: usize) -> Acked {
    owner
        .write(move |b| {
            for i in 0..n {
                b.put(&key(i), &value(i, len))?;
            }
            Ok(())
        })
        .unwrap();
    owner
        .write(move |b| {
            for i in (0..n).step_by(2) {
                b.delete(&key(i))?;
            }
            Ok(())
        })
        .unwrap();
    (0..n)
        .map(|i| (key(i), (i % 2 == 1).then(|| value(i, len))))
        .collect()
}

fn check(owner: &OwnerHandle, acked: &Acked) {
    for (k, v) in acked {
        assert_eq!(
            &owner.get(k).unwrap(),
            v,
            "key {}",
            String::from_utf8_lossy(k)
        );
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".compact-"))
        .collect()
}

/// A hook that writes `n_keys` new keys through `owner` when the snapshot copy is done (so
/// that a catch-up round is needed), recording them in `acked`, and fails at `fail_at`.
fn writing_hook(
    owner: &OwnerHandle,
    acked: &Arc<Mutex<Acked>>,
    n_keys: u32,
    fail_at: Option<FailsAt>,
) -> StepHook {
    let owner = owner.clone();
    let acked = acked.clone();
    StepHook::new(move |step| {
        if step == Step::Copied {
            for i in 0..n_keys {
                let (k, v) = (format!("hook-{i:04}").into_bytes(), value(i, 50));
                owner.put(&k, &v).map_err(|e| e.to_string())?;
                acked.lock().unwrap().insert(k, Some(v));
            }
        }
        match fail_at {
            Some(fails) if fails(step) => Err(format!("test fault at {step:?}")),
            _ => Ok(()),
        }
    })
}

#[test]
fn concurrent_readers_and_writers_lose_nothing_and_read_nothing_stale() {
    let dir = tempfile::tempdir().unwrap();
    let owner = start(dir.path());
    let preloaded = preload_half_deleted(&owner, 2000, 200);
    // Acknowledged writes of every thread, published after each acknowledgement.
    let acked: Arc<Mutex<Acked>> = Arc::new(Mutex::new(preloaded));
    let stop = Arc::new(AtomicBool::new(false));
    let n_stale = Arc::new(AtomicU32::new(0));

    let writers: Vec<_> = (0..3u32)
        .map(|t| {
            let (owner, acked, stop) = (owner.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) || i < 20 {
                    // New keys, and removal of preloaded keys this thread alone touches.
                    let k = format!("w{t}-{i:06}").into_bytes();
                    let v = value(i, 120);
                    owner.put(&k, &v).unwrap();
                    acked.lock().unwrap().insert(k, Some(v));
                    let victim = key(1 + 2 * (t + 3 * i));
                    if victim < key(2000) {
                        owner.delete(&victim).unwrap();
                        acked.lock().unwrap().insert(victim, None);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2u32)
        .map(|r| {
            let (owner, acked, stop, n_stale) =
                (owner.clone(), acked.clone(), stop.clone(), n_stale.clone());
            std::thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) || n < 50 {
                    // An entry acknowledged before this read starts must be read as acknowledged.
                    let sample: Vec<(Vec<u8>, Option<Vec<u8>>)> = {
                        let acked = acked.lock().unwrap();
                        let skip = (n * 7919 + r as usize * 104_729) % acked.len().max(1);
                        // Only entries that never change again: new keys (written once) and
                        // removals; a preloaded value may be removed while this read runs.
                        acked
                            .iter()
                            .skip(skip)
                            .filter(|(k, v)| v.is_none() || !k.starts_with(b"pre-"))
                            .take(8)
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    };
                    for (k, v) in sample {
                        if owner.get(&k).unwrap() != v {
                            n_stale.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    n += 1;
                }
            })
        })
        .collect();

    let config = OnlineConfig {
        final_keys: 8,
        hook: Some(writing_hook(&owner, &acked, 40, None)),
        ..OnlineConfig::default()
    };
    let report = owner.compact_online(config).unwrap();
    // The hook wrote 40 keys after the copy: at least one catch-up round ran.
    assert!(report.catch_up_rounds >= 1, "{report:?}");
    // The phases are in order: the copy, its catch-up rounds, then the pause, within the run.
    assert!(report.copy > std::time::Duration::ZERO, "{report:?}");
    assert!(report.copy <= report.paused_at, "{report:?}");
    assert!(
        report.paused_at + report.max_pause <= report.duration,
        "{report:?}"
    );
    stop.store(true, Ordering::Relaxed);
    for t in writers.into_iter().chain(readers) {
        t.join().unwrap();
    }
    assert_eq!(
        n_stale.load(Ordering::Relaxed),
        0,
        "stale or lost reads during compaction"
    );
    let acked = acked.lock().unwrap().clone();
    check(&owner, &acked);
    assert_eq!(owner.shared().status(), TableStatus::Ok);
    assert!(leftovers(dir.path()).is_empty());
    // After a reopen, from the file alone.
    owner.close();
    let owner = start(dir.path());
    check(&owner, &acked);
}

#[test]
fn the_fresh_file_is_packed() {
    let dir = tempfile::tempdir().unwrap();
    let owner = start(dir.path());
    let acked = preload_half_deleted(&owner, 12_000, 200);
    let before = owner.shared().metrics();
    assert!(before.fragmentation_ratio > 0.0, "{before:?}");
    let report = owner.compact_online(OnlineConfig::default()).unwrap();
    assert_eq!(report.bytes_before, before.file_bytes);
    assert!(report.bytes_after < report.bytes_before, "{report:?}");
    assert_eq!(report.records, 6_000);
    let after = owner.shared().metrics();
    assert_eq!(after.file_bytes, report.bytes_after);
    assert_eq!(after.live_records, 6_000);
    assert!(
        after.fragmentation_ratio < before.fragmentation_ratio,
        "{before:?} {after:?}"
    );
    check(&owner, &acked);
}

fn fails_copy(step: Step) -> bool {
    matches!(step, Step::CopyChunk(_))
}
fn fails_copied(step: Step) -> bool {
    step == Step::Copied
}
fn fails_catch_up(step: Step) -> bool {
    step == Step::CatchUp
}
fn fails_final_copy(step: Step) -> bool {
    step == Step::FinalCopy
}
fn fails_swap(step: Step) -> bool {
    step == Step::Swap
}

#[test]
fn a_fault_at_any_step_keeps_every_acknowledged_write() {
    let steps: [(&str, FailsAt); 5] = [
        ("copy", fails_copy),
        ("copied", fails_copied),
        ("catch-up", fails_catch_up),
        ("final copy", fails_final_copy),
        ("swap", fails_swap),
    ];
    for (name, fails) in steps {
        let dir = tempfile::tempdir().unwrap();
        let owner = start(dir.path());
        let acked = Arc::new(Mutex::new(preload_half_deleted(&owner, 500, 200)));
        let bytes_before = owner.shared().metrics().file_bytes;
        let config = OnlineConfig {
            final_keys: 4,
            hook: Some(writing_hook(&owner, &acked, 10, Some(fails))),
            ..OnlineConfig::default()
        };
        let error = owner.compact_online(config).unwrap_err();
        assert!(
            matches!(&error, MaintenanceError::Injected(m) if m.contains("test fault")),
            "{name}: {error:?}"
        );
        assert!(
            leftovers(dir.path()).is_empty(),
            "{name}: {:?}",
            leftovers(dir.path())
        );
        assert_eq!(owner.shared().status(), TableStatus::Ok, "{name}");
        // The old file kept serving, and keeps taking writes.
        assert!(
            owner.shared().metrics().file_bytes >= bytes_before,
            "{name}"
        );
        owner.put(b"after", b"fault").unwrap();
        let mut acked = acked.lock().unwrap().clone();
        acked.insert(b"after".to_vec(), Some(b"fault".to_vec()));
        check(&owner, &acked);
        // A later attempt succeeds.
        owner.compact_online(OnlineConfig::default()).unwrap();
        check(&owner, &acked);
        owner.close();
        let owner = start(dir.path());
        check(&owner, &acked);
    }
}

#[test]
fn over_the_pause_limit_the_attempt_is_abandoned_and_the_old_file_kept() {
    let dir = tempfile::tempdir().unwrap();
    let owner = start(dir.path());
    let acked = Arc::new(Mutex::new(preload_half_deleted(&owner, 2000, 200)));
    let bytes_before = owner.shared().metrics().file_bytes;
    let config = OnlineConfig {
        pause_limit: std::time::Duration::ZERO,
        hook: Some(writing_hook(&owner, &acked, 10, None)),
        ..OnlineConfig::default()
    };
    let error = owner.compact_online(config).unwrap_err();
    assert!(matches!(error, MaintenanceError::Abandoned(_)), "{error:?}");
    assert!(leftovers(dir.path()).is_empty());
    assert_eq!(owner.shared().status(), TableStatus::Ok);
    // Not swapped: the old, unpacked file is still the table.
    assert!(owner.shared().metrics().file_bytes >= bytes_before);
    let acked = acked.lock().unwrap().clone();
    check(&owner, &acked);
    owner.close();
    check(&start(dir.path()), &acked);
}

#[test]
fn a_degraded_table_stays_degraded_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let owner = start(dir.path());
    owner.put(b"k", b"v").unwrap();
    // Degraded mode is entered through a replacement, as after a data loss.
    owner
        .replace(store_owners::ReplaceRequest {
            replacement: None,
            quarantine: dir.path().join("quarantine/t.redb"),
            expected_records: None,
            degraded: Some("test".into()),
            replay_log: true,
        })
        .unwrap();
    owner.compact_online(OnlineConfig::default()).unwrap();
    assert_eq!(
        owner.shared().status(),
        TableStatus::Degraded("test".into())
    );
    owner.compact_in_place().unwrap();
    assert_eq!(
        owner.shared().status(),
        TableStatus::Degraded("test".into())
    );
}

#[test]
fn leftover_compaction_files_are_removed_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let owner = start(dir.path());
    let acked = preload_half_deleted(&owner, 1000, 100);
    // A complete copy (crash just before the rename) and a half-written one.
    let snapshot = owner.snapshot().unwrap();
    let complete = dir.path().join(format!("{TABLE}.redb.compact-1"));
    snapshot
        .copy_to_file(
            &complete,
            &|_| true,
            &store_core::Pacer::default(),
            &store_core::Progress::new("copy"),
        )
        .unwrap();
    drop(snapshot);
    let half = dir.path().join(format!("{TABLE}.redb.compact-2"));
    let bytes = std::fs::read(&complete).unwrap();
    std::fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();
    // Another table's leftover is that table's business.
    let other = dir.path().join("task_queue.redb.compact-3");
    std::fs::write(&other, b"not ours").unwrap();
    // A large one: its blocks are given back in paced steps on another thread.
    let large = dir.path().join(format!("{TABLE}.redb.compact-4"));
    std::fs::write(&large, vec![7u8; 12 << 20]).unwrap();
    owner.close();
    assert_eq!(leftovers(dir.path()).len(), 4);
    let pacer = Arc::new(store_core::Pacer::new(store_core::IoRate::Unlimited));
    let config = OwnerConfig {
        pacer: pacer.clone(),
        ..OwnerConfig::default()
    };
    let owner = OwnerHandle::start::<RedbStore>(TABLE, &table_path(dir.path()), config);
    assert_eq!(
        leftovers(dir.path()),
        vec!["task_queue.redb.compact-3".to_string()]
    );
    check(&owner, &acked);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pacer.stats().bytes_moved == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        pacer.stats().bytes_moved > 0,
        "the large leftover was not freed through the pacer"
    );
}

/// The child side of [`killed_between_steps_keeps_every_acknowledged_write`]: run in a
/// separate process, it writes while compacting, prints each acknowledged write, and aborts
/// the process at the step named by `ONLINE_KILL_AT`.
fn kill_child(dir: &Path, kill_at: &str) {
    use std::io::Write;
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let print = {
        let out = out.clone();
        move |line: String| {
            let mut out = out.lock().unwrap();
            writeln!(out, "{line}").unwrap();
            out.flush().unwrap();
        }
    };
    let owner = start(dir);
    preload_half_deleted(&owner, 2000, 100);
    print("preloaded".into());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u32)
        .map(|t| {
            let (owner, stop, print) = (owner.clone(), stop.clone(), print.clone());
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    // The intent is printed first: a write in flight when the process dies
                    // may or may not have committed.
                    let k = format!("w{t}-{i:06}");
                    print(format!("will put {k}"));
                    owner.put(k.as_bytes(), k.as_bytes()).unwrap();
                    print(format!("put {k}"));
                    let victim = 1 + 2 * (t + 2 * i);
                    if victim < 2000 {
                        print(format!("will del {victim}"));
                        owner.delete(&key(victim)).unwrap();
                        print(format!("del {victim}"));
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let kill_at = kill_at.to_string();
    let hook_owner = owner.clone();
    let hook_print = print.clone();
    let hook = StepHook::new(move |step| {
        if step == Step::Copied {
            // Make sure a catch-up round is needed.
            for i in 0..20 {
                let k = format!("hook-{i:04}");
                hook_owner
                    .put(k.as_bytes(), k.as_bytes())
                    .map_err(|e| e.to_string())?;
                hook_print(format!("put {k}"));
            }
        }
        let name = match step {
            Step::CopyChunk(_) => "copy",
            Step::Copied => "copied",
            Step::CatchUp => "catch-up",
            Step::FinalCopy => "final-copy",
            Step::Swap => "swap",
            _ => "other",
        };
        if name == kill_at {
            hook_print(format!("killed at {name}"));
            std::process::abort();
        }
        Ok(())
    });
    let config = OnlineConfig {
        final_keys: 8,
        hook: Some(hook),
        ..OnlineConfig::default()
    };
    let result = owner.compact_online(config);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    print(format!("finished without being killed: {result:?}"));
}

#[test]
fn killed_between_steps_keeps_every_acknowledged_write() {
    if let (Ok(dir), Ok(kill_at)) = (
        std::env::var("ONLINE_KILL_DIR"),
        std::env::var("ONLINE_KILL_AT"),
    ) {
        kill_child(Path::new(&dir), &kill_at);
        return;
    }
    for kill_at in ["copy", "copied", "catch-up", "final-copy", "swap"] {
        let dir = tempfile::tempdir().unwrap();
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "killed_between_steps_keeps_every_acknowledged_write",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ONLINE_KILL_DIR", dir.path())
            .env("ONLINE_KILL_AT", kill_at)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            !output.status.success(),
            "{kill_at}: the child was not killed: {stdout}"
        );
        assert!(
            stdout.contains(&format!("killed at {kill_at}")),
            "{kill_at}: {stdout}"
        );
        // Rebuild what was acknowledged before the kill.
        let mut acked: Acked = (0..2000u32)
            .map(|i| (key(i), (i % 2 == 1).then(|| value(i, 100))))
            .collect();
        // Writes in flight at the kill: either outcome is correct.
        let mut in_flight: Acked = Acked::new();
        for line in stdout.lines() {
            if let Some(k) = line.strip_prefix("will put ") {
                in_flight.insert(k.as_bytes().to_vec(), Some(k.as_bytes().to_vec()));
            } else if let Some(n) = line.strip_prefix("will del ") {
                in_flight.insert(key(n.parse().unwrap()), None);
            } else if let Some(k) = line.strip_prefix("put ") {
                in_flight.remove(k.as_bytes());
                acked.insert(k.as_bytes().to_vec(), Some(k.as_bytes().to_vec()));
            } else if let Some(n) = line.strip_prefix("del ") {
                in_flight.remove(&key(n.parse().unwrap()));
                acked.insert(key(n.parse().unwrap()), None);
            }
        }
        assert!(
            in_flight.len() <= 2,
            "{kill_at}: one write in flight per writer at most"
        );
        let in_flight: Vec<_> = in_flight
            .into_iter()
            .map(|(k, new)| (acked.remove(&k).flatten(), k, new))
            .collect();
        if kill_at != "copy" {
            assert!(stdout.contains("put hook-0019"), "{kill_at}: {stdout}");
        }
        let owner = start(dir.path());
        assert_eq!(owner.shared().status(), TableStatus::Ok, "{kill_at}");
        assert!(
            leftovers(dir.path()).is_empty(),
            "{kill_at}: {:?}",
            leftovers(dir.path())
        );
        check(&owner, &acked);
        for (old, k, new) in in_flight {
            let found = owner.get(&k).unwrap();
            assert!(
                found == old || found == new,
                "{kill_at}: in-flight key {}",
                String::from_utf8_lossy(&k)
            );
        }
    }
}

#[test]
fn an_io_failure_of_the_live_table_during_compaction_loses_no_acknowledged_write() {
    use store_core::{FaultBackend, FaultPlan, StoreOptions};
    for fail_sync in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = table_path(dir.path());
        let plan = FaultPlan::new();
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        let backend = FaultBackend::new(file, plan.clone()).unwrap();
        let store = RedbStore::open_with_backend(&path, backend, &StoreOptions::default()).unwrap();
        let owner = OwnerHandle::start_with_store(TABLE, store, OwnerConfig::default());
        let mut acked = preload_half_deleted(&owner, 500, 200);
        let hook_acked = Arc::new(Mutex::new(Acked::new()));
        let in_flight = Arc::new(Mutex::new(Vec::new()));
        let hook = {
            let (owner, plan, hook_acked, in_flight) = (
                owner.clone(),
                plan.clone(),
                hook_acked.clone(),
                in_flight.clone(),
            );
            StepHook::new(move |step| {
                if step == Step::Copied {
                    // The live file's next write or fsync fails, in the middle of the writes
                    // the catch-up rounds must carry over.
                    if fail_sync {
                        plan.fail_sync_after(3);
                    } else {
                        plan.fail_write_after(3);
                    }
                    for i in 0..10u32 {
                        let k = format!("io-{i:02}").into_bytes();
                        match owner.put(&k, b"v") {
                            Ok(()) => {
                                hook_acked.lock().unwrap().insert(k, Some(b"v".to_vec()));
                            }
                            Err(_) => in_flight.lock().unwrap().push(k),
                        }
                    }
                }
                Ok(())
            })
        };
        let config = OnlineConfig {
            final_keys: 2,
            hook: Some(hook),
            ..OnlineConfig::default()
        };
        // Either outcome is acceptable; what matters is what the file holds afterwards.
        let outcome = owner.compact_online(config);
        assert!(plan.failures() >= 1, "the fault fired");
        assert!(
            !in_flight.lock().unwrap().is_empty(),
            "a write failed ({outcome:?})"
        );
        assert!(leftovers(dir.path()).is_empty());
        owner.close();
        acked.extend(hook_acked.lock().unwrap().clone());
        let owner = start(dir.path());
        check(&owner, &acked);
        for k in in_flight.lock().unwrap().iter() {
            let found = owner.get(k).unwrap();
            assert!(found.is_none() || found.as_deref() == Some(&b"v"[..]));
        }
    }
}
