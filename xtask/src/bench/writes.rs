//! Section 2, durable write throughput: puts through one owner by 1, 8 and 32 concurrent
//! clients (each waits for its put to be durable before the next; the owner commits queued
//! writes together), against one durable commit per write on a plain store, single thread.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use store_core::{RedbStore, StoreOptions, TableStore, WriteOp};
use store_owners::{OwnerConfig, OwnerHandle};

use super::Profile;
use crate::loadgen::{LatencyStats, Sample, bench_key, bench_value, mix};

/// Value size of the written records.
const VALUE_SIZE: usize = 200;

/// One row of the write table.
#[derive(Debug, Clone, Serialize)]
pub struct WriteRow {
    /// What wrote.
    pub name: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Durable writes acknowledged.
    pub writes: u64,
    /// Wall time.
    pub seconds: f64,
    /// Writes per second.
    pub writes_per_s: f64,
    /// Latency of one write as its client saw it.
    pub latency: LatencyStats,
}

/// Run the section.
pub fn run(profile: &Profile, scratch: &Path) -> anyhow::Result<Vec<WriteRow>> {
    let dir = scratch.join("writes");
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    rows.push(one_commit_per_write(
        &dir.join("plain.redb"),
        profile.write_duration,
    )?);
    eprintln!("  writes: one commit per write done");
    for clients in [1, 8, 32] {
        let path = dir.join(format!("owner-{clients}.redb"));
        let owner = OwnerHandle::start::<RedbStore>("writes", &path, OwnerConfig::default());
        rows.push(through_owner(&owner, clients, profile.write_duration));
        owner.close();
        eprintln!("  writes: {clients} clients done");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rows)
}

fn one_commit_per_write(path: &Path, duration: Duration) -> anyhow::Result<WriteRow> {
    let mut store = RedbStore::open(path, &StoreOptions::default())?;
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut i = 0u64;
    while started.elapsed() < duration {
        let t = Instant::now();
        store.apply(&[WriteOp::put(&bench_key(i), &bench_value(i, VALUE_SIZE))])?;
        latencies.push(Sample {
            at: t - started,
            latency: t.elapsed(),
            failed: false,
        });
        i += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    store.close()?;
    Ok(WriteRow {
        name: "one commit per write (plain store)".into(),
        clients: 1,
        writes: i,
        seconds,
        writes_per_s: i as f64 / seconds,
        latency: LatencyStats::of(&latencies),
    })
}

/// `clients` threads putting through `owner` for `duration`, each waiting for its put.
pub(super) fn through_owner(owner: &OwnerHandle, clients: usize, duration: Duration) -> WriteRow {
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let per_client: Vec<(Vec<Sample>, u64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients as u64)
            .map(|c| {
                let stop = &stop;
                scope.spawn(move || {
                    let mut samples = Vec::new();
                    let mut failed = 0;
                    let mut j = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let h = mix((c << 40) | j);
                        let t = Instant::now();
                        let ok = owner
                            .put(&bench_key(h), &bench_value(h, VALUE_SIZE))
                            .is_ok();
                        samples.push(Sample {
                            at: t - started,
                            latency: t.elapsed(),
                            failed: !ok,
                        });
                        failed += u64::from(!ok);
                        j += 1;
                    }
                    (samples, failed)
                })
            })
            .collect();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let samples: Vec<Sample> = per_client.into_iter().flat_map(|(s, _)| s).collect();
    let writes = samples.iter().filter(|s| !s.failed).count() as u64;
    WriteRow {
        name: "through one owner (group commit)".into(),
        clients,
        writes,
        seconds,
        writes_per_s: writes as f64 / seconds,
        latency: LatencyStats::of(&samples),
    }
}
