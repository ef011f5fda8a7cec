//! A reference hub: the daemon embedded in a process that runs a synthetic, hub-shaped
//! workload through the typed table handles, so that fragmentation grows and compactions,
//! backups and scrubs run on short schedules while an operator watches through the CLI
//! (`backup-daemon status --data-dir D`), `/events` and `/metrics`.
//!
//! ```text
//! cargo run --release -p backup-daemon --example hub -- --data-dir /tmp/hub --duration 10m
//! ```
//!
//! Agents enqueue mailbox messages and acknowledge them, post to channels (and the message
//! history), start threads and reply, submit tasks that workers complete or fail (the failures
//! are dead-lettered), and update config entries. Every acknowledged write is recorded; at the
//! end each is checked against the tables, and the run reports writes/s, latency with and
//! without maintenance running, the process's memory at start and end, and the maintenance
//! that ran.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use backup_daemon::config::ByteSize;
use backup_daemon::{Daemon, DaemonConfig};
use clap::Parser;
use compaction::{Event, Maintainer};
use store_owners::{
    ChannelMessage, FailOutcome, HistoryMessage, MailboxMessage, NewTask, Stores, ThreadMessage,
};

/// Options of the reference hub.
#[derive(Debug, Parser)]
struct Args {
    /// Data dir of the hub's tables.
    #[arg(long, default_value = "hub-data")]
    data_dir: PathBuf,
    /// Operations per second, all workers together.
    #[arg(long, default_value_t = 400.0)]
    rate: f64,
    /// Worker threads (each owns its agents, channels and threads).
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// How long to run ("90s", "10m").
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Time between compactions.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    compaction_every: Duration,
    /// Time between backups.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    backup_every: Duration,
    /// Admin API address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Memory of the nine table caches together ("576MiB").
    #[arg(long, default_value = "256MiB")]
    cache: String,
}

/// What the workload saw acknowledged, per worker (each owns its names) and for the shared
/// task queue.
#[derive(Debug, Default)]
struct Acked {
    /// agent -> (enqueued seqs and bodies, acknowledged through).
    mailbox: BTreeMap<String, (BTreeMap<u64, String>, u64)>,
    /// channel -> appended seqs.
    channels: BTreeMap<String, BTreeSet<u64>>,
    /// thread -> added seqs; parent -> replied children.
    threads: BTreeMap<String, BTreeSet<u64>>,
    replies: BTreeMap<String, BTreeSet<String>>,
    /// config name -> last value set.
    config: BTreeMap<String, String>,
    /// Messages stored in the history.
    history: u64,
    /// Operations acknowledged (writes, and reads that acknowledge mailbox messages).
    writes: u64,
}

#[derive(Debug, Default)]
struct TaskModel {
    submitted: BTreeSet<u64>,
    completed: BTreeSet<u64>,
    dead: BTreeSet<u64>,
}

