//! Section 8, the change log off-site: the loss window of a hub lost whole. A child process
//! (`xtask ship-child`: the daemon embedded as a hub embeds it, `[remote]` with
//! `sync_interval = 1s` against the section's `moto_server`) backs up, uploads, then writes
//! at a fixed rate and prints each acknowledged write with its time; it is killed (SIGKILL)
//! at a random moment, its data dir deleted, and `recover_data_dir` rebuilds it from the
//! bucket. The loss window of a trial is the kill time minus the acknowledgement time of the
//! oldest acknowledged write that did not come back (0 when none was lost).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use backup_daemon::{Daemon, DaemonConfig};
use clap::Args;
use compaction::RemoteConfig;
use compaction::remote::recover_data_dir;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use store_owners::{Stores, StoresOptions};

use super::Profile;
use super::offsite::{BUCKET, credentials, start_moto};

/// The table written.
const TABLE: &str = "message_history";
/// `[remote] sync_interval`.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Writes per second of the child.
const WRITES_PER_S: u64 = 100;

/// Arguments of the hidden `ship-child` task.
#[derive(Debug, Clone, Args)]
pub struct ChildArgs {
    /// The child's data dir.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The `moto_server` port.
    #[arg(long)]
    pub port: u16,
    /// The prefix in the bucket.
    #[arg(long)]
    pub prefix: String,
}

/// One kill.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// Writes acknowledged before the kill.
    pub acknowledged: u64,
    /// Writes back after the recovery.
    pub recovered: u64,
    /// Writing time before the kill.
    pub ran_ms: u64,
    /// The loss window.
    pub loss_window_ms: f64,
}

/// The section's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ShipResult {
    /// `sync_interval`.
    pub sync_interval_ms: u64,
    /// Writes per second of the child.
    pub writes_per_s: u64,
    /// Every trial.
    pub trials: Vec<Trial>,
    /// Largest loss window.
    pub max_ms: f64,
    /// 99th percentile of the loss windows (nearest rank).
    pub p99_ms: f64,
    /// Writes acknowledged and not recovered, all trials.
    pub lost_writes: u64,
}

