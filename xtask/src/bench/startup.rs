//! Section 5, start-up: the time from opening the nine tables (as the daemon opens them) to
//! the first read served by each, without verification at open (today's default: the scrub
//! verifies in the background) against the full checksum walk at open (the previous
//! default), in the same run on the same files; then the background scrub of the nine tables.
//! The page cache is dropped before each open when the bench runs as root (cold start).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context;
use compaction::{Maintainer, MaintenanceConfig, ScrubOutcome};
use serde::Serialize;
use store_owners::{Stores, StoresOptions};

use super::Profile;
use crate::load::{self, LoadConfig};

/// The section's figures.
#[derive(Debug, Clone, Serialize)]
pub struct StartupResult {
    /// Records per table.
    pub records_per_table: u64,
    /// Bytes of the nine table files.
    pub total_bytes: u64,
    /// Whether the page cache was dropped before each open (needs root).
    pub cold: bool,
    /// Open without verification, to the first read served by every table, in seconds.
    pub fast_open_s: f64,
    /// Open with every page checksum verified, to the same point, in seconds.
    pub verified_open_s: f64,
    /// The background scrub of the nine tables after the fast open, in seconds.
    pub scrub_s: f64,
    /// Bytes the scrub read.
    pub scrub_bytes: u64,
    /// Tables the scrub found clean (nine, unless something is wrong).
    pub scrub_clean: usize,
}

/// Run the section.
pub fn run(profile: &Profile, scratch: &Path) -> anyhow::Result<StartupResult> {
    let data_dir = scratch.join("startup");
    {
        let stores = load::open_stores(&data_dir)?;
        let config = LoadConfig {
            n_records: profile.startup_records,
            delete_fraction: 0.0,
            value_size: 500,
            seed: profile.seed,
        };
        load::fill(&stores, &config)?;
        stores.close();
    }
    let total_bytes = store_owners::TABLE_NAMES
        .iter()
        .map(|t| std::fs::metadata(store_owners::stores::table_path(&data_dir, t)))
        .map(|m| m.map(|m| m.len()))
        .sum::<std::io::Result<u64>>()
        .context("sizing the table files")?;

    let cold = drop_page_cache();
    let (fast_open_s, stores) = open_and_read(&data_dir, false)?;
    // Unpaced here: the row measures how fast a scrub can read (the daemon paces it,
    // [scrub] max_rate).
    let config = MaintenanceConfig {
        scrub: compaction::ScrubConfig {
            max_rate: 0,
            ..Default::default()
        },
        ..MaintenanceConfig::default()
    };
    let maintainer = Maintainer::new(Arc::new(stores), config);
    let started = Instant::now();
    let run = maintainer
        .scrub_all(&Arc::new(AtomicBool::new(false)))
        .context("scrubbing")?;
    let scrub_s = started.elapsed().as_secs_f64();
    let scrub_bytes = run.results.iter().map(|r| r.bytes_read).sum();
    let scrub_clean = run
        .results
        .iter()
        .filter(|r| r.outcome == ScrubOutcome::Clean)
        .count();
    let stores = maintainer.stores().clone();
    drop(maintainer);
    Arc::into_inner(stores)
        .context("the tables are still referenced")?
        .close();

    drop_page_cache();
    let (verified_open_s, stores) = open_and_read(&data_dir, true)?;
    stores.close();
    std::fs::remove_dir_all(&data_dir).ok();
    Ok(StartupResult {
        records_per_table: profile.startup_records,
        total_bytes,
        cold,
        fast_open_s,
        verified_open_s,
        scrub_s,
        scrub_bytes,
        scrub_clean,
    })
}

/// Open the nine tables and read one key from each; the seconds that took.
fn open_and_read(data_dir: &Path, verify: bool) -> anyhow::Result<(f64, Stores)> {
    let started = Instant::now();
    let options = StoresOptions {
        check_integrity_on_open: verify,
        ..StoresOptions::default()
    };
    let stores = Stores::open(data_dir, options).context("opening the tables")?;
    for owner in stores.owners() {
        owner
            .get(b"startup-probe")
            .with_context(|| format!("first read of {}", owner.table()))?;
    }
    Ok((started.elapsed().as_secs_f64(), stores))
}

/// Write dirty pages back and drop the page cache, so that an open reads from the disk.
/// False when not allowed (not root).
fn drop_page_cache() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}
