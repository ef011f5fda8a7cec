//! Section 3, backups: throughput of a hot backup of one table against `cp` of a file of the
//! same size, and the latency of an open-loop client (gets and puts at a fixed rate) on that
//! table during the backup, against a window of the same length after it, at each I/O rate of
//! the profile (by default [`super::stall::pacing_modes`]: `auto`, a fixed rate, unpaced) in
//! turn, on the same table. The backup is the
//! compaction crate's `Maintainer::backup_one`; the snapshot copy it starts with is also timed
//! alone.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use compaction::{BackupConfig, BackupOptions, Maintainer, MaintenanceConfig, PacingConfig};
use serde::Serialize;
use store_core::{IoRate, Pacer};
use store_owners::{OwnerHandle, Stores};

use super::stall::{
    CAUGHT_UP, MAX_WARMUP, N_CLIENT_WORKERS, VALUE_SIZE, busy_then_baseline, client_op, figures,
    slug,
};
use super::{Profile, time_cp};
use crate::loadgen::{LatencyStats, bench_key, bench_value, open_loop, record_pace};
use crate::plot;

/// The table backed up.
const TABLE: &str = "message_history";

/// One backup of the table at one I/O rate.
#[derive(Debug, Clone, Serialize)]
pub struct BackupRow {
    /// `backup <rate>`.
    pub name: String,
    /// "ok" or "failed: ...".
    pub status: String,
    /// Size of the backup file.
    pub backup_bytes: Option<u64>,
    /// Wall time of the backup.
    pub backup_s: Option<f64>,
    /// Client latency during the backup and its settling period.
    pub during: Option<LatencyStats>,
    /// Client latency over a window of the same length (at least 1 s) after it has settled.
    pub baseline: Option<LatencyStats>,
    /// Time the backup spent waiting for its I/O pacer.
    pub paced_wait_s: Option<f64>,
    /// The latency-over-time plot.
    pub plot: Option<String>,
}

/// The section's figures for one table size.
#[derive(Debug, Clone, Serialize)]
pub struct BackupResult {
    /// What made the backup.
    pub method: &'static str,
    /// Records in the table.
    pub n_records: u64,
    /// Size of the table file.
    pub table_bytes: u64,
    /// Time of the snapshot copy alone (what the backup starts with), without the client.
    pub snapshot_copy_s: f64,
    /// Time of `cp` (plus `sync`) of a file the size of the table.
    pub cp_s: f64,
    /// One backup per I/O rate of the profile.
    pub rows: Vec<BackupRow>,
}

/// Run the section for a table of `n` records.
pub fn run(profile: &Profile, n: u64, scratch: &Path, out: &Path) -> anyhow::Result<BackupResult> {
    let data_dir = scratch.join(format!("backup-{n}"));
    let stores = Arc::new(crate::load::open_stores(&data_dir)?);
    let owner = stores.owner(TABLE).expect("one of the nine tables").clone();
    fill(&owner, n)?;
    let table_bytes = owner.shared().metrics().file_bytes;
    let cp = time_cp(scratch, table_bytes)?;
    let mut rows = Vec::new();
    for &io_rate in &profile.modes {
        let name = format!("backup {io_rate}");
        let row = backup_row(profile, &stores, io_rate, &name, &data_dir, out)
            .unwrap_or_else(|e| BackupRow::failed(&name, format!("failed: {e:#}")));
        eprintln!(
            "  backup N={n}: {name} {}{}",
            row.status,
            figures(row.backup_s, row.during.as_ref(), row.baseline.as_ref())
        );
        rows.push(row);
    }
    let snapshot_copy = {
        let dest = scratch.join("snapshot-copy.redb");
        let started = Instant::now();
        let snapshot = owner.snapshot()?;
        let progress = store_core::Progress::new("copy");
        snapshot.copy_to_file(&dest, &|_| true, &Pacer::new(IoRate::Unlimited), &progress)?;
        drop(snapshot);
        let elapsed = started.elapsed();
        let _ = std::fs::remove_file(&dest);
        elapsed
    };
    drop(owner);
    drop(stores);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(BackupResult {
        method: "compaction::Maintainer::backup_one (snapshot copy into a fresh file, integrity check, \
                 record count, blake3, fsync, rename, manifest)",
        n_records: n,
        table_bytes,
        snapshot_copy_s: snapshot_copy.as_secs_f64(),
        cp_s: cp.as_secs_f64(),
        rows,
    })
}

