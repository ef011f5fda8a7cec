//! Section 1, compaction stall: one table of N records (200-byte values, half deleted at
//! random) served by an owner to an open-loop client (gets and puts at a fixed rate) while it
//! is compacted online (at each of [`pacing_modes`]: `auto`, a fixed rate, unpaced), in place, and, for comparison, a DETS table closed and reopened with
//! `repair: force` (by an escript); `cp` of the compacted size is the physical floor.
//!
//! Each row starts from a copy of the same fragmented file (copied while closed). The client
//! runs through a warm-up (at least `profile.warmup`, and until it keeps its schedule), then
//! the compaction, then a settling period as long as the compaction (from [`MIN_SETTLE`] to
//! [`MAX_SETTLE`]), and until the pacer has moved no bytes for a second, in which what the compaction left behind (a backlog, closing the old file)
//! plays out, then a baseline window as long as those two together (at least
//! [`MIN_BASELINE`]). "During" is the compaction plus its settling period, "without" is the
//! baseline window; each operation counts in the window it was scheduled in.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;
use store_core::{IoRate, Pacer, RedbStore, StoreOptions, TableStore, WriteBatch};
use store_owners::{CompactReport, OnlineConfig, OwnerConfig, OwnerHandle};

use super::{Profile, dets, time_cp};
use crate::loadgen::{
    LatencyStats, PacePoint, Sample, bench_key, bench_value, mix, open_loop, record_pace,
};
use crate::plot;

/// Value size of the stall table.
pub const VALUE_SIZE: usize = 200;
/// Client threads issuing the open-loop schedule: enough that the client keeps its rate while
/// puts wait for their fsync (each operation waits for the commit in flight before it).
pub const N_CLIENT_WORKERS: usize = 64;
/// Shortest baseline window.
pub const MIN_BASELINE: Duration = Duration::from_secs(1);
/// Shortest settling period after a compaction.
pub const MIN_SETTLE: Duration = Duration::from_millis(500);
/// Longest settling period after a compaction. (The backlog of a 30 s stall takes about 15 s
/// to drain.)
pub const MAX_SETTLE: Duration = Duration::from_secs(60);
/// The warm-up ends once an operation completes this close to its schedule...
pub const CAUGHT_UP: Duration = Duration::from_millis(50);
/// ...or after this long. (A freshly opened DETS table of 1M records needs about 25 s before
/// it keeps up with the client.)
pub const MAX_WARMUP: Duration = Duration::from_secs(60);
/// One operation in this many is a put; the others are gets. (With one in five, the owner
/// could not keep 2000 operations/s on a disk with 7 ms fsyncs even without compaction: it
/// commits the writes queued before each read, so mixed queues commit often.)
pub const PUT_EVERY: u64 = 20;

/// One row of the stall table.
#[derive(Debug, Clone, Serialize)]
pub struct StallRow {
    /// online, in-place, dets, cp.
    pub name: String,
    /// "ok", "not run: ...", or "failed: ...".
    pub status: String,
    /// Time the client ran before the compaction started (until it kept its schedule).
    pub warmup_s: Option<f64>,
    /// Wall time of the compaction (or copy).
    pub compaction_s: Option<f64>,
    /// File size before.
    pub bytes_before: Option<u64>,
    /// File size after.
    pub bytes_after: Option<u64>,
    /// Longest pause the compaction itself reports (owner rows).
    pub reported_max_pause_us: Option<u64>,
    /// Client latency without compaction (window of the same length, right after).
    pub baseline: Option<LatencyStats>,
    /// Client latency during the compaction.
    pub during: Option<LatencyStats>,
    /// The latency-over-time plot, relative to the report.
    pub plot: Option<String>,
    /// Time the job spent waiting for its I/O pacer (owner rows).
    pub paced_wait_s: Option<f64>,
}

impl StallRow {
    /// A row with no figures, only a status.
    pub fn not_run(name: &str, why: String) -> StallRow {
        StallRow {
            name: name.into(),
            status: why,
            warmup_s: None,
            compaction_s: None,
            bytes_before: None,
            bytes_after: None,
            reported_max_pause_us: None,
            baseline: None,
            during: None,
            plot: None,
            paced_wait_s: None,
        }
    }
}

