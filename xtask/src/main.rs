//! Project automation, one subcommand per task (`cargo xtask <task>`):
//!
//! - `load`: fill the nine tables of a data dir with records and delete a fraction of them.
//! - `bench`: the side-by-side numbers (compaction stall, durable writes, backups, metrics),
//!   written to `target/bench/report.{md,json}` with PNG plots. It rebuilds and re-runs this
//!   binary with `--release` (the `xtask` alias runs a debug build), as `bench-run`.
//! - `crash`: the crash campaign: a child process writing to the nine tables while they are
//!   compacted (and backed up) is killed with SIGKILL at random moments; every acknowledged
//!   write must survive and every table must reopen on its own. `--mode restore` restores a
//!   table with known records back to back instead, and counts the tables that come back
//!   without them.
//!
//! Needs nothing but cargo and rustc, plus `escript` (Erlang) for the optional DETS row of the
//! bench.

mod bench;
mod crash;
mod load;
mod loadgen;
mod machine;
mod plot;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    about = "Project automation: load, bench, crash campaigns."
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Fill the nine tables of a data dir (daemon not running) and delete a fraction at random.
    Load(load::LoadArgs),
    /// Run the benchmarks (release build) and write target/bench/report.{md,json} and plots.
    Bench(bench::BenchArgs),
    /// The benchmarks themselves, in this process (what `bench` runs after a release build).
    #[command(hide = true)]
    BenchRun(bench::BenchArgs),
    /// Kill a writing, compacting (or, with --mode restore, restoring) child with SIGKILL at
    /// random moments; check every acknowledged write survives and no table is emptied.
    Crash(crash::CrashArgs),
    /// The child process of the crash campaign.
    #[command(hide = true)]
    CrashChild(crash::ChildArgs),
    /// The hub process of the bench's loss-window section, killed by it.
    #[command(hide = true)]
    ShipChild(bench::ship::ChildArgs),
}

/// Runs the task; a failure is one line, `error: ` and its causes (never a backtrace, which
/// `anyhow` would print from `main`'s `Result` when `RUST_BACKTRACE` is set), exit code 1.
fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Load(args) => load::run(&args),
        Task::Bench(args) => bench::run_release(&args),
        Task::BenchRun(args) => bench::run(&args),
        Task::Crash(args) => crash::run(&args),
        Task::CrashChild(args) => crash::child(&args),
        Task::ShipChild(args) => bench::ship::child(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's directory).
pub fn project_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}
