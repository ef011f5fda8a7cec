//! `cargo xtask load`: fill the nine tables of a data dir with hub-like records, then delete a
//! fraction of them at random, to make fragmentation for demos, tests and benches.
//!
//! Records are written as raw key/value bytes through each table's owner (5000 records per
//! write job, one durable commit each), with keys shaped like the table's own (agent, channel,
//! thread, sequence number, time stamp) under the prefix `load/<run>/`, so that repeated loads
//! add records instead of overwriting them. Values are JSON-like message text.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store_owners::{OpenStoresError, OwnerHandle, Stores, StoresOptions};

use crate::loadgen::{bench_value, mix};

/// Records per write job (one durable commit).
pub const BATCH: u64 = 5000;

/// Arguments of `cargo xtask load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// The data dir (created if missing). The daemon must not be running on it.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Records written to each of the nine tables.
    #[arg(long)]
    pub records: u64,
    /// Fraction of the written records then deleted at random, in [0, 1].
    #[arg(long, default_value_t = 0.0)]
    pub delete_fraction: f64,
    /// Size of each value in bytes.
    #[arg(long, default_value_t = 200)]
    pub value_size: usize,
    /// Seed of the random choices (keys' run tag, deleted records).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// What to write into each table.
#[derive(Debug, Clone, Copy)]
pub struct LoadConfig {
    /// Records per table.
    pub n_records: u64,
    /// Fraction deleted afterwards.
    pub delete_fraction: f64,
    /// Value size in bytes.
    pub value_size: usize,
    /// Seed.
    pub seed: u64,
}

/// `cargo xtask load`.
pub fn run(args: &LoadArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.delete_fraction) {
        bail!(
            "--delete-fraction must be in [0, 1], got {}",
            args.delete_fraction
        );
    }
    let stores = open_stores(&args.data_dir)?;
    let config = LoadConfig {
        n_records: args.records,
        delete_fraction: args.delete_fraction,
        value_size: args.value_size,
        seed: args.seed,
    };
    let started = std::time::Instant::now();
    fill(&stores, &config)?;
    println!(
        "loaded {} records per table into {} in {:.1} s, deleted {:.0} %",
        args.records,
        args.data_dir.display(),
        started.elapsed().as_secs_f64(),
        args.delete_fraction * 100.0
    );
    println!(
        "{:<18} {:>10} {:>12} {:>14}",
        "table", "records", "file MiB", "fragmentation"
    );
    for owner in stores.owners() {
        let m = owner.shared().metrics();
        println!(
            "{:<18} {:>10} {:>12.1} {:>14.3}",
            owner.table(),
            m.live_records,
            m.file_bytes as f64 / (1u64 << 20) as f64,
            m.fragmentation_ratio
        );
    }
    stores.close();
    Ok(())
}

/// Open the nine tables of `data_dir`, explaining a lock held by another process.
pub fn open_stores(data_dir: &std::path::Path) -> anyhow::Result<Stores> {
    match Stores::open(data_dir, StoresOptions::default()) {
        Ok(stores) => Ok(stores),
        Err(OpenStoresError::Locked(dir)) => bail!(
            "data dir {} is in use by another process (is the daemon running on it? stop it first)",
            dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("opening {}", data_dir.display())),
    }
}

/// Fill every table of `stores` as `config` says, the nine tables in parallel.
pub fn fill(stores: &Stores, config: &LoadConfig) -> anyhow::Result<()> {
    let owners = stores.owners();
    std::thread::scope(|scope| {
        let workers: Vec<_> = owners
            .iter()
            .enumerate()
            .map(|(i, owner)| {
                scope.spawn(move || fill_table(owner, config, config.seed ^ mix(i as u64)))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| bail!("a load thread panicked")))
            .collect::<anyhow::Result<Vec<()>>>()
    })?;
    Ok(())
}

fn fill_table(owner: &OwnerHandle, config: &LoadConfig, seed: u64) -> anyhow::Result<()> {
    let table = owner.table();
    let mut rng = StdRng::seed_from_u64(seed);
    let run: u32 = rng.random();
    let n = config.n_records;
    let mut start = 0;
    while start < n {
        let end = (start + BATCH).min(n);
        let records: Vec<(Vec<u8>, Vec<u8>)> = (start..end)
            .map(|i| {
                (
                    record_key(table, run, i),
                    record_value(table, seed ^ i, config.value_size),
                )
            })
            .collect();
        owner
            .write(move |batch| {
                for (k, v) in &records {
                    batch.put(k, v)?;
                }
                Ok(())
            })
            .with_context(|| format!("writing to {table}"))?;
        start = end;
    }
    let n_delete = ((n as f64) * config.delete_fraction).round() as usize;
    if n_delete > 0 {
        let mut doomed = rand::seq::index::sample(&mut rng, n as usize, n_delete).into_vec();
        doomed.sort_unstable();
        for chunk in doomed.chunks(BATCH as usize) {
            let keys: Vec<Vec<u8>> = chunk
                .iter()
                .map(|&i| record_key(table, run, i as u64))
                .collect();
            owner
                .write(move |batch| {
                    for k in &keys {
                        batch.delete(k)?;
                    }
                    Ok(())
                })
                .with_context(|| format!("deleting from {table}"))?;
        }
    }
    Ok(())
}

/// A key shaped like the table's own: scope components, then a sequence number.
fn record_key(table: &str, run: u32, i: u64) -> Vec<u8> {
    let h = mix(i ^ u64::from(run));
    let shaped = match table {
        "agent_mailbox" => format!("agent-{:03}/{:012}", h % 500, i),
        "message_history" => format!(
            "{:016}/msg-{:x}",
            1_700_000_000_000_000 + i * 1000 + h % 1000,
            h
        ),
        "agent_channels" => format!("agent-{:03}/channel-{:06}", h % 500, i),
        "channel_history" => format!("channel-{:03}/{:012}", h % 200, i),
        "agentcom_config" => format!("config/setting-{i:08}"),
        "thread_messages" => format!("thread-{:05}/{:012}", h % 20_000, i),
        "thread_replies" => format!("thread-{:05}/reply-{:012}", h % 20_000, i),
        "task_queue" => format!(
            "prio-{}/{:016}/task-{:x}",
            h % 4,
            1_700_000_000_000_000 + i,
            h
        ),
        _ => format!("task-{h:016x}-{i}"),
    };
    format!("load/{run:08x}/{shaped}").into_bytes()
}

/// A JSON-like message of exactly `size` bytes.
fn record_value(table: &str, seed: u64, size: usize) -> Vec<u8> {
    let h = mix(seed);
    let head = format!(
        r#"{{"table":"{table}","from":"agent-{:03}","to":"agent-{:03}","body":""#,
        h % 500,
        (h >> 16) % 500
    );
    let mut value = head.into_bytes();
    let tail = b"\"}";
    let body = size.saturating_sub(value.len() + tail.len());
    value.extend(bench_value(seed, body));
    value.extend_from_slice(tail);
    value.truncate(size);
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use store_owners::TABLE_NAMES;

    #[test]
    fn keys_are_unique_per_table_and_run() {
        for table in TABLE_NAMES {
            let keys: std::collections::BTreeSet<_> =
                (0..5000).map(|i| record_key(table, 7, i)).collect();
            assert_eq!(keys.len(), 5000, "{table}");
            assert!(keys.iter().all(|k| k.starts_with(b"load/00000007/")));
        }
    }

    #[test]
    fn values_have_the_requested_size() {
        for size in [0, 10, 200, 4096] {
            assert_eq!(record_value("task_queue", 3, size).len(), size);
        }
    }
}
