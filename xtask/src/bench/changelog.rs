//! Section 7, the change log: what it costs a writer (durable writes per second through one
//! owner, log on against log off, 1, 8 and 32 clients, rows taken in alternation so that both
//! meet the same machine), and how fast a restore replays it (a backup copied back, then the
//! groups written after it replayed into the copy: groups and writes per second).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;
use store_core::changelog::{LogOptions, ReplayLimit, replay};
use store_core::{RedbStore, StoreOptions, TableStore};
use store_owners::{JournalConfig, OwnerConfig, OwnerHandle};

use super::Profile;
use super::writes::{WriteRow, through_owner};
use crate::loadgen::{bench_key, bench_value, mix};

/// Value size of the replayed writes.
const VALUE_SIZE: usize = 200;

/// What the section measured.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeLogResult {
    /// Write rows: for each client count, log off then log on.
    pub writes: Vec<WriteRow>,
    /// The replay part of a restore.
    pub replay: ReplayResult,
}

/// A restore's replay, measured.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayResult {
    /// Records in the backup.
    pub backup_records: u64,
    /// Seconds to copy the backup file back (what every restore does).
    pub copy_s: f64,
    /// Groups written after the backup, replayed.
    pub groups: u64,
    /// Writes in them.
    pub ops: u64,
    /// Seconds the replay took.
    pub replay_s: f64,
    /// Bytes the log grew by after the backup (what was replayed).
    pub log_bytes: u64,
}

fn owner_config(log_dir: Option<&Path>) -> OwnerConfig {
    OwnerConfig {
        journal: log_dir.map(|dir| JournalConfig {
            dir: dir.to_path_buf(),
            options: LogOptions::default(),
        }),
        ..OwnerConfig::default()
    }
}

/// Run the section.
pub fn run(profile: &Profile, scratch: &Path) -> anyhow::Result<ChangeLogResult> {
    let dir = scratch.join("changelog");
    std::fs::create_dir_all(&dir)?;
    let mut writes = Vec::new();
    for clients in [1, 8, 32] {
        for log in [false, true] {
            let name = format!("{clients}-{}", if log { "log" } else { "plain" });
            let path = dir.join(format!("{name}.redb"));
            let log_dir = dir.join(format!("{name}.log"));
            let owner = OwnerHandle::start::<RedbStore>(
                "writes",
                &path,
                owner_config(log.then_some(log_dir.as_path())),
            );
            let mut row = through_owner(&owner, clients, profile.write_duration);
            row.name = if log {
                "change log fsynced, table file lazy".into()
            } else {
                "table file fsynced, no log".into()
            };
            owner.close();
            writes.push(row);
            eprintln!(
                "  change log: {clients} clients, log {}",
                if log { "on" } else { "off" }
            );
        }
    }
    let replay = measure_replay(profile, &dir)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ChangeLogResult { writes, replay })
}

