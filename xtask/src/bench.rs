//! `cargo xtask bench`: the side-by-side numbers, every figure measured by the run that writes
//! the report.
//!
//! `cargo xtask bench [--quick]` (a debug build, through the alias) rebuilds this binary with
//! `--release` and runs it as `xtask bench-run [--quick]`, which measures and writes
//! `target/bench/report.md`, `target/bench/report.json` and the PNG plots. Sections:
//!
//! 1. [`stall`] (with [`dets`]): operation latency during compaction (online, in place, DETS
//!    close + reopen with `repair: force`, and `cp` as the floor).
//! 2. [`writes`]: durable write throughput through one owner with 1, 8 and 32 clients, against
//!    one commit per write.
//! 3. [`backup`]: backup throughput against `cp`, and operation latency during a backup.
//! 4. [`health`]: time of the nine metrics calls, and the stall they cause.
//! 5. [`startup`]: opening the nine tables to the first served read, without and with
//!    verification at open, and the background scrub that verifies instead.
//! 6. [`offsite`]: off-site upload against a plain PUT, compression ratio, client latency
//!    during an upload, recovery of nine tables from the bucket (needs `moto_server`).
//! 7. [`ship`]: the loss window of a hub killed at a random moment and recovered from the
//!    bucket (backup plus shipped change log; needs `moto_server`).
//!
//! Large files live in a scratch dir under the output dir, removed at the end.

mod backup;
mod dets;
mod health;
mod offsite;
pub mod ship;
mod stall;
mod startup;
mod writes;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;

use crate::loadgen::LatencyStats;
use crate::machine::MachineInfo;

/// Arguments of `cargo xtask bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Small sizes: finishes in under a minute (once built).
    #[arg(long)]
    pub quick: bool,
    /// Where the report goes (default: target/bench under the workspace root).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Table sizes of the stall section, comma-separated (default: 1M,4M; quick: 50k,200k).
    #[arg(long, value_delimiter = ',')]
    pub sizes: Option<Vec<u64>>,
    /// Operations per second of the open-loop client.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
}

/// Sizes and durations of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// Quick or full.
    pub quick: bool,
    /// Stall table sizes.
    pub sizes: Vec<u64>,
    /// Client rate, operations per second.
    pub rate: f64,
    /// Client load before a compaction or backup starts.
    pub warmup: Duration,
    /// Length of each write-throughput row.
    pub write_duration: Duration,
    /// Records of the backed-up table.
    pub backup_records: u64,
    /// Records per table of the health section.
    pub health_records: u64,
    /// Length of each phase of the health section.
    pub health_duration: Duration,
    /// Records per table of the start-up section.
    pub startup_records: u64,
    /// Records of each of the eight other tables recovered in the off-site section.
    pub offsite_recover_records: u64,
    /// Seed of the random choices.
    pub seed: u64,
}

impl Profile {
    fn new(args: &BenchArgs) -> Profile {
        let (sizes, warmup, write_s, backup_records, health_records, health_s) = if args.quick {
            (vec![50_000, 200_000], 1, 1.5, 200_000, 20_000, 1.0)
        } else {
            (vec![1_000_000, 4_000_000], 2, 5.0, 1_000_000, 200_000, 3.0)
        };
        Profile {
            quick: args.quick,
            sizes: args.sizes.clone().unwrap_or(sizes),
            rate: args.rate,
            warmup: Duration::from_secs(warmup),
            write_duration: Duration::from_secs_f64(write_s),
            backup_records,
            health_records,
            health_duration: Duration::from_secs_f64(health_s),
            startup_records: if args.quick { 50_000 } else { 1_000_000 },
            offsite_recover_records: if args.quick { 20_000 } else { 1_000_000 },
            seed: 42,
        }
    }
}

