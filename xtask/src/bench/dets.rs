//! The DETS row of the stall section: runs `xtask/dets/dets_stall.escript` when `escript`
//! (Erlang) is installed, and turns its JSON into a row like the owner rows. The escript
//! builds its own DETS table, so the row needs nothing from the Rust side but the sizes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::Profile;
use super::stall::{
    CAUGHT_UP, MAX_SETTLE, MAX_WARMUP, MIN_BASELINE, MIN_SETTLE, N_CLIENT_WORKERS, StallRow,
    VALUE_SIZE, Windows, finish_row,
};
use crate::loadgen::Sample;

#[derive(Debug, Deserialize)]
struct EscriptReport {
    build_ms: u64,
    bytes_before: u64,
    bytes_after: u64,
    compact_from_us: u64,
    compact_to_us: u64,
    settled_us: u64,
    baseline_to_us: u64,
    samples: Vec<(u64, u64)>,
}

/// The largest DETS file.
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// `escript` on the PATH, if any.
pub fn find_escript() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("escript"))
        .find(|p| p.is_file())
}

/// The DETS close + reopen(repair: force) row for a table of `n` records.
pub fn stall_row(profile: &Profile, n: u64, dir: &Path, out: &Path) -> anyhow::Result<StallRow> {
    let Some(escript) = find_escript() else {
        return Ok(StallRow::not_run(
            "dets",
            "not run: escript is not installed (Debian: apt-get install erlang-base)".into(),
        ));
    };
    let script = crate::project_root().join("xtask/dets/dets_stall.escript");
    let table = dir.join("stall.dets");
    let output = Command::new(&escript)
        .arg(&script)
        .arg(&table)
        .arg(n.to_string())
        .arg(VALUE_SIZE.to_string())
        .arg((profile.rate as u64).to_string())
        .arg(N_CLIENT_WORKERS.to_string())
        .arg(profile.warmup.as_millis().to_string())
        .arg(CAUGHT_UP.as_millis().to_string())
        .arg(MAX_WARMUP.as_millis().to_string())
        .arg(MIN_SETTLE.as_millis().to_string())
        .arg(MAX_SETTLE.as_millis().to_string())
        .arg(MIN_BASELINE.as_millis().to_string())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    let _ = std::fs::remove_file(&table);
    if !output.status.success() {
        bail!(
            "{} exited with {}: {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    // DETS prints a notice ("file ... is now compacted") on standard output too.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .context("the escript printed no JSON")?;
    let report: EscriptReport = serde_json::from_str(json).context("parsing the escript's JSON")?;
    eprintln!(
        "  stall N={n}: dets table built in {:.1} s",
        report.build_ms as f64 / 1e3
    );
    let samples: Vec<Sample> = report
        .samples
        .iter()
        .map(|&(at, latency)| Sample {
            at: Duration::from_micros(at),
            latency: Duration::from_micros(latency),
            failed: false,
        })
        .collect();
    let us = Duration::from_micros;
    let windows = Windows {
        busy: (us(report.compact_from_us), us(report.compact_to_us)),
        during: (us(report.compact_from_us), us(report.settled_us)),
        baseline: (us(report.settled_us), us(report.baseline_to_us)),
    };
    let row = finish_row("dets", n, windows, &samples, &[], &[], out)?;
    Ok(StallRow {
        bytes_before: Some(report.bytes_before),
        bytes_after: Some(report.bytes_after),
        ..row
    })
}
