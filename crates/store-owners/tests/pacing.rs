//! The owners and the maintenance I/O pacer: every durable commit is reported to it (what the
//! `auto` rate feeds on), and an online compaction's copy, catch-up and the freeing of the
//! replaced file move their bytes through it. A fixed rate slows the copy down, measured on
//! the pacer's own count of the time it made the job wait, never on the wall clock.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use store_core::{IoRate, Pacer, RedbStore};
use store_owners::{OnlineConfig, OwnerConfig, OwnerHandle};

fn start(dir: &Path, pacer: &Arc<Pacer>) -> OwnerHandle {
    let config = OwnerConfig {
        pacer: pacer.clone(),
        ..OwnerConfig::default()
    };
    OwnerHandle::start::<RedbStore>("message_history", &dir.join("t.redb"), config)
}

/// `n` records of 1 KiB, every other one then deleted.
fn fill_half_deleted(owner: &OwnerHandle, n: u32) {
    owner
        .write(move |b| {
            for i in 0..n {
                b.put(format!("k{i:06}").as_bytes(), &[b'v'; 1024])?;
            }
            Ok(())
        })
        .unwrap();
    owner
        .write(move |b| {
            for i in (0..n).step_by(2) {
                b.delete(format!("k{i:06}").as_bytes())?;
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn every_commit_is_reported_to_the_pacer() {
    let dir = tempfile::tempdir().unwrap();
    let pacer = Arc::new(Pacer::new(IoRate::Unlimited));
    let owner = start(dir.path(), &pacer);
    for i in 0..5u8 {
        owner.put(&[i], b"v").unwrap();
    }
    // Each put waited for its acknowledgement: five commits, one write each.
    assert_eq!(pacer.stats().n_commits, 5);
    assert_eq!(owner.pacer().stats().n_commits, 5);
    owner.close();
}

#[test]
fn an_online_compaction_moves_its_bytes_through_the_pacer() {
    let dir = tempfile::tempdir().unwrap();
    let pacer = Arc::new(Pacer::new(IoRate::Unlimited));
    let owner = start(dir.path(), &pacer);
    fill_half_deleted(&owner, 20_000);
    let report = owner.compact_online(OnlineConfig::default()).unwrap();
    assert_eq!(report.records, 10_000);
    // At least the live records' keys and values went through it.
    let live = 10_000 * (1024 + 7);
    assert!(
        pacer.stats().bytes_moved >= live,
        "{} bytes moved, {live} live",
        pacer.stats().bytes_moved
    );
    assert_eq!(
        pacer.stats().waited,
        Duration::ZERO,
        "unlimited never waits"
    );
    owner.close();
}

#[test]
fn a_fixed_rate_makes_the_copy_wait() {
    let dir = tempfile::tempdir().unwrap();
    // 10 MB of live records at 20 MiB/s: the copy alone is owed about half a second.
    let pacer = Arc::new(Pacer::new("20MiB/s".parse().unwrap()));
    let owner = start(dir.path(), &pacer);
    fill_half_deleted(&owner, 20_000);
    owner.compact_online(OnlineConfig::default()).unwrap();
    let stats = pacer.stats();
    let owed = Duration::from_secs_f64(stats.bytes_moved as f64 / (20 << 20) as f64);
    // Less the first burst, and what the copy's last chunk and the freeing still owe.
    assert!(
        stats.waited >= owed / 4,
        "waited {:?} for {} bytes",
        stats.waited,
        stats.bytes_moved
    );
    owner.close();
}