/// `cargo xtask bench`: build in release mode and run `bench-run` with the same arguments.
pub fn run_release(args: &BenchArgs) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(crate::project_root()).args([
        "run",
        "--release",
        "--package",
        "xtask",
        "--bin",
        "xtask",
        "--",
        "bench-run",
    ]);
    if args.quick {
        command.arg("--quick");
    }
    if let Some(out) = &args.out {
        command.arg("--out").arg(out);
    }
    if let Some(sizes) = &args.sizes {
        let sizes: Vec<String> = sizes.iter().map(u64::to_string).collect();
        command.arg("--sizes").arg(sizes.join(","));
    }
    command.arg("--rate").arg(args.rate.to_string());
    let status = command.status().context("running cargo")?;
    if !status.success() {
        bail!("the release bench run failed ({status})");
    }
    Ok(())
}

/// Everything the report says.
#[derive(Debug, Serialize)]
struct Report {
    machine: MachineInfo,
    build: &'static str,
    profile: Profile,
    total_s: f64,
    stall: Vec<stall::StallResult>,
    writes: Vec<writes::WriteRow>,
    backup: Option<backup::BackupResult>,
    backup_error: Option<String>,
    health: health::HealthResult,
    startup: Option<startup::StartupResult>,
    startup_error: Option<String>,
    offsite: Option<offsite::OffsiteResult>,
    offsite_error: Option<String>,
    ship: Option<ship::ShipResult>,
    ship_error: Option<String>,
}

/// `xtask bench-run`: measure and write the report.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let profile = Profile::new(args);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| crate::project_root().join("target/bench"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("scratch-")
        .tempdir_in(&out)?;
    let machine = MachineInfo::gather(&out);
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    eprintln!(
        "bench ({}, {build} build) -> {}",
        if profile.quick { "quick" } else { "full" },
        out.display()
    );

    let mut stall_results = Vec::new();
    let mut dets_sizes = None;
    for &n in &profile.sizes {
        eprintln!("1. compaction stall, {n} records");
        stall_results.push(stall::run(
            &profile,
            n,
            scratch.path(),
            &out,
            &mut dets_sizes,
        )?);
    }
    eprintln!("2. durable write throughput");
    let write_rows = writes::run(&profile, scratch.path())?;
    eprintln!("3. backup");
    let (backup, backup_error) = match backup::run(&profile, scratch.path(), &out) {
        Ok(b) => (Some(b), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    eprintln!("4. health metrics");
    let health = health::run(&profile, scratch.path())?;
    eprintln!("5. start-up");
    let (startup, startup_error) = match startup::run(&profile, scratch.path()) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    eprintln!("6. off-site backups");
    let (offsite, offsite_error) = match offsite::run(&profile, scratch.path()) {
        Ok(o) => (Some(o), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    eprintln!("7. change log off-site: loss window");
    let (ship, ship_error) = match ship::run(&profile, scratch.path()) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    drop(scratch);

    let report = Report {
        machine,
        build,
        profile,
        total_s: started.elapsed().as_secs_f64(),
        stall: stall_results,
        writes: write_rows,
        backup,
        backup_error,
        health,
        startup,
        startup_error,
        offsite,
        offsite_error,
        ship,
        ship_error,
    };
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let markdown = render(&report);
    std::fs::write(out.join("report.md"), &markdown)?;
    println!("{markdown}");
    eprintln!(
        "wrote {} and report.json ({:.0} s)",
        out.join("report.md").display(),
        report.total_s
    );
    Ok(())
}

/// Time `cp` of a file of `bytes` bytes, followed by `sync` of the copy (a compaction or
/// backup ends durably too). The source is written (and synced) first, so it is in the page
/// cache, as a live table is.
pub fn time_cp(dir: &Path, bytes: u64) -> anyhow::Result<Duration> {
    use std::io::Write;
    let src = dir.join("cp-source");
    let dst = dir.join("cp-copy");
    {
        let mut file = std::fs::File::create(&src)?;
        let chunk: Vec<u8> = (0..1 << 20)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            file.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        file.sync_all()?;
    }
    let _ = std::fs::remove_file(&dst);
    let started = Instant::now();
    let status = Command::new("cp")
        .arg(&src)
        .arg(&dst)
        .status()
        .context("running cp")?;
    if !status.success() {
        bail!("cp failed ({status})");
    }
    let status = Command::new("sync")
        .arg(&dst)
        .status()
        .context("running sync")?;
    if !status.success() {
        bail!("sync failed ({status})");
    }
    let elapsed = started.elapsed();
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&dst);
    Ok(elapsed)
}

fn mb(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "–".into(), |b| format!("{:.1}", b as f64 / 1e6))
}

fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "–".into(), |s| format!("{s:.2}"))
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1e3)
}

