//! Section 3, backups: throughput of a hot backup of one table against `cp` of a file of the
//! same size, and the latency of an open-loop client (gets and puts at a fixed rate) on that
//! table during the backup, against a window of the same length after it. The backup is the
//! compaction crate's `Maintainer::backup_one`; the snapshot copy it starts with is also timed
//! alone.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use compaction::{BackupConfig, BackupOptions, Maintainer, MaintenanceConfig};
use serde::Serialize;
use store_owners::OwnerHandle;

use super::stall::{
    CAUGHT_UP, MAX_WARMUP, N_CLIENT_WORKERS, VALUE_SIZE, busy_then_baseline, client_op,
};
use super::{Profile, time_cp};
use crate::loadgen::{LatencyStats, bench_key, bench_value, open_loop};
use crate::plot;

/// The table backed up.
const TABLE: &str = "message_history";

/// The section's figures.
#[derive(Debug, Clone, Serialize)]
pub struct BackupResult {
    /// What made the backup.
    pub method: &'static str,
    /// Records in the table.
    pub n_records: u64,
    /// Size of the table file.
    pub table_bytes: u64,
    /// Size of the backup file.
    pub backup_bytes: u64,
    /// Wall time of the backup.
    pub backup_s: f64,
    /// Table file bytes per second of backup.
    pub backup_mb_per_s: f64,
    /// Time of the snapshot copy alone (what the backup starts with), without the client.
    pub snapshot_copy_s: f64,
    /// Time of `cp` (plus `sync`) of a file the size of the table.
    pub cp_s: f64,
    /// Bytes per second of that copy.
    pub cp_mb_per_s: f64,
    /// Client latency during the backup and its settling period.
    pub during: LatencyStats,
    /// Client latency over a window of the same length (at least 1 s) after it has settled.
    pub baseline: LatencyStats,
    /// The latency-over-time plot.
    pub plot: String,
}

/// Run the section.
pub fn run(profile: &Profile, scratch: &Path, out: &Path) -> anyhow::Result<BackupResult> {
    let data_dir = scratch.join("backup");
    let stores = Arc::new(crate::load::open_stores(&data_dir)?);
    let owner = stores.owner(TABLE).expect("one of the nine tables").clone();
    let n = profile.backup_records;
    fill(&owner, n)?;
    let table_bytes = owner.shared().metrics().file_bytes;
    let cp = time_cp(scratch, table_bytes)?;
    let config = MaintenanceConfig {
        backup: BackupConfig {
            dir: data_dir.join("backups"),
            ..BackupConfig::default()
        },
        ..MaintenanceConfig::default()
    };
    let maintainer = Maintainer::new(stores.clone(), config);
    let backup = || -> anyhow::Result<u64> {
        let run = maintainer.backup_one(
            TABLE,
            BackupOptions {
                wait: true,
                ..BackupOptions::default()
            },
        )?;
        if let Some(failure) = run.failures.first() {
            bail!("the backup failed: {}", failure.error);
        }
        run.backups
            .first()
            .map(|b| b.bytes)
            .context("the backup run made no backup")
    };
    let op = |i: u64| client_op(&owner, n, i);
    let ((windows, backup_bytes), samples) =
        open_loop(profile.rate, N_CLIENT_WORKERS, &op, |probe| {
            probe.warm_up(profile.warmup, CAUGHT_UP, MAX_WARMUP);
            busy_then_baseline(probe.start, backup)
        });
    let backup_bytes = backup_bytes?;
    let snapshot_copy = {
        let dest = scratch.join("snapshot-copy.redb");
        let started = Instant::now();
        let snapshot = owner.snapshot()?;
        snapshot.copy_to_file(
            &dest,
            &|_| true,
            &store_core::Pacer::new(store_core::IoRate::Unlimited),
        )?;
        drop(snapshot);
        let elapsed = started.elapsed();
        let _ = std::fs::remove_file(&dest);
        elapsed
    };
    drop(maintainer);
    drop(owner);
    drop(stores);
    let _ = std::fs::remove_dir_all(&data_dir);
    let (from, to) = windows.busy;
    let plot_file = "backup.png".to_string();
    plot::latency_over_time(
        &out.join(&plot_file),
        &format!("operation latency during a backup, {n} records"),
        &samples,
        &[
            plot::busy_span(windows.busy, "backup"),
            plot::settle_span((to, windows.during.1)),
            plot::baseline_span(windows.baseline),
        ],
    )?;
    let backup_s = (to - from).as_secs_f64();
    Ok(BackupResult {
        method: "compaction::Maintainer::backup_one (snapshot copy into a fresh file, integrity check, \
                 record count, blake3, fsync, rename, manifest)",
        n_records: n,
        table_bytes,
        backup_bytes,
        backup_s,
        backup_mb_per_s: table_bytes as f64 / 1e6 / backup_s,
        snapshot_copy_s: snapshot_copy.as_secs_f64(),
        cp_s: cp.as_secs_f64(),
        cp_mb_per_s: table_bytes as f64 / 1e6 / cp.as_secs_f64(),
        during: LatencyStats::of_window(&samples, windows.during.0, windows.during.1),
        baseline: LatencyStats::of_window(&samples, windows.baseline.0, windows.baseline.1),
        plot: plot_file,
    })
}

/// Write `n` bench records through the owner, 5000 per write job.
fn fill(owner: &OwnerHandle, n: u64) -> anyhow::Result<()> {
    let mut start = 0;
    while start < n {
        let end = (start + crate::load::BATCH).min(n);
        owner.write(move |batch| {
            for i in start..end {
                batch.put(&bench_key(i), &bench_value(i, VALUE_SIZE))?;
            }
            Ok(())
        })?;
        start = end;
    }
    Ok(())
}