/// A table of `backup_records` records backed up, then written to by 8 clients for as long
/// as a write row lasts (times 4), then the backup copied back and the log replayed into it.
fn measure_replay(profile: &Profile, dir: &Path) -> anyhow::Result<ReplayResult> {
    let path = dir.join("replay.redb");
    let log_dir = dir.join("replay.log");
    let owner = OwnerHandle::start::<RedbStore>("replay", &path, owner_config(Some(&log_dir)));
    let backup_records: u64 = if profile.quick { 50_000 } else { 250_000 };
    let chunk = 10_000;
    let mut written = 0;
    while written < backup_records {
        let n = chunk.min(backup_records - written);
        let start = written;
        owner.write(move |b| {
            for i in start..start + n {
                b.put(&bench_key(i), &bench_value(i, VALUE_SIZE))?;
            }
            Ok(())
        })?;
        written += n;
    }
    let backup = dir.join("backup.redb");
    let snapshot = owner.snapshot()?;
    snapshot.copy_to_file(
        &backup,
        &|_| true,
        &store_core::Pacer::new(store_core::IoRate::Unlimited),
        &store_core::Progress::new("copy"),
    )?;
    let position = snapshot.log_position();
    drop(snapshot);
    let log_bytes_at_backup = log_disk_bytes(&log_dir)?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let counter = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for c in 0..8u64 {
            let (owner, stop, counter) = (&owner, &stop, &counter);
            scope.spawn(move || {
                let mut j = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let h = mix((c << 40) | j) % (backup_records * 2);
                    if owner
                        .put(&bench_key(h), &bench_value(h ^ j, VALUE_SIZE))
                        .is_ok()
                    {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    j += 1;
                }
            });
        }
        std::thread::sleep(profile.write_duration * 4);
        stop.store(true, Ordering::Relaxed);
    });
    let head = owner.shared().log().map_or(0, |l| l.head);
    owner.close();
    let log_bytes = log_disk_bytes(&log_dir)? - log_bytes_at_backup;

    let restored = dir.join("restored.redb");
    let started = Instant::now();
    std::fs::copy(&backup, &restored)?;
    store_core::fsutil::sync_file(&restored)?;
    let copy_s = started.elapsed().as_secs_f64();
    let mut store = RedbStore::open(&restored, &StoreOptions::default())?;
    anyhow::ensure!(
        store.log_position() == position,
        "the backup keeps its position"
    );
    let started = Instant::now();
    let outcome = replay(&mut store, &log_dir, ReplayLimit::default())?;
    let replay_s = started.elapsed().as_secs_f64();
    store.close()?;
    anyhow::ensure!(
        outcome.stopped.is_none(),
        "replay stopped: {:?}",
        outcome.stopped
    );
    anyhow::ensure!(
        outcome.position == head,
        "replayed to {} of {head}",
        outcome.position
    );
    Ok(ReplayResult {
        backup_records,
        copy_s,
        groups: outcome.groups,
        ops: outcome.ops,
        replay_s,
        log_bytes,
    })
}

/// Bytes of the log's segments.
fn log_disk_bytes(dir: &Path) -> anyhow::Result<u64> {
    Ok(store_core::changelog::list_segments(dir)?
        .iter()
        .map(|s| std::fs::metadata(&s.path).map_or(0, |m| m.len()))
        .sum())
}

/// The section's markdown.
pub fn render(md: &mut String, result: Option<&ChangeLogResult>, error: Option<&str>) {
    use std::fmt::Write;
    let _ = writeln!(md, "## 7. Change log\n");
    let Some(r) = result else {
        let _ = writeln!(md, "Not measured: {}\n", error.unwrap_or("section not run"));
        return;
    };
    let _ = writeln!(
        md,
        "Durable 200-byte puts through one owner: each acknowledged once durable. Log off: the \
         group commit fsyncs the table file. Log on: the group is appended to the change log and \
         fsynced there, the table file commits without an fsync (made durable every second; the \
         log is replayed at open). Rows taken in alternation. Latency in ms.\n"
    );
    let _ = writeln!(
        md,
        "| clients | log off writes/s | log on writes/s | on / off | p99 off | p99 on | max off | max on |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    for pair in r.writes.chunks(2) {
        let [off, on] = pair else { continue };
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            off.clients,
            off.writes_per_s,
            on.writes_per_s,
            on.writes_per_s / off.writes_per_s.max(f64::MIN_POSITIVE),
            off.latency.p99_us as f64 / 1000.0,
            on.latency.p99_us as f64 / 1000.0,
            off.latency.max_us as f64 / 1000.0,
            on.latency.max_us as f64 / 1000.0,
        );
    }
    let p = &r.replay;
    let _ = writeln!(
        md,
        "\nA restore of a {}-record backup followed by {} groups ({} writes, {:.1} MB of log) \
         acknowledged after it: copy {:.2} s + replay {:.2} s = {:.2} s; replay {:.0} groups/s, \
         {:.0} writes/s.\n",
        p.backup_records,
        p.groups,
        p.ops,
        p.log_bytes as f64 / 1e6,
        p.copy_s,
        p.replay_s,
        p.copy_s + p.replay_s,
        p.groups as f64 / p.replay_s.max(1e-9),
        p.ops as f64 / p.replay_s.max(1e-9),
    );
}