fn lat(stats: Option<&LatencyStats>, pick: fn(&LatencyStats) -> u64) -> String {
    stats.map_or_else(|| "–".into(), |s| ms(pick(s)))
}

fn render(r: &Report) -> String {
    let mut md = String::new();
    let m = &r.machine;
    let _ = writeln!(md, "# Benchmark report\n");
    let _ = writeln!(
        md,
        "Generated by `cargo xtask bench{}` ({} build); every figure below was measured by this run ({:.0} s).\n",
        if r.profile.quick { " --quick" } else { "" },
        r.build,
        r.total_s
    );
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| date | {} |", m.date);
    let _ = writeln!(md, "| commit | `{}` |", m.commit);
    let _ = writeln!(md, "| cores | {} ({}) |", m.cores, m.cpu);
    let _ = writeln!(
        md,
        "| memory | {:.1} GiB |",
        m.memory_bytes as f64 / (1u64 << 30) as f64
    );
    let _ = writeln!(md, "| disk | {} |", m.disk);
    let _ = writeln!(md, "| kernel | {} |\n", m.kernel);

    let _ = writeln!(md, "## 1. Compaction stall\n");
    let _ = writeln!(
        md,
        "One table, N records of 200-byte values written in random key order, half then deleted at random. \
         A client issues {rate:.0} operations/s on a fixed schedule (open loop, up to {workers} in flight; 1 in \
         {put_every} a durable put, the others gets, of random keys); latency is measured from each operation's \
         scheduled time, so a stall counts against every operation it delayed. After a warm-up (at least \
         {warmup} s, and until the client keeps its schedule, at most {max_warmup} s) the table is compacted. \"During\" is the \
         compaction plus a settling period as long as it ({min_settle} to {max_settle} s: the backlog a stall \
         leaves, closing the old file); \"without\" is the window of the same length (at least {min_base} s) \
         that follows. Each operation counts in the window it was scheduled in. Online and in-place rows run \
         the same fragmented file through one owner (default settings: 64 MiB cache); the DETS row is \
         `xtask/dets/dets_stall.escript` (`dets:close`, then `dets:open_file` with `{{repair, force}}`, \
         {workers} client processes at the same rate and mix, same windows); `cp` copies a file the size of \
         the online-compacted table (plus `sync`), the physical floor. Latencies in ms. The last column counts \
         the operations completed in each window: fewer than the rate times the window means the client fell \
         behind its schedule. \"Reported pause\" is the longest time the owner itself says it stopped \
         serving.\n",
        rate = r.profile.rate,
        workers = stall::N_CLIENT_WORKERS,
        put_every = stall::PUT_EVERY,
        warmup = r.profile.warmup.as_secs_f64(),
        max_warmup = stall::MAX_WARMUP.as_secs_f64(),
        min_settle = stall::MIN_SETTLE.as_secs_f64(),
        max_settle = stall::MAX_SETTLE.as_secs_f64(),
        min_base = stall::MIN_BASELINE.as_secs_f64(),
    );
    for s in &r.stall {
        let _ = writeln!(
            md,
            "### N = {} (fragmented file {:.1} MB, built in {:.1} s)\n",
            s.n_records,
            s.fragmented_bytes as f64 / 1e6,
            s.build_s
        );
        let _ = writeln!(
            md,
            "| row | status | warm-up (s) | time (s) | MB before | MB after | max during | p99.9 during | p99 during | max without | p99.9 without | p99 without | reported pause | ops during / without |"
        );
        let _ = writeln!(
            md,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for row in &s.rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
                row.name,
                row.status,
                secs(row.warmup_s),
                secs(row.compaction_s),
                mb(row.bytes_before),
                mb(row.bytes_after),
                lat(row.during.as_ref(), |s| s.max_us),
                lat(row.during.as_ref(), |s| s.p999_us),
                lat(row.during.as_ref(), |s| s.p99_us),
                lat(row.baseline.as_ref(), |s| s.max_us),
                lat(row.baseline.as_ref(), |s| s.p999_us),
                lat(row.baseline.as_ref(), |s| s.p99_us),
                row.reported_max_pause_us.map_or_else(|| "–".into(), ms),
                row.during.map_or(0, |s| s.n_ops),
                row.baseline.map_or(0, |s| s.n_ops),
            );
        }
        let _ = writeln!(md);
        for row in s.rows.iter().filter(|r| r.plot.is_some()) {
            let plot = row.plot.as_deref().unwrap_or_default();
            let _ = writeln!(md, "![{} N={}]({plot})", row.name, s.n_records);
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "## 2. Durable write throughput\n");
    let _ = writeln!(
        md,
        "200-byte puts, each acknowledged only once durable (fsync). Owner rows: C client threads each \
         waiting for its put before the next (the owner commits the queued writes together); plain row: \
         one durable commit per write on a store without an owner, one thread. {:.1} s per row. \
         Latency in ms.\n",
        r.profile.write_duration.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| how | clients | writes | writes/s | vs one commit per write | p50 | p99 | max |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    let plain = r
        .writes
        .first()
        .map_or(1.0, |w| w.writes_per_s.max(f64::MIN_POSITIVE));
    for w in &r.writes {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} | {:.1}x | {} | {} | {} |",
            w.name,
            w.clients,
            w.writes,
            w.writes_per_s,
            w.writes_per_s / plain,
            ms(w.latency.p50_us),
            ms(w.latency.p99_us),
            ms(w.latency.max_us)
        );
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## 3. Backup\n");
    match (&r.backup, &r.backup_error) {
        (Some(b), _) => {
            let _ = writeln!(
                md,
                "One table (`message_history`) of {} records ({:.1} MB file), backed up while the open-loop \
                 client of section 1 runs on it. Method: {}.\n",
                b.n_records,
                b.table_bytes as f64 / 1e6,
                b.method
            );
            let _ = writeln!(
                md,
                "| | time (s) | MB/s of table file | output MB |\n|---|---:|---:|---:|"
            );
            let _ = writeln!(
                md,
                "| backup | {:.2} | {:.0} | {:.1} |",
                b.backup_s,
                b.backup_mb_per_s,
                b.backup_bytes as f64 / 1e6
            );
            let _ = writeln!(
                md,
                "| snapshot copy alone (no client, no verification) | {:.2} | {:.0} | – |",
                b.snapshot_copy_s,
                b.table_bytes as f64 / 1e6 / b.snapshot_copy_s
            );
            let _ = writeln!(
                md,
                "| `cp` + `sync` of a file that size | {:.2} | {:.0} | {:.1} |\n",
                b.cp_s,
                b.cp_mb_per_s,
                b.table_bytes as f64 / 1e6
            );
            let _ = writeln!(
                md,
                "| client latency (ms) | p99 | p99.9 | max |\n|---|---:|---:|---:|"
            );
            let _ = writeln!(
                md,
                "| during the backup (and settling) | {} | {} | {} |",
                ms(b.during.p99_us),
                ms(b.during.p999_us),
                ms(b.during.max_us)
            );
            let _ = writeln!(
                md,
                "| without (same length, after) | {} | {} | {} |\n",
                ms(b.baseline.p99_us),
                ms(b.baseline.p999_us),
                ms(b.baseline.max_us)
            );
            let _ = writeln!(md, "![backup]({})\n", b.plot);
        }
        (None, error) => {
            let _ = writeln!(md, "Failed: {}\n", error.as_deref().unwrap_or("unknown"));
        }
    }

    let h = &r.health;
    let _ = writeln!(md, "## 4. Health metrics of the nine tables\n");
    let _ = writeln!(
        md,
        "Nine tables of {} records each (half deleted). One round is the nine `Shared::metrics` calls \
         (counters published by each owner plus one `stat` of its file; no round trip to the owner), one round \
         every {} ms. A client does gets in a loop over the nine owners, first without, then during the rounds.\n",
        h.records_per_table,
        health::ROUND_PERIOD.as_millis()
    );
    let _ = writeln!(
        md,
        "| | count | p50 (ms) | p99 (ms) | max (ms) |\n|---|---:|---:|---:|---:|"
    );
    let _ = writeln!(
        md,
        "| one round of nine metrics calls | {} | {} | {} | {} |",
        h.rounds,
        ms(h.round.p50_us),
        ms(h.round.p99_us),
        ms(h.round.max_us)
    );
    let _ = writeln!(
        md,
        "| get, without metrics calls | {} | {} | {} | {} |",
        h.gets_baseline.n_ops,
        ms(h.gets_baseline.p50_us),
        ms(h.gets_baseline.p99_us),
        ms(h.gets_baseline.max_us)
    );
    let _ = writeln!(
        md,
        "| get, during metrics calls | {} | {} | {} | {} |\n",
        h.gets_during.n_ops,
        ms(h.gets_during.p50_us),
        ms(h.gets_during.p99_us),
        ms(h.gets_during.max_us)
    );
    let _ = writeln!(
        md,
        "Longest owner stall during the metrics calls: {} ms (longest get); without them: {} ms.",
        ms(h.gets_during.max_us),
        ms(h.gets_baseline.max_us)
    );
    render_startup(&mut md, r);
    let _ = writeln!(md);
    offsite::render(&mut md, r.offsite.as_ref(), r.offsite_error.as_deref());
    ship::render(&mut md, r.ship.as_ref(), r.ship_error.as_deref());
    md
}

