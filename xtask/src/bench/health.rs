//! Section 4, health metrics of the nine tables: how long the nine `Shared::metrics` calls
//! take, and the longest stall they cause to a client doing gets in a loop over the nine
//! owners (compared with the same client over a window without metrics calls). Rounds run
//! every [`ROUND_PERIOD`].

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use serde::Serialize;

use super::Profile;
use crate::load::{self, LoadConfig};
use crate::loadgen::{LatencyStats, Sample, mix};

/// The section's figures.
#[derive(Debug, Clone, Serialize)]
pub struct HealthResult {
    /// Records written per table (half then deleted).
    pub records_per_table: u64,
    /// Rounds of nine metrics calls made.
    pub rounds: u64,
    /// Time of one round of nine calls.
    pub round: LatencyStats,
    /// The get client without metrics calls.
    pub gets_baseline: LatencyStats,
    /// The get client while metrics were called in a loop.
    pub gets_during: LatencyStats,
}

/// One round of nine metrics calls this often (a monitor far keener than any real one).
pub const ROUND_PERIOD: std::time::Duration = std::time::Duration::from_millis(5);

const IDLE: u8 = 0;
const METRICS: u8 = 1;
const STOP: u8 = 2;

/// Run the section.
pub fn run(profile: &Profile, scratch: &Path) -> anyhow::Result<HealthResult> {
    let data_dir = scratch.join("health");
    let stores = load::open_stores(&data_dir)?;
    let config = LoadConfig {
        n_records: profile.health_records,
        delete_fraction: 0.5,
        value_size: 200,
        seed: profile.seed,
    };
    load::fill(&stores, &config)?;
    let owners = stores.owners();
    let phase = AtomicU8::new(IDLE);
    let started = Instant::now();
    let (gets, rounds) = std::thread::scope(|scope| {
        let client = scope.spawn(|| {
            let mut samples: Vec<(u8, Sample)> = Vec::new();
            let mut i = 0u64;
            loop {
                let now = phase.load(Ordering::Relaxed);
                if now == STOP {
                    break;
                }
                let h = mix(i);
                let owner = owners[(h % owners.len() as u64) as usize];
                let t = Instant::now();
                let ok = owner.get(&h.to_be_bytes()).is_ok();
                samples.push((
                    now,
                    Sample {
                        at: t - started,
                        latency: t.elapsed(),
                        failed: !ok,
                    },
                ));
                i += 1;
            }
            samples
        });
        std::thread::sleep(profile.health_duration);
        phase.store(METRICS, Ordering::Relaxed);
        let mut rounds = Vec::new();
        let metrics_started = Instant::now();
        while metrics_started.elapsed() < profile.health_duration {
            let t = Instant::now();
            for owner in &owners {
                std::hint::black_box(owner.shared().metrics());
            }
            rounds.push(Sample {
                at: t - started,
                latency: t.elapsed(),
                failed: false,
            });
            std::thread::sleep(ROUND_PERIOD.saturating_sub(t.elapsed()));
        }
        phase.store(STOP, Ordering::Relaxed);
        (client.join().unwrap_or_default(), rounds)
    });
    drop(owners);
    stores.close();
    let _ = std::fs::remove_dir_all(&data_dir);
    let in_phase = |p: u8| gets.iter().filter(move |(q, _)| *q == p).map(|(_, s)| s);
    Ok(HealthResult {
        records_per_table: profile.health_records,
        rounds: rounds.len() as u64,
        round: LatencyStats::of(&rounds),
        gets_baseline: LatencyStats::of(in_phase(IDLE)),
        gets_during: LatencyStats::of(in_phase(METRICS)),
    })
}
