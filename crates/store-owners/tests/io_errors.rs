//! After an I/O error (a failed write or fsync, a full disk) redb refuses every later write
//! with "Previous I/O error occurred" until the file is opened again. An independent campaign
//! found a table refusing 100 writes over 10 s after the space came back, while its status
//! said ok. These tests check that the owner reopens its file, says so in its status while it
//! cannot, and takes writes again once the disk works: through the fault backend, and on a
//! real full file system (a small tmpfs, when the tests run as root, as CI does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use store_core::{FaultPlan, KeyRange, RedbStore, StoreOptions};
use store_owners::{CallError, OwnerConfig, OwnerHandle, TableStatus};

fn start(path: &Path, plan: Option<Arc<FaultPlan>>) -> OwnerHandle {
    let config = OwnerConfig {
        store: StoreOptions {
            io_faults: plan,
            ..StoreOptions::default()
        },
        ..OwnerConfig::default()
    };
    OwnerHandle::start::<RedbStore>("message_history", path, config)
}

fn contents(owner: &OwnerHandle) -> BTreeMap<Vec<u8>, Vec<u8>> {
    owner
        .scan(KeyRange::all(), usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect()
}

/// Retry `put` until it is acknowledged (the owner retries its reopen with a growing delay).
fn put_eventually(owner: &OwnerHandle, key: &[u8], value: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match owner.put(key, value) {
            Ok(()) => return,
            Err(e) => assert!(Instant::now() < deadline, "writes never came back: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn one_failed_fsync_does_not_latch_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let owner = start(&dir.path().join("t.redb"), Some(plan.clone()));
    let mut model = BTreeMap::new();
    owner.put(b"before", b"1").unwrap();
    model.insert(b"before".to_vec(), b"1".to_vec());

    plan.fail_sync_after(1);
    let error = owner.put(b"failed", b"x").unwrap_err();
    assert!(matches!(error, CallError::Storage(_)), "{error:?}");
    // The store's error travels as the source (store-core's, then redb's), not as words.
    let chain: Vec<String> =
        std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source())
            .map(|e| e.to_string())
            .collect();
    assert!(
        chain.len() == 3 && chain[2].contains("injected"),
        "{chain:?}"
    );
    // The failed write was never acknowledged; it may or may not be on disk.
    for i in 0..20 {
        let key = format!("after{i}");
        owner.put(key.as_bytes(), b"2").unwrap();
        model.insert(key.into_bytes(), b"2".to_vec());
    }
    assert_eq!(owner.shared().status(), TableStatus::Ok);
    assert_eq!(owner.shared().reopens(), 1);
    let mut seen = contents(&owner);
    seen.remove(&b"failed"[..]);
    assert_eq!(seen, model);
}

#[test]
fn a_dead_disk_makes_the_table_unavailable_until_it_works_again() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let owner = start(&dir.path().join("t.redb"), Some(plan.clone()));
    owner.put(b"before", b"1").unwrap();

    plan.set_sticky(true);
    plan.fail_write_after(1);
    assert!(owner.put(b"failed", b"x").is_err());
    // Every reopen fails too while the disk is dead: the status says so.
    let status = owner.shared().status();
    assert!(
        matches!(&status, TableStatus::Unavailable(d) if d.contains("I/O error")),
        "{status}"
    );
    assert!(owner.put(b"still failing", b"x").is_err());

    plan.disarm();
    put_eventually(&owner, b"after", b"2");
    assert_eq!(owner.shared().status(), TableStatus::Ok);
    assert_eq!(owner.get(b"before").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(owner.get(b"after").unwrap().as_deref(), Some(&b"2"[..]));
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` when this process may not mount (not root): the test then has nothing to do.
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fill the file system holding `path` with one file, 1 MiB at a time, until it is refused.
fn fill_disk(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        if file
            .write_all(&chunk)
            .and_then(|()| file.sync_all())
            .is_err()
        {
            return;
        }
    }
    panic!("the disk never filled up");
}

#[test]
fn writes_succeed_again_once_a_full_disk_has_space() {
    let Some(disk) = SmallDisk::mount("32m") else {
        eprintln!("not root: cannot mount a tmpfs, the full-disk test does not run here");
        return;
    };
    let owner = start(&disk.path().join("message_history.redb"), None);
    let mut model = BTreeMap::new();
    let value = vec![b'm'; 4000];
    for i in 0..100u32 {
        let key = format!("before{i:04}").into_bytes();
        owner.put(&key, &value).unwrap();
        model.insert(key, value.clone());
    }
    let ballast = disk.path().join("ballast");
    fill_disk(&ballast);
    // Writes that make the table file grow are refused now.
    let mut refused = None;
    for i in 0..10_000u32 {
        let key = format!("full{i:05}").into_bytes();
        match owner.put(&key, &value) {
            Ok(()) => {
                model.insert(key, value.clone());
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("no write was refused on a full disk");
    assert!(
        matches!(
            refused,
            CallError::Storage(_) | CallError::Unavailable { .. }
        ),
        "{refused:?}"
    );

    std::fs::remove_file(&ballast).unwrap();
    for i in 0..100u32 {
        let key = format!("after{i:04}").into_bytes();
        put_eventually(&owner, &key, &value);
        model.insert(key, value.clone());
    }
    assert_eq!(owner.shared().status(), TableStatus::Ok);
    assert!(owner.shared().reopens() >= 1);
    // Everything acknowledged is there; the refused write was never acknowledged.
    let mut seen = contents(&owner);
    let refused_keys: Vec<_> = seen
        .keys()
        .filter(|k| !model.contains_key(*k))
        .cloned()
        .collect();
    assert!(
        refused_keys.len() <= 1,
        "{} unexpected keys",
        refused_keys.len()
    );
    for k in refused_keys {
        seen.remove(&k);
    }
    assert_eq!(seen, model);
    owner.close();
}