fn remote(port: u16, prefix: &str) -> RemoteConfig {
    RemoteConfig {
        url: format!("s3://{BUCKET}/{prefix}"),
        endpoint: format!("http://127.0.0.1:{port}"),
        region: "us-east-1".into(),
        allow_http: true,
        timeout: Duration::from_secs(5),
        sync_interval: SYNC_INTERVAL,
        ..RemoteConfig::default()
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn key(i: u64) -> Vec<u8> {
    format!("w{i:010}").into_bytes()
}

/// `xtask ship-child`: the hub of a trial (see the module doc); runs until killed.
pub fn child(args: &ChildArgs) -> anyhow::Result<()> {
    let mut config = DaemonConfig {
        data_dir: args.data_dir.clone(),
        remote: Some(remote(args.port, &args.prefix)),
        ..DaemonConfig::default()
    };
    config.admin.listen = "127.0.0.1:0".parse()?;
    let daemon = Daemon::start(&config)?;
    let run = daemon.maintainer().backup_all(Default::default())?;
    if !run.failures.is_empty() {
        bail!("backup failed: {:?}", run.failures);
    }
    let offsite = daemon.offsite().context("[remote]")?;
    let pass = offsite.upload_pending();
    if !pass.failures.is_empty() {
        bail!("upload failed: {:?}", pass.failures);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let owner = daemon.stores().owner(TABLE).context("the table")?;
    let every = Duration::from_micros(1_000_000 / WRITES_PER_S);
    let started = std::time::Instant::now();
    for i in 0u64.. {
        owner.write(move |b| b.put(&key(i), format!("value {i}").as_bytes()))?;
        writeln!(out, "ack {i} {}", unix_micros())?;
        out.flush()?;
        if let Some(wait) = (every * (i as u32 + 1)).checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    Ok(())
}

/// The acknowledgement times the child printed, in order; `ready` is signalled on its line.
fn read_acks(stdout: std::process::ChildStdout, ready: mpsc::Sender<()>) -> Vec<u64> {
    let mut acks = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let mut words = line.split(' ');
        match (words.next(), words.next(), words.next()) {
            (Some("ready"), None, None) => {
                let _ = ready.send(());
            }
            (Some("ack"), Some(_), Some(at)) => acks.push(at.parse().unwrap_or(0)),
            _ => {}
        }
    }
    acks
}

fn recovered_writes(data: &Path) -> anyhow::Result<BTreeSet<u64>> {
    let stores = Stores::open(data, StoresOptions::default())?;
    let records = stores
        .owner(TABLE)
        .context("the table")?
        .scan(store_core::KeyRange::all(), usize::MAX)?;
    stores.close();
    Ok(records
        .into_iter()
        .filter_map(|r| {
            String::from_utf8(r.key)
                .ok()?
                .strip_prefix('w')?
                .parse()
                .ok()
        })
        .collect())
}

fn trial(port: u16, n: usize, dir: &Path, rng: &mut impl Rng) -> anyhow::Result<Trial> {
    let data = dir.join(format!("ship-{n}"));
    let prefix = format!("ship-{n}");
    let stderr_path = dir.join(format!("ship-{n}.stderr"));
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("ship-child")
        .arg("--data-dir")
        .arg(&data)
        .args(["--port", &port.to_string(), "--prefix", &prefix])
        .env("AWS_ACCESS_KEY_ID", "AKIABENCH")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path)?)
        .spawn()
        .context("starting the hub")?;
    let stdout = child.stdout.take().context("the hub's stdout")?;
    let (ready_tx, ready) = mpsc::channel();
    let reader = std::thread::spawn(move || read_acks(stdout, ready_tx));
    if ready.recv_timeout(Duration::from_secs(120)).is_err() {
        let _ = child.kill();
        bail!(
            "the hub did not start: {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
    }
    let ran = Duration::from_millis(rng.random_range(2_500..6_000));
    std::thread::sleep(ran);
    let killed_at = unix_micros();
    child.kill()?;
    child.wait()?;
    let acks = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?;
    std::fs::remove_dir_all(&data)?;
    let report = recover_data_dir(
        &remote(port, &prefix),
        &credentials(),
        &data,
        Default::default(),
    )?;
    if !report.failed.is_empty() {
        bail!("recovery failed: {:?}", report.failed);
    }
    let recovered = recovered_writes(&data)?;
    let lost = acks
        .iter()
        .enumerate()
        .find(|(i, _)| !recovered.contains(&(*i as u64)));
    let _ = std::fs::remove_dir_all(&data);
    Ok(Trial {
        acknowledged: acks.len() as u64,
        recovered: recovered.len() as u64,
        ran_ms: ran.as_millis() as u64,
        loss_window_ms: lost.map_or(0.0, |(_, &at)| killed_at.saturating_sub(at) as f64 / 1e3),
    })
}

/// Run the section: `quick` 4 trials, else 20.
pub fn run(profile: &Profile, scratch: &Path) -> anyhow::Result<ShipResult> {
    let moto = start_moto()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(profile.seed);
    let n_trials = if profile.quick { 4 } else { 20 };
    let mut trials = Vec::new();
    for n in 0..n_trials {
        let t = trial(moto.port, n, scratch, &mut rng)?;
        eprintln!(
            "   kill {n}: {} acknowledged, {} back, loss window {:.0} ms",
            t.acknowledged, t.recovered, t.loss_window_ms
        );
        trials.push(t);
    }
    let mut windows: Vec<f64> = trials.iter().map(|t| t.loss_window_ms).collect();
    windows.sort_by(f64::total_cmp);
    let rank = ((windows.len() as f64 * 0.99).ceil() as usize).clamp(1, windows.len());
    Ok(ShipResult {
        sync_interval_ms: SYNC_INTERVAL.as_millis() as u64,
        writes_per_s: WRITES_PER_S,
        max_ms: windows.last().copied().unwrap_or(0.0),
        p99_ms: windows[rank - 1],
        lost_writes: trials
            .iter()
            .map(|t| t.acknowledged.saturating_sub(t.recovered))
            .sum(),
        trials,
    })
}

/// The section in the report.
pub fn render(md: &mut String, result: Option<&ShipResult>, error: Option<&str>) {
    let _ = writeln!(
        md,
        "\n## 8. Change log off-site: the loss window of a lost hub\n"
    );
    let Some(r) = result else {
        let _ = writeln!(md, "Failed: {}\n", error.unwrap_or("unknown"));
        return;
    };
    let _ = writeln!(
        md,
        "A hub process (the daemon embedded, `[remote] sync_interval = {} ms`, `moto_server` on 127.0.0.1) \
         writes {} times a second to `{TABLE}` after one backup is uploaded; it is killed with SIGKILL at a \
         random moment (2.5 to 6 s of writes), its data dir deleted, and `recover --from remote` rebuilds it. \
         Loss window: kill time minus the acknowledgement of the oldest write that did not come back.\n",
        r.sync_interval_ms, r.writes_per_s
    );
    let _ = writeln!(
        md,
        "| kills | loss window max (ms) | p99 (ms) | acknowledged writes lost |\n|---:|---:|---:|---:|"
    );
    let _ = writeln!(
        md,
        "| {} | {:.0} | {:.0} | {} |\n",
        r.trials.len(),
        r.max_ms,
        r.p99_ms,
        r.lost_writes
    );
    let _ = writeln!(
        md,
        "The p99 is by nearest rank: with fewer than 100 kills it is the largest window."
    );
}