fn render_startup(md: &mut String, r: &Report) {
    let _ = writeln!(md, "\n## 5. Start-up\n");
    let Some(s) = &r.startup else {
        let _ = writeln!(
            md,
            "Not measured: {}",
            r.startup_error.as_deref().unwrap_or("unknown error")
        );
        return;
    };
    let _ = writeln!(
        md,
        "Nine tables of {} records each (500-byte values; {:.0} MiB in all). `Stores::open` as the daemon calls it, \
         then one get on each table: the time until all nine serve. {}. The daemon opens without verification and \
         scrubs in the background (every page checksum of every table, while they serve); the verified open is \
         redb's integrity check at open, the daemon's previous behaviour.\n",
        s.records_per_table,
        s.total_bytes as f64 / (1 << 20) as f64,
        if s.cold {
            "The page cache was dropped before each open (cold start)"
        } else {
            "The page cache was NOT dropped (not root): warm start"
        }
    );
    let _ = writeln!(md, "| | seconds | ratio |\n|---|---:|---:|");
    let _ = writeln!(
        md,
        "| open, no verification (default) | {:.3} | 1 |",
        s.fast_open_s
    );
    let _ = writeln!(
        md,
        "| open, every page verified | {:.3} | {:.0}x |",
        s.verified_open_s,
        s.verified_open_s / s.fast_open_s.max(1e-9)
    );
    let _ = writeln!(
        md,
        "| background scrub of the nine tables, after the fast open (unpaced) | {:.3} | - |\n",
        s.scrub_s
    );
    let _ = writeln!(
        md,
        "The scrub read {:.0} MiB ({:.0} MiB/s) and found {} of 9 tables clean.",
        s.scrub_bytes as f64 / (1 << 20) as f64,
        s.scrub_bytes as f64 / (1 << 20) as f64 / s.scrub_s.max(1e-9),
        s.scrub_clean
    );
}