/// The stall figures for one table size.
#[derive(Debug, Clone, Serialize)]
pub struct StallResult {
    /// Records written (half then deleted).
    pub n_records: u64,
    /// Open-loop rate of the client, operations per second.
    pub rate: f64,
    /// Time to build the fragmented table.
    pub build_s: f64,
    /// Size of the fragmented file.
    pub fragmented_bytes: u64,
    /// The rows.
    pub rows: Vec<StallRow>,
}

/// Run the section for a table of `n_records`. `dets_sizes` carries the records and file size of
/// the last DETS table built, from one size to the next.
pub fn run(
    profile: &Profile,
    n_records: u64,
    scratch: &Path,
    out: &Path,
    dets_sizes: &mut Option<(u64, u64)>,
) -> anyhow::Result<StallResult> {
    let dir = scratch.join(format!("stall-{n_records}"));
    std::fs::create_dir_all(&dir)?;
    let master = dir.join("master.redb");
    let started = Instant::now();
    build_fragmented(&master, n_records, profile.seed)?;
    let build_s = started.elapsed().as_secs_f64();
    let fragmented_bytes = std::fs::metadata(&master)?.len();
    eprintln!(
        "  stall N={n_records}: built {:.0} MB in {build_s:.1} s",
        fragmented_bytes as f64 / 1e6
    );

    let mut rows = Vec::new();
    let in_place = profile.comparison_rows.then_some(Kind::InPlace);
    let kinds = profile
        .modes
        .iter()
        .copied()
        .map(Kind::Online)
        .chain(in_place);
    for kind in kinds {
        let path = dir.join(format!("{}.redb", slug(&kind.name())));
        std::fs::copy(&master, &path).context("copying the fragmented table")?;
        let row = owner_row(profile, kind, &path, n_records, out)
            .unwrap_or_else(|e| StallRow::not_run(&kind.name(), format!("failed: {e:#}")));
        eprintln!(
            "  stall N={n_records}: {} {}{}",
            row.name,
            row.status,
            figures(row.compaction_s, row.during.as_ref(), row.baseline.as_ref())
        );
        rows.push(row);
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_file(&master);
    if !profile.comparison_rows {
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(StallResult {
            n_records,
            rate: profile.rate,
            build_s,
            fragmented_bytes,
            rows,
        });
    }

    // DETS files cannot exceed 2 GB: a table the smaller one of this run says would take
    // over 75 % of that is not attempted.
    let dets_estimate = dets_sizes.map(|(n, bytes)| bytes as f64 / n as f64 * n_records as f64);
    let dets_row = match dets_estimate {
        Some(estimate) if estimate > dets::MAX_FILE_BYTES as f64 * 0.75 => StallRow::not_run(
            "dets",
            format!(
                "not run: DETS files are limited to 2 GB and this table would take about {:.1} GB \
                 (per-record size measured at the smaller N), over 75 % of the limit",
                estimate / 1e9
            ),
        ),
        _ => dets::stall_row(profile, n_records, &dir, out)
            .unwrap_or_else(|e| StallRow::not_run("dets", format!("failed: {e:#}"))),
    };
    if let Some(bytes) = dets_row.bytes_before {
        *dets_sizes = Some((n_records, bytes));
    }
    eprintln!("  stall N={n_records}: dets {}", dets_row.status);
    rows.push(dets_row);

    let live = rows
        .iter()
        .find(|r| r.name.starts_with("online"))
        .and_then(|r| r.bytes_after);
    let cp = match live {
        Some(bytes) => match time_cp(&dir, bytes) {
            Ok(d) => StallRow {
                status: "ok".into(),
                compaction_s: Some(d.as_secs_f64()),
                bytes_before: Some(bytes),
                bytes_after: Some(bytes),
                ..StallRow::not_run("cp", String::new())
            },
            Err(e) => StallRow::not_run("cp", format!("failed: {e:#}")),
        },
        None => StallRow::not_run("cp", "not run: no compacted size to copy".into()),
    };
    rows.push(cp);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(StallResult {
        n_records,
        rate: profile.rate,
        build_s,
        fragmented_bytes,
        rows,
    })
}

/// The I/O rates the online compaction and the backup are run at, side by side: `auto`, a
/// fixed rate and unpaced.
pub fn pacing_modes() -> [IoRate; 3] {
    [
        IoRate::Auto,
        IoRate::Fixed(FIXED_RATE.try_into().expect("a rate above zero")),
        IoRate::Unlimited,
    ]
}

/// The fixed rate of the side-by-side rows, bytes per second.
pub const FIXED_RATE: u64 = 32 << 20;

/// `name` as a file name: spaces and slashes become dashes.
pub fn slug(name: &str) -> String {
    name.replace([' ', '/'], "-")
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Online(IoRate),
    InPlace,
}

impl Kind {
    fn name(self) -> String {
        match self {
            Kind::Online(rate) => format!("online {rate}"),
            Kind::InPlace => "in-place".into(),
        }
    }
}

/// Write `n` records in random key order, then delete half of them at random; close.
/// Records per transaction while building the fragmented table.
const BUILD_CHUNK: u64 = 1_000_000;

fn build_fragmented(path: &Path, n: u64, seed: u64) -> anyhow::Result<()> {
    // A large cache only to build faster; the rows open the file with the default options.
    let options = StoreOptions {
        cache_bytes: 1 << 30,
        ..StoreOptions::default()
    };
    let mut store = RedbStore::open(path, &options)?;
    // Few large transactions: with random keys, each commit rewrites every leaf it touched.
    let chunk = BUILD_CHUNK;
    let mut start = 0;
    while start < n {
        let mut batch = store.begin_batch()?;
        for i in start..(start + chunk).min(n) {
            batch.put(&bench_key(i), &bench_value(i, VALUE_SIZE))?;
        }
        batch.commit()?;
        start += chunk;
    }
    let mut order: Vec<u64> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    for doomed in order[..(n / 2) as usize].chunks(chunk as usize) {
        let mut batch = store.begin_batch()?;
        for &i in doomed {
            batch.delete(&bench_key(i))?;
        }
        batch.commit()?;
    }
    store.close()?;
    Ok(())
}

/// The client's operation `i` on a table of `n` records: a put one time in [`PUT_EVERY`],
/// otherwise a get, of a key chosen at random among the `n` (live or deleted).
pub fn client_op(owner: &OwnerHandle, n: u64, i: u64) -> bool {
    let h = mix(i ^ 0x5eed);
    let key = bench_key(h % n);
    if h.is_multiple_of(PUT_EVERY) {
        owner.put(&key, &bench_value(h, VALUE_SIZE)).is_ok()
    } else {
        owner.get(&key).is_ok()
    }
}

fn owner_row(
    profile: &Profile,
    kind: Kind,
    path: &Path,
    n: u64,
    out: &Path,
) -> anyhow::Result<StallRow> {
    let rate = match kind {
        Kind::Online(rate) => rate,
        Kind::InPlace => IoRate::Unlimited,
    };
    let pacer = Arc::new(Pacer::new(rate));
    let config = OwnerConfig {
        pacer: pacer.clone(),
        ..OwnerConfig::default()
    };
    let owner = OwnerHandle::start::<RedbStore>("stall", path, config);
    let op = |i: u64| client_op(&owner, n, i);
    let (((windows, report), pace), samples) =
        open_loop(profile.rate, N_CLIENT_WORKERS, &op, |probe| {
            probe.warm_up(profile.warmup, CAUGHT_UP, MAX_WARMUP);
            record_pace(&pacer, probe.start, || {
                busy_then_baseline(
                    probe.start,
                    Some(&pacer),
                    || -> anyhow::Result<CompactReport> {
                        Ok(match kind {
                            Kind::Online(_) => owner.compact_online(OnlineConfig::default())?,
                            Kind::InPlace => owner.compact_in_place()?,
                        })
                    },
                )
            })
        });
    owner.close();
    let report = report?;
    let from = windows.busy.0;
    let mut marks = Vec::new();
    if matches!(kind, Kind::Online(_)) {
        marks.push(plot::copied_mark(from + report.copy));
        marks.push(plot::pause_mark(from + report.paused_at));
    }
    marks.extend(crate::loadgen::last_io(&pace).map(plot::io_end_mark));
    let row = finish_row(&kind.name(), n, windows, &samples, &pace, &marks, out)?;
    Ok(StallRow {
        compaction_s: Some(report.duration.as_secs_f64()),
        bytes_before: Some(report.bytes_before),
        bytes_after: Some(report.bytes_after),
        reported_max_pause_us: Some(report.max_pause.as_micros() as u64),
        paced_wait_s: Some(pacer.stats().waited.as_secs_f64()),
        ..row
    })
}

/// When something ran, and the baseline window that goes with it, since the load started.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// The compaction (or backup) itself.
    pub busy: (Duration, Duration),
    /// "During": the compaction and its settling period.
    pub during: (Duration, Duration),
    /// "Without": the baseline window.
    pub baseline: (Duration, Duration),
}

