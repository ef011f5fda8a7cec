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
//! 7. [`changelog`]: durable writes per second with the change log on against off, and the
//!    replay rate of a restore.
//! 8. [`ship`]: the loss window of a hub killed at a random moment and recovered from the
//!    bucket (backup plus shipped change log; needs `moto_server`).
//!
//! Sections 1 and 3 run the online compaction and the backup at each maintenance I/O rate of
//! [`stall::pacing_modes`] (`auto`, a fixed rate, unpaced), side by side. The report is
//! written by [`render`].
//!
//! Large files live in a scratch dir under the output dir, removed at the end.

mod backup;
mod changelog;
mod dets;
mod health;
pub(crate) mod offsite;
mod render;
pub mod ship;
mod stall;
mod startup;
mod writes;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use store_core::IoRate;

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
    /// Table sizes of the stall and backup sections, comma-separated (default: 1M,4M; quick:
    /// 50k,200k).
    #[arg(long, value_delimiter = ',')]
    pub sizes: Option<Vec<u64>>,
    /// Operations per second of the open-loop client.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Sections to run, comma-separated (default: all eight). The report leaves the others out.
    #[arg(long, value_delimiter = ',')]
    pub sections: Option<Vec<u8>>,
    /// The maintenance I/O rates of the online compaction and backup rows, comma-separated
    /// (default: auto, 32MiB/s, unlimited). Given, section 1 runs only those online rows (no
    /// in-place, DETS or `cp` row).
    #[arg(long, value_delimiter = ',')]
    pub modes: Option<Vec<IoRate>>,
}

/// Sizes and durations of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// Quick or full.
    pub quick: bool,
    /// Stall table sizes.
    pub sizes: Vec<u64>,
    /// The sections run.
    pub sections: Vec<u8>,
    /// The I/O rates of the online compaction and backup rows.
    pub modes: Vec<IoRate>,
    /// Section 1 runs the in-place, DETS and `cp` rows too.
    pub comparison_rows: bool,
    /// Client rate, operations per second.
    pub rate: f64,
    /// Client load before a compaction or backup starts.
    pub warmup: Duration,
    /// Length of each write-throughput row.
    pub write_duration: Duration,
    /// Records of the backed-up table, one backup section per size.
    pub backup_sizes: Vec<u64>,
    /// Records per table of the health section.
    pub health_records: u64,
    /// Length of each phase of the health section.
    pub health_duration: Duration,
    /// Records of the backed-up table of the off-site section.
    pub offsite_records: u64,
    /// Records per table of the start-up section.
    pub startup_records: u64,
    /// Records of each of the eight other tables recovered in the off-site section.
    pub offsite_recover_records: u64,
    /// Seed of the random choices.
    pub seed: u64,
}

impl Profile {
    fn new(args: &BenchArgs) -> Profile {
        let (sizes, warmup, write_s, health_records, health_s) = if args.quick {
            (vec![50_000, 200_000], 1, 1.5, 20_000, 1.0)
        } else {
            (vec![1_000_000, 4_000_000], 2, 5.0, 200_000, 3.0)
        };
        let sizes = args.sizes.clone().unwrap_or(sizes);
        Profile {
            quick: args.quick,
            backup_sizes: sizes.clone(),
            sizes,
            sections: args.sections.clone().unwrap_or_else(|| (1..=8).collect()),
            modes: args
                .modes
                .clone()
                .unwrap_or_else(|| stall::pacing_modes().to_vec()),
            comparison_rows: args.modes.is_none(),
            rate: args.rate,
            warmup: Duration::from_secs(warmup),
            write_duration: Duration::from_secs_f64(write_s),
            health_records,
            health_duration: Duration::from_secs_f64(health_s),
            offsite_records: if args.quick { 200_000 } else { 1_000_000 },
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
    if let Some(sections) = &args.sections {
        let sections: Vec<String> = sections.iter().map(u8::to_string).collect();
        command.arg("--sections").arg(sections.join(","));
    }
    if let Some(modes) = &args.modes {
        let modes: Vec<String> = modes.iter().map(IoRate::to_string).collect();
        command.arg("--modes").arg(modes.join(","));
    }
    let status = command.status().context("running cargo")?;
    if !status.success() {
        bail!("the release bench run failed ({status})");
    }
    Ok(())
}

/// Everything the report says.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    machine: MachineInfo,
    build: &'static str,
    profile: Profile,
    total_s: f64,
    stall: Vec<stall::StallResult>,
    writes: Vec<writes::WriteRow>,
    backup: Vec<backup::BackupResult>,
    backup_errors: Vec<String>,
    health: Option<health::HealthResult>,
    startup: Option<startup::StartupResult>,
    startup_error: Option<String>,
    offsite: Option<offsite::OffsiteResult>,
    offsite_error: Option<String>,
    changelog: Option<changelog::ChangeLogResult>,
    changelog_error: Option<String>,
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

    let section = |n: u8| profile.sections.contains(&n);
    let mut stall_results = Vec::new();
    let mut dets_sizes = None;
    for &n in profile.sizes.iter().filter(|_| section(1)) {
        eprintln!("1. compaction stall, {n} records");
        stall_results.push(stall::run(
            &profile,
            n,
            scratch.path(),
            &out,
            &mut dets_sizes,
        )?);
    }
    let mut write_rows = Vec::new();
    if section(2) {
        eprintln!("2. durable write throughput");
        write_rows = writes::run(&profile, scratch.path())?;
    }
    let (mut backups, mut backup_errors) = (Vec::new(), Vec::new());
    for &n in profile.backup_sizes.iter().filter(|_| section(3)) {
        eprintln!("3. backup, {n} records");
        match backup::run(&profile, n, scratch.path(), &out) {
            Ok(b) => backups.push(b),
            Err(e) => backup_errors.push(format!("{n} records: {e:#}")),
        }
    }
    let mut health = None;
    if section(4) {
        eprintln!("4. health metrics");
        health = Some(health::run(&profile, scratch.path())?);
    }
    let (mut startup, mut startup_error) = (None, None);
    if section(5) {
        eprintln!("5. start-up");
        match startup::run(&profile, scratch.path()) {
            Ok(s) => startup = Some(s),
            Err(e) => startup_error = Some(format!("{e:#}")),
        }
    }
    let (mut offsite, mut offsite_error) = (None, None);
    if section(6) {
        eprintln!("6. off-site backups");
        match offsite::run(&profile, scratch.path()) {
            Ok(o) => offsite = Some(o),
            Err(e) => offsite_error = Some(format!("{e:#}")),
        }
    }
    let (mut changelog, mut changelog_error) = (None, None);
    if section(7) {
        eprintln!("7. change log");
        match changelog::run(&profile, scratch.path()) {
            Ok(c) => changelog = Some(c),
            Err(e) => changelog_error = Some(format!("{e:#}")),
        }
    }
    let (mut ship, mut ship_error) = (None, None);
    if section(8) {
        eprintln!("8. change log off-site: loss window");
        match ship::run(&profile, scratch.path()) {
            Ok(r) => ship = Some(r),
            Err(e) => ship_error = Some(format!("{e:#}")),
        }
    }
    drop(scratch);

    let report = Report {
        machine,
        build,
        profile,
        total_s: started.elapsed().as_secs_f64(),
        stall: stall_results,
        writes: write_rows,
        backup: backups,
        backup_errors,
        health,
        startup,
        startup_error,
        offsite,
        offsite_error,
        changelog,
        changelog_error,
        ship,
        ship_error,
    };
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let markdown = render::render(&report);
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