impl BackupRow {
    fn failed(name: &str, status: String) -> BackupRow {
        BackupRow {
            name: name.to_string(),
            status,
            backup_bytes: None,
            backup_s: None,
            during: None,
            baseline: None,
            paced_wait_s: None,
            plot: None,
        }
    }
}

/// One backup of the table at `io_rate` under the open-loop client.
fn backup_row(
    profile: &Profile,
    stores: &Arc<Stores>,
    io_rate: IoRate,
    name: &str,
    data_dir: &Path,
    out: &Path,
) -> anyhow::Result<BackupRow> {
    let config = MaintenanceConfig {
        backup: BackupConfig {
            dir: data_dir.join("backups"),
            ..BackupConfig::default()
        },
        pacing: PacingConfig { io_rate },
        ..MaintenanceConfig::default()
    };
    let maintainer = Maintainer::new(stores.clone(), config);
    let pacer = stores.pacer();
    let waited_before = pacer.stats().waited;
    let owner = stores.owner(TABLE).expect("one of the nine tables");
    let n = owner.shared().metrics().live_records;
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
    let op = |i: u64| client_op(owner, n, i);
    let ((((windows, backup_bytes), pace), phases), samples) =
        open_loop(profile.rate, N_CLIENT_WORKERS, &op, |probe| {
            probe.warm_up(profile.warmup, CAUGHT_UP, MAX_WARMUP);
            record_phases(&maintainer, probe.start, || {
                record_pace(pacer, probe.start, || {
                    busy_then_baseline(probe.start, Some(pacer), backup)
                })
            })
        });
    let backup_bytes = backup_bytes?;
    let (from, to) = windows.busy;
    let plot_file = format!("backup-{n}-{}.png", slug(&io_rate.to_string()));
    plot::latency_over_time(
        &out.join(&plot_file),
        &format!("operation latency during a backup, {n} records, {name}"),
        &samples,
        &pace,
        &[
            plot::busy_span(windows.busy, "backup"),
            plot::settle_span((to, windows.during.1)),
            plot::baseline_span(windows.baseline),
        ],
        &phases
            .iter()
            .map(|(at, phase)| plot::phase_mark(*at, phase))
            .chain(crate::loadgen::last_io(&pace).map(plot::io_end_mark))
            .collect::<Vec<_>>(),
    )?;
    Ok(BackupRow {
        name: name.to_string(),
        status: "ok".into(),
        backup_bytes: Some(backup_bytes),
        backup_s: Some((to - from).as_secs_f64()),
        during: Some(LatencyStats::of_window(
            &samples,
            windows.during.0,
            windows.during.1,
        )),
        baseline: Some(LatencyStats::of_window(
            &samples,
            windows.baseline.0,
            windows.baseline.1,
        )),
        paced_wait_s: Some((pacer.stats().waited - waited_before).as_secs_f64()),
        plot: Some(plot_file),
    })
}

/// Run `f` while sampling `maintainer`'s running operation every few milliseconds: when each
/// step after the first began (`check`, `hash`), and when the operation ended (`written`),
/// since `start`.
fn record_phases<R>(
    maintainer: &Maintainer,
    start: Instant,
    f: impl FnOnce() -> R,
) -> (R, Vec<(Duration, String)>) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut phases: Vec<(Duration, String)> = Vec::new();
            let mut seen: Option<String> = None;
            while !stop.load(Ordering::Relaxed) {
                let now = maintainer.operations().first().map(|op| op.phase.clone());
                match (seen.take(), now) {
                    (Some(_), None) => {
                        phases.push((start.elapsed(), "written".into()));
                        break;
                    }
                    (Some(was), Some(is)) => {
                        if was != is {
                            phases.push((start.elapsed(), is.clone()));
                        }
                        seen = Some(is);
                    }
                    (None, now) => seen = now,
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            phases
        });
        let result = f();
        stop.store(true, Ordering::Relaxed);
        let phases = sampler.join().unwrap_or_default();
        (result, phases)
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