/// Latencies in microseconds, split by whether maintenance was running.
#[derive(Debug, Default)]
struct Latencies {
    quiet: Vec<u64>,
    during: Vec<u64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.rate > 0.0 && args.workers > 0,
        "rate and workers must be positive"
    );
    let mut config = DaemonConfig {
        data_dir: args.data_dir.clone(),
        ..DaemonConfig::default()
    };
    config.admin.listen = args.listen;
    config.compaction.interval = args.compaction_every;
    config.backup.interval = args.backup_every;
    config.scrub.after_start = args.compaction_every;
    config.scrub.interval = args.backup_every;
    config.tables.cache =
        ByteSize(compaction::config::parse_bytes(&args.cache).map_err(anyhow::Error::msg)?);
    let rss_start = rss_bytes();
    let daemon = Daemon::start(&config)?;
    eprintln!(
        "hub: data dir {}, admin API http://{} (token in {}); {} ops/s for {}",
        daemon.data_dir().display(),
        daemon.admin_addr(),
        daemon.token_file().display(),
        args.rate,
        humantime::format_duration(args.duration)
    );
    let maintenance = MaintenanceCount::watch(daemon.maintainer());
    let busy = MaintenanceFlag::watch(daemon.maintainer().clone());

    let stores = daemon.stores();
    let tasks = Mutex::new(TaskModel::default());
    let started = Instant::now();
    let deadline = started + args.duration;
    let per_worker = args.rate / args.workers as f64;
    let results: Vec<(Acked, Latencies)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.workers)
            .map(|w| {
                let (tasks, busy) = (&tasks, &busy);
                scope.spawn(move || worker(w, stores, tasks, busy, per_worker, deadline))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect::<Result<_>>()
    })?;
    let elapsed = started.elapsed();
    let rss_end = rss_bytes();

    let mut writes = 0;
    let mut latencies = Latencies::default();
    for (acked, lat) in &results {
        check(stores, acked).context("checking the acknowledged writes")?;
        writes += acked.writes;
        latencies.quiet.extend(&lat.quiet);
        latencies.during.extend(&lat.during);
    }
    check_tasks(stores, &tasks.lock().expect("task model"))?;
    let (compactions, backups, scrubs) = maintenance.counts(daemon.maintainer());
    busy.stop();
    daemon.shutdown();

    println!(
        "reference hub: {:.0} s, {} workers",
        elapsed.as_secs_f64(),
        args.workers
    );
    println!(
        "  acknowledged operations: {writes}, every write among them present ({:.0} ops/s)",
        writes as f64 / elapsed.as_secs_f64()
    );
    for (name, samples) in [
        ("without maintenance", &mut latencies.quiet),
        ("during maintenance", &mut latencies.during),
    ] {
        samples.sort_unstable();
        println!(
            "  latency {name}: {} ops, p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
            samples.len(),
            ms(pct(samples, 0.50)),
            ms(pct(samples, 0.99)),
            ms(pct(samples, 0.999)),
            ms(samples.last().copied().unwrap_or(0)),
        );
    }
    println!(
        "  memory (RSS): {:.0} MiB at start, {:.0} MiB at end (table caches: {:.0} MiB)",
        rss_start as f64 / (1 << 20) as f64,
        rss_end as f64 / (1 << 20) as f64,
        config.tables.cache.0 as f64 / (1 << 20) as f64
    );
    println!(
        "  maintenance: {compactions} table compactions, {backups} table backups, {scrubs} of 9 tables scrubbed"
    );
    Ok(())
}