/// A row's figures in one line of progress (the report is written only at the end).
pub fn figures(
    busy_s: Option<f64>,
    during: Option<&LatencyStats>,
    without: Option<&LatencyStats>,
) -> String {
    let (Some(s), Some(d), Some(w)) = (busy_s, during, without) else {
        return String::new();
    };
    let ms = |us: u64| us as f64 / 1e3;
    format!(
        ": {s:.1} s, p99.9 {:.1} / {:.1} ms, max {:.1} / {:.1} ms (during / without)",
        ms(d.p999_us),
        ms(w.p999_us),
        ms(d.max_us),
        ms(w.max_us)
    )
}

/// The settling period after a compaction that took `busy`.
pub fn settle_len(busy: Duration) -> Duration {
    busy.clamp(MIN_SETTLE, MAX_SETTLE)
}

/// Run `busy` now, then wait through the settling period and the baseline window. The
/// settling period also lasts until `pacer` (when given) has moved no bytes for a second (the
/// freeing of a file a compaction replaced runs past the compaction), at most [`MAX_SETTLE`],
/// so that the baseline window sees no maintenance I/O.
pub fn busy_then_baseline<R>(
    start: Instant,
    pacer: Option<&Pacer>,
    busy: impl FnOnce() -> R,
) -> (Windows, R) {
    let from = start.elapsed();
    let result = busy();
    let to = start.elapsed();
    std::thread::sleep(settle_len(to - from));
    while pacer.is_some_and(|p| p.stats().active) && start.elapsed() - to < MAX_SETTLE {
        std::thread::sleep(Duration::from_millis(50));
    }
    let settled = start.elapsed();
    std::thread::sleep((settled - from).max(MIN_BASELINE));
    let windows = Windows {
        busy: (from, to),
        during: (from, settled),
        baseline: (settled, start.elapsed()),
    };
    (windows, result)
}

/// Latency figures and plot of a row whose compaction and baseline ran over `windows`.
pub fn finish_row(
    name: &str,
    n: u64,
    windows: Windows,
    samples: &[Sample],
    pace: &[PacePoint],
    marks: &[plot::Mark],
    out: &Path,
) -> anyhow::Result<StallRow> {
    let (from, to) = windows.busy;
    let during = LatencyStats::of_window(samples, windows.during.0, windows.during.1);
    let baseline = LatencyStats::of_window(samples, windows.baseline.0, windows.baseline.1);
    let file = format!("stall-{n}-{}.png", slug(name));
    plot::latency_over_time(
        &out.join(&file),
        &format!("compaction stall, {n} records, {name}"),
        samples,
        pace,
        &[
            plot::busy_span(windows.busy, "compaction"),
            plot::settle_span((to, windows.during.1)),
            plot::baseline_span(windows.baseline),
        ],
        marks,
    )?;
    Ok(StallRow {
        status: "ok".into(),
        warmup_s: Some(from.as_secs_f64()),
        compaction_s: Some((to - from).as_secs_f64()),
        baseline: Some(baseline),
        during: Some(during),
        plot: Some(file),
        ..StallRow::not_run(name, String::new())
    })
}