/// One worker: its own agents, channels, threads and config names; the shared task queue.
fn worker(
    w: usize,
    stores: &Stores,
    tasks: &Mutex<TaskModel>,
    busy: &MaintenanceFlag,
    rate: f64,
    deadline: Instant,
) -> Result<(Acked, Latencies)> {
    let mut acked = Acked::default();
    let mut latencies = Latencies::default();
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut next = Instant::now();
    let mut i = 0u64;
    // Open loop: operations are due every `period`; one that starts late counts its wait.
    // The run ends at the deadline, whatever is still due.
    while next < deadline && Instant::now() < deadline {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
        let during = busy.is_set();
        let t = Instant::now();
        one_op(w, i, stores, tasks, &mut acked)?;
        // Measured from the scheduled time: a stall counts against every operation it delayed.
        let latency = t.max(next).duration_since(next) + t.elapsed();
        let bucket = if during || busy.is_set() {
            &mut latencies.during
        } else {
            &mut latencies.quiet
        };
        bucket.push(latency.as_micros() as u64);
        next += period;
        i += 1;
    }
    Ok((acked, latencies))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A cheap deterministic mix of `(worker, i)` into a number.
fn mix(w: usize, i: u64) -> u64 {
    let mut x = (w as u64) << 40 ^ i ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

fn one_op(
    w: usize,
    i: u64,
    stores: &Stores,
    tasks: &Mutex<TaskModel>,
    acked: &mut Acked,
) -> Result<()> {
    let h = mix(w, i);
    let agent = format!("w{w}-agent-{}", h % 4);
    let body = format!(
        "message {i} from worker {w}: {}",
        "lorem ipsum ".repeat((h % 20) as usize)
    );
    match h % 100 {
        0..30 => {
            let seq = stores.agent_mailbox.enqueue(
                &agent,
                MailboxMessage {
                    from: format!("w{w}-agent-{}", (h >> 8) % 4),
                    body: body.clone(),
                    sent_at_ms: now_ms(),
                },
            )?;
            acked.mailbox.entry(agent).or_default().0.insert(seq, body);
        }
        30..42 => {
            // Read the mailbox and acknowledge what was read: deletes (fragmentation).
            let read = stores.agent_mailbox.poll(&agent, 0, 16)?;
            if let Some(last) = read.last() {
                stores.agent_mailbox.ack(&agent, last.seq)?;
                let entry = acked.mailbox.entry(agent).or_default();
                entry.1 = entry.1.max(last.seq);
            }
        }
        42..57 => {
            let channel = format!("w{w}-channel-{}", h % 3);
            let seq = stores.channel_history.append(
                &channel,
                ChannelMessage {
                    from: agent.clone(),
                    body: body.clone(),
                    sent_at_ms: now_ms(),
                },
            )?;
            acked.channels.entry(channel).or_default().insert(seq);
            stores.message_history.store(HistoryMessage {
                from: agent,
                to: "channel".into(),
                body,
                sent_at_ms: now_ms(),
            })?;
            acked.history += 1;
            acked.writes += 1;
        }
        57..70 => {
            let thread = format!("w{w}-thread-{}", h % 6);
            let seq = stores.thread_messages.add(
                &thread,
                ThreadMessage {
                    message_id: format!("w{w}-m{i}"),
                    from: agent,
                    body,
                    sent_at_ms: now_ms(),
                },
            )?;
            acked.threads.entry(thread.clone()).or_default().insert(seq);
            if seq > 1 {
                let child = format!("w{w}-m{i}");
                stores.thread_replies.record(&thread, &child, now_ms())?;
                acked.replies.entry(thread).or_default().insert(child);
                acked.writes += 1;
            }
        }
        70..82 => {
            let id = stores.task_queue.submit(NewTask {
                kind: "summarize".into(),
                payload: body.into_bytes(),
                max_retries: 0,
                submitted_at_ms: now_ms(),
            })?;
            tasks.lock().expect("task model").submitted.insert(id);
        }
        82..97 => {
            let mut model = tasks.lock().expect("task model");
            if let Some(task) = stores.task_queue.assign(&format!("worker-{w}"))? {
                if h.is_multiple_of(5) {
                    match stores
                        .task_queue
                        .fail(task.id, "synthetic failure", now_ms())?
                    {
                        FailOutcome::DeadLettered { .. } => {
                            model.dead.insert(task.id);
                        }
                        FailOutcome::Retrying { .. } => {}
                    }
                } else {
                    stores.task_queue.complete(task.id)?;
                    model.completed.insert(task.id);
                }
            }
        }
        _ => {
            let name = format!("w{w}.setting-{}", h % 5);
            let value = format!("value {i}");
            stores.agentcom_config.put(&name, &value, now_ms())?;
            acked.config.insert(name, value);
        }
    }
    acked.writes += 1;
    Ok(())
}

/// Every write a worker saw acknowledged is in the tables.
fn check(stores: &Stores, acked: &Acked) -> Result<()> {
    for (agent, (enqueued, through)) in &acked.mailbox {
        let stored: BTreeMap<u64, String> = stores
            .agent_mailbox
            .poll(agent, *through, usize::MAX)?
            .into_iter()
            .map(|s| (s.seq, s.record.body))
            .collect();
        let expected: BTreeMap<u64, String> = enqueued
            .range(through + 1..)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        if stored != expected {
            bail!(
                "mailbox of {agent}: {} stored, {} expected",
                stored.len(),
                expected.len()
            );
        }
    }
    for (channel, seqs) in &acked.channels {
        let stored: BTreeSet<u64> = stores
            .channel_history
            .read(channel, 0, usize::MAX)?
            .into_iter()
            .map(|s| s.seq)
            .collect();
        ensure!(&stored == seqs, "channel {channel}: messages missing");
    }
    for (thread, seqs) in &acked.threads {
        let stored: BTreeSet<u64> = stores
            .thread_messages
            .list(thread, 0, usize::MAX)?
            .into_iter()
            .map(|s| s.seq)
            .collect();
        ensure!(&stored == seqs, "thread {thread}: messages missing");
    }
    for (parent, children) in &acked.replies {
        let stored: BTreeSet<String> = stores
            .thread_replies
            .replies(parent)?
            .into_iter()
            .map(|r| r.child)
            .collect();
        ensure!(&stored == children, "replies to {parent}: missing");
    }
    for (name, value) in &acked.config {
        let stored = stores.agentcom_config.get(name)?.map(|e| e.value);
        ensure!(
            stored.as_ref() == Some(value),
            "config {name}: {stored:?}, expected {value:?}"
        );
    }
    Ok(())
}

/// Every task is where its acknowledged history puts it.
fn check_tasks(stores: &Stores, model: &TaskModel) -> Result<()> {
    for id in &model.submitted {
        let in_queue = stores.task_queue.get(*id)?.is_some();
        let dead = stores.task_dead_letter.get(*id)?.is_some();
        let (want_queue, want_dead) = if model.completed.contains(id) {
            (false, false)
        } else if model.dead.contains(id) {
            (false, true)
        } else {
            (true, false)
        };
        ensure!(
            (in_queue, dead) == (want_queue, want_dead),
            "task {id}: in queue {in_queue}, dead-lettered {dead}"
        );
    }
    Ok(())
}

/// Counts compaction and backup runs from the events, and scrub runs from the scrub state.
struct MaintenanceCount {
    compactions: Arc<AtomicU64>,
    backups: Arc<AtomicU64>,
}

impl MaintenanceCount {
    fn watch(maintainer: &Arc<Maintainer>) -> MaintenanceCount {
        let events = maintainer.events().subscribe();
        let (compactions, backups) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (c, b) = (compactions.clone(), backups.clone());
        std::thread::spawn(move || {
            for envelope in events {
                match envelope.event {
                    Event::CompactionComplete { run } => {
                        let compacted = run
                            .results
                            .iter()
                            .filter(|r| r.outcome == compaction::TableOutcome::Compacted)
                            .count();
                        c.fetch_add(compacted as u64, Ordering::Relaxed);
                    }
                    Event::BackupComplete { run } => {
                        b.fetch_add(run.backups.len() as u64, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        });
        MaintenanceCount {
            compactions,
            backups,
        }
    }

    fn counts(&self, maintainer: &Maintainer) -> (u64, u64, usize) {
        let scrubbed = store_owners::TABLE_NAMES
            .iter()
            .filter(|t| maintainer.last_scrub(t).is_some())
            .count();
        (
            self.compactions.load(Ordering::Relaxed),
            self.backups.load(Ordering::Relaxed),
            scrubbed,
        )
    }
}

/// Whether a compaction, backup, restore or scrub is running, sampled every 10 ms.
struct MaintenanceFlag {
    set: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl MaintenanceFlag {
    fn watch(maintainer: Arc<Maintainer>) -> MaintenanceFlag {
        let (set, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (s, st) = (set.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let running =
                    maintainer.operation_running() || maintainer.scrub_progress().is_some();
                s.store(running, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        MaintenanceFlag { set, stop }
    }

    fn is_set(&self) -> bool {
        self.set.load(Ordering::Relaxed)
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The resident set size of this process, from /proc.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn pct(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}
