//! `cargo xtask crash`: the crash campaign.
//!
//! Each iteration starts a child process (this binary, `crash-child`) that opens the nine
//! tables of one data dir and runs concurrent writers on every table while other threads
//! compact the tables (online, and now and then in place) over and over, back them up one
//! after another (`compaction::Maintainer::backup_one`) and now and then restore one table
//! ([`RESTORED_TABLE`], whose writes are therefore not counted) from its latest backup. The
//! child prints
//! `ack <table> <key>` for every write only after the write returned `Ok` (durable). At a
//! random moment (10 to 500 ms after the start by default, so sometimes while the tables are
//! still opening) the parent kills the child with SIGKILL, then reopens the data dir, checks
//! that every table opened on its own (status ok) and that the acknowledged writes are there
//! with their values, and goes on with the next iteration on the same data dir.
//!
//! Every write of this iteration is checked, plus a random sample of earlier ones; after the
//! last iteration every acknowledged write of the campaign is checked once more. Keys are
//! never written twice with different values and never deleted, so "present with its value"
//! is exactly "not lost".
//!
//! That is the default mode, `--mode mixed`. `--mode embedded` ([`embedded`]) runs the
//! child as a hub with the daemon embedded, its own schedules doing the maintenance, and
//! checks the same way. `--mode restore` ([`restore`]) restores one table
//! holding a known set of records back to back while writers run on the other tables, reopens
//! the data dir the way the daemon does (integrity check, automatic recovery) and counts the
//! tables that came back without their known records.

mod embedded;
mod restore;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use compaction::recovery::RecoveryOutcome;
use compaction::{BackupOptions, BackupSelector, Maintainer, MaintenanceConfig, RecoveryTrigger};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store_core::StoreSnapshot;
use store_owners::{OnlineConfig, OwnerHandle, Stores, StoresOptions, TableStatus};

/// What the child does until it is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Mode {
    /// Writers on every table while the tables are compacted (online and in place), backed up,
    /// and one of them now and then restored.
    #[default]
    Mixed,
    /// Restores of one table holding a known set of records, back to back, while writers run
    /// on the other tables; the parent reopens like the daemon and counts emptied tables.
    Restore,
    /// A hub with the daemon embedded (`backup_daemon::Daemon`): its own compaction, backup
    /// and scrub schedules on short intervals while writers run on every table.
    Embedded,
}

impl Mode {
    /// The latest kill when `--max-kill-ms` is not given.
    fn default_max_kill_ms(self) -> u64 {
        match self {
            Mode::Mixed => 500,
            Mode::Restore => 1000,
            Mode::Embedded => 8000,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Mixed => "mixed",
            Mode::Restore => "restore",
            Mode::Embedded => "embedded",
        }
    }
}

/// Arguments of `cargo xtask crash`.
#[derive(Debug, Clone, Args)]
pub struct CrashArgs {
    /// What the child does until it is killed.
    #[arg(long, value_enum, default_value_t = Mode::Mixed)]
    pub mode: Mode,
    /// Kills (iterations) to run.
    #[arg(long, default_value_t = 200)]
    pub iterations: u64,
    /// The data dir the campaign runs on (emptied first, if an earlier campaign created it).
    /// Default: target/crash/data.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Empty `--data-dir` even though no campaign created it (it holds other files).
    #[arg(long)]
    pub wipe: bool,
    /// Seed of the kill times and of the sampled checks.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Earliest kill, in ms after the child starts.
    #[arg(long, default_value_t = 10)]
    pub min_kill_ms: u64,
    /// Latest kill, in ms after the child starts [default: 500; 1000 with --mode restore].
    #[arg(long)]
    pub max_kill_ms: Option<u64>,
    /// Writer threads per table in the child.
    #[arg(long, default_value_t = 2)]
    pub writers: u64,
    /// Run without the tables' change logs (each write group committed durably in its table
    /// file alone, restores roll back to their backup), as before the logs existed.
    #[arg(long)]
    pub no_change_log: bool,
    /// With `--mode embedded`: the child's daemon also uploads its backups and ships its
    /// change logs (`sync_interval` 200 ms) to a `moto_server` the campaign starts, so that
    /// kills land in uploads and shipping passes too.
    #[arg(long)]
    pub remote: bool,
}

/// Arguments of the child (`crash-child`).
#[derive(Debug, Clone, Args)]
pub struct ChildArgs {
    /// The data dir.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Iteration number (keeps keys unique across iterations).
    #[arg(long)]
    pub iteration: u64,
    /// What to do until killed.
    #[arg(long, value_enum, default_value_t = Mode::Mixed)]
    pub mode: Mode,
    /// Writer threads per table.
    #[arg(long, default_value_t = 2)]
    pub writers: u64,
    /// Exit on its own after this long, in case the parent went away.
    #[arg(long, default_value_t = 20_000)]
    pub max_life_ms: u64,
    /// Open the tables without their change logs.
    #[arg(long)]
    pub no_change_log: bool,
    /// Embedded mode: the port of the campaign's `moto_server` (off-site backups and
    /// shipping on).
    #[arg(long)]
    pub remote_port: Option<u16>,
}

/// Segment size of the change logs in the campaign: small, so that the children rotate
/// segments (and prune them after backups) often enough for kills to land there.
pub const CAMPAIGN_SEGMENT_BYTES: u64 = 32 << 10;

/// How the campaign opens the tables, with or without their change logs.
pub fn stores_options(change_log: bool) -> StoresOptions {
    StoresOptions {
        change_log: change_log.then_some(store_core::changelog::LogOptions {
            segment_bytes: CAMPAIGN_SEGMENT_BYTES,
        }),
        ..StoresOptions::default()
    }
}

/// The table the child restores from its backups now and then (its writes are not reported
/// as acknowledged, since a restore rolls them back; the parent checks that it reopens).
pub const RESTORED_TABLE: &str = "task_dead_letter";

/// Compaction threads in the child.
const N_COMPACTORS: usize = 3;

/// Earlier acknowledged writes re-checked after each kill.
const SAMPLE_OLD: usize = 2000;

/// The value stored under an acknowledged key: derived from the key, so the parent can check
/// it without the child telling it.
pub fn value_for(key: &str) -> Vec<u8> {
    let mut value = format!("value-of:{key}:").into_bytes();
    while value.len() < 120 {
        value.extend_from_slice(key.as_bytes());
    }
    value.truncate(120);
    value
}

/// What the parent learned from one child.
#[derive(Debug, Default)]
struct ChildLog {
    acks: Vec<(String, String)>,
    compactions_online: u64,
    compactions_in_place: u64,
    backups: u64,
    restores: u64,
    /// Change-log chunks shipped off-site (embedded mode with `--remote`).
    chunks_shipped: u64,
    /// Restores that ended in an error or without restoring (restore mode).
    failed_restores: u64,
    opened: bool,
    /// The child said the restored table holds its known set and a backup of it exists
    /// (restore mode).
    seeded: bool,
    /// Why the child could not put the known set in place (restore mode).
    seed_failed: Option<String>,
}

/// The campaign's figures.
#[derive(Debug, Default)]
struct Figures {
    kills: u64,
    acknowledged: u64,
    checks: u64,
    /// Distinct acknowledged writes found missing or wrong (a write found lost after two
    /// kills counts once).
    lost: HashSet<(String, String)>,
    failed_opens: u64,
    killed_before_open: u64,
    compactions_online: u64,
    compactions_in_place: u64,
    backups: u64,
    restores: u64,
    chunks_shipped: u64,
    /// Restore mode: restores that failed (the table kept its previous file).
    failed_restores: u64,
    /// Restore mode: kills before the restored table's known set was in place.
    killed_before_seeded: u64,
    /// Restore mode: reopens that found the restored table without its known records.
    emptied: u64,
    /// Restore mode: tables that did not open ok but were recovered automatically.
    recovered: u64,
}

/// `cargo xtask crash`.
pub fn run(args: &CrashArgs) -> anyhow::Result<()> {
    let max_kill_ms = args
        .max_kill_ms
        .unwrap_or_else(|| args.mode.default_max_kill_ms());
    if args.min_kill_ms > max_kill_ms {
        bail!("--min-kill-ms must not exceed --max-kill-ms");
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| crate::project_root().join("target/crash/data"));
    prepare_data_dir(&data_dir, args.wipe)?;
    let exe = std::env::current_exe().context("finding this binary")?;
    if args.remote && args.mode != Mode::Embedded {
        bail!("--remote goes with --mode embedded");
    }
    // Kept for the whole campaign: the children's bucket.
    let moto = match args.remote {
        true => Some(crate::bench::offsite::start_moto()?),
        false => None,
    };
    let remote_port = moto.as_ref().map(|m| m.port);
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut acked: Vec<(String, String)> = Vec::new();
    let mut figures = Figures::default();
    let started = Instant::now();
    let mode = match args.mode {
        Mode::Mixed => String::new(),
        Mode::Embedded => ", embedded mode: the daemon in the child, its own schedules".into(),
        Mode::Restore => format!(
            ", restore mode: {} restored back to back",
            restore::RESTORED_TABLE
        ),
    };
    println!(
        "crash campaign: {} kills on {} (kill after {}..{} ms, {} writers per table{mode})",
        args.iterations,
        data_dir.display(),
        args.min_kill_ms,
        max_kill_ms,
        args.writers
    );
    // Restore mode: whether the restored table must hold its known set at the next reopen.
    let mut known_set_in_place = false;
    let change_log = !args.no_change_log;
    for iteration in 0..args.iterations {
        let kill_after = Duration::from_millis(rng.random_range(args.min_kill_ms..=max_kill_ms));
        let log = run_child(&exe, &data_dir, iteration, args, kill_after, remote_port)?;
        figures.kills += 1;
        figures.compactions_online += log.compactions_online;
        figures.compactions_in_place += log.compactions_in_place;
        figures.backups += log.backups;
        figures.chunks_shipped += log.chunks_shipped;
        figures.restores += log.restores;
        figures.failed_restores += log.failed_restores;
        figures.killed_before_open += u64::from(!log.opened);
        if let Some(why) = &log.seed_failed {
            println!(
                "  iteration {iteration}: the child could not put the known set in place: {why}"
            );
        }
        if args.mode == Mode::Restore {
            known_set_in_place |= log.seeded;
            figures.killed_before_seeded += u64::from(!known_set_in_place);
        }
        let new = log.acks.len();
        acked.extend(log.acks);
        figures.acknowledged = acked.len() as u64;

        // This iteration's writes, and a sample of the earlier ones.
        let first_new = acked.len() - new;
        let mut to_check: Vec<&(String, String)> = acked[first_new..].iter().collect();
        if first_new > 0 {
            for _ in 0..SAMPLE_OLD.min(first_new) {
                to_check.push(&acked[rng.random_range(0..first_new)]);
            }
        }
        let check = match args.mode {
            Mode::Mixed | Mode::Embedded => reopen_and_check(&data_dir, &to_check, change_log)?,
            Mode::Restore => {
                restore::reopen_and_check(&data_dir, &to_check, known_set_in_place, change_log)?
            }
        };
        add_check(&mut figures, &check);
        for problem in &check.problems {
            println!("  iteration {iteration}: {problem}");
        }
        if args.mode == Mode::Restore {
            if check.emptied > 0 {
                // The next child writes the known set again; until it says so, the table is
                // not expected to hold it (the same loss is not counted twice).
                known_set_in_place = false;
            }
            let keep = !check.problems.is_empty();
            if let Some(kept) = restore::clear_quarantine(&data_dir, iteration, keep)? {
                println!(
                    "  iteration {iteration}: quarantined files kept in {}",
                    kept.display()
                );
            }
        }
        if (iteration + 1) % 10 == 0 || iteration + 1 == args.iterations {
            let emptied = match args.mode {
                Mode::Mixed | Mode::Embedded => String::new(),
                Mode::Restore => format!(
                    ", {} emptied, {} restores",
                    figures.emptied, figures.restores
                ),
            };
            println!(
                "  {:>4} kills, {:>7} acknowledged writes, {} lost, {} tables failed to open{emptied} ({:.0} s)",
                iteration + 1,
                figures.acknowledged,
                figures.lost.len(),
                figures.failed_opens,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let all: Vec<&(String, String)> = acked.iter().collect();
    let last = match args.mode {
        Mode::Mixed | Mode::Embedded => reopen_and_check(&data_dir, &all, change_log)?,
        Mode::Restore => {
            restore::reopen_and_check(&data_dir, &all, known_set_in_place, change_log)?
        }
    };
    add_check(&mut figures, &last);
    for problem in &last.problems {
        println!("  final check: {problem}");
    }

    match args.mode {
        Mode::Mixed | Mode::Embedded => print_figures(&figures, started),
        Mode::Restore => restore::print_figures(&figures, started),
    }
    if !figures.lost.is_empty() || figures.failed_opens > 0 || figures.emptied > 0 {
        let emptied = match args.mode {
            Mode::Mixed | Mode::Embedded => String::new(),
            Mode::Restore => format!(", {} emptied tables", figures.emptied),
        };
        bail!(
            "{} writes lost, {} tables failed to open{emptied}",
            figures.lost.len(),
            figures.failed_opens,
        );
    }
    Ok(())
}

fn add_check(figures: &mut Figures, check: &Check<'_>) {
    figures.checks += check.checked;
    figures.lost.extend(check.lost.iter().map(|&e| e.clone()));
    figures.failed_opens += check.failed_opens;
    figures.emptied += check.emptied;
    figures.recovered += check.recovered;
}

/// The closing figures both modes print, after their own heading.
fn print_shared_figures(figures: &Figures) {
    println!("  kills (SIGKILL):                       {}", figures.kills);
    println!(
        "  killed while the tables were opening:  {}",
        figures.killed_before_open
    );
    println!(
        "  acknowledged writes:                   {}",
        figures.acknowledged
    );
    println!(
        "  acknowledged writes checked:           {} (each kill: its own + a sample; all at the end)",
        figures.checks
    );
    println!(
        "  writes lost:                           {}",
        figures.lost.len()
    );
}

/// The closing figures of the mixed mode.
fn print_figures(figures: &Figures, started: Instant) {
    println!("crash campaign figures:");
    print_shared_figures(figures);
    println!(
        "  tables that failed to open:            {}",
        figures.failed_opens
    );
    println!(
        "  completed in children before a kill:   {} online compactions, {} in-place compactions, {} backups, {} restores",
        figures.compactions_online, figures.compactions_in_place, figures.backups, figures.restores
    );
    if figures.chunks_shipped > 0 {
        println!(
            "  change-log chunks shipped off-site:    {}",
            figures.chunks_shipped
        );
    }
    println!(
        "  time:                                  {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// Marks a data dir a campaign created, so that a later campaign may empty it.
const CAMPAIGN_MARKER: &str = ".xtask-crash-campaign";

/// Empty `data_dir` for a new campaign: only one an earlier campaign created (or an empty
/// one), unless `wipe`; never a directory holding someone's other files.
fn prepare_data_dir(data_dir: &Path, wipe: bool) -> anyhow::Result<()> {
    if data_dir.exists() {
        let ours = data_dir.join(CAMPAIGN_MARKER).exists();
        let empty = std::fs::read_dir(data_dir)
            .with_context(|| format!("reading {}", data_dir.display()))?
            .next()
            .is_none();
        if !ours && !empty && !wipe {
            bail!(
                "{} is not empty and no crash campaign created it; choose another --data-dir, \
                 or pass --wipe to empty it",
                data_dir.display()
            );
        }
        std::fs::remove_dir_all(data_dir)
            .with_context(|| format!("emptying {}", data_dir.display()))?;
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    std::fs::write(data_dir.join(CAMPAIGN_MARKER), b"")
        .with_context(|| format!("marking {}", data_dir.display()))
}

fn run_child(
    exe: &Path,
    data_dir: &Path,
    iteration: u64,
    args: &CrashArgs,
    kill_after: Duration,
    remote_port: Option<u16>,
) -> anyhow::Result<ChildLog> {
    let stderr_log = data_dir
        .parent()
        .unwrap_or(data_dir)
        .join("crash-child.stderr");
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&stderr_log)?;
    let mut child = Command::new(exe)
        .arg("crash-child")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--iteration")
        .arg(iteration.to_string())
        .arg("--writers")
        .arg(args.writers.to_string())
        .arg("--mode")
        .arg(args.mode.name())
        .args(args.no_change_log.then_some("--no-change-log"))
        .args(remote_port.map(|p| format!("--remote-port={p}")))
        .env("AWS_ACCESS_KEY_ID", "AKIACRASH")
        .env("AWS_SECRET_ACCESS_KEY", "crash")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .context("starting the child")?;
    let stdout = child.stdout.take().context("the child's stdout")?;
    let reader = std::thread::spawn(move || {
        let mut log = ChildLog::default();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        // A line cut by the kill has no newline: it is ignored (the write it would have
        // acknowledged was never reported).
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if let Some(text) = line.strip_suffix('\n') {
                let mut words = text.split(' ');
                match (words.next(), words.next(), words.next()) {
                    (Some("ack"), Some(table), Some(key)) => {
                        log.acks.push((table.to_string(), key.to_string()))
                    }
                    (Some("compacted"), Some("online"), _) => log.compactions_online += 1,
                    (Some("compacted"), Some("in-place"), _) => log.compactions_in_place += 1,
                    (Some("backup"), _, _) => log.backups += 1,
                    (Some("shipped"), Some(n), _) => {
                        log.chunks_shipped += n.parse::<u64>().unwrap_or(0)
                    }
                    (Some("restored"), _, _) => log.restores += 1,
                    (Some("restore-failed"), _, _) => log.failed_restores += 1,
                    (Some("opened"), _, _) => log.opened = true,
                    (Some("seeded"), _, _) => log.seeded = true,
                    (Some("seed-failed"), _, _) => {
                        log.seed_failed = Some(text["seed-failed".len()..].trim().to_string())
                    }
                    _ => {}
                }
            }
            line.clear();
        }
        log
    });
    std::thread::sleep(kill_after);
    // SIGKILL on Unix.
    child.kill().context("killing the child")?;
    let status = child.wait()?;
    let log = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))?;
    if status.signal() != Some(libc::SIGKILL) {
        bail!(
            "the child exited on its own before the kill ({status}); see {}",
            stderr_log.display()
        );
    }
    Ok(log)
}

/// What one reopen found.
#[derive(Debug, Default)]
struct Check<'a> {
    checked: u64,
    lost: Vec<&'a (String, String)>,
    /// Tables not serving (status not ok) when checked.
    failed_opens: u64,
    /// Restore mode: 1 when the restored table lacked some of its known records.
    emptied: u64,
    /// Restore mode: tables that did not open ok and were then recovered automatically.
    recovered: u64,
    problems: Vec<String>,
}

/// Reopen the data dir; check every table is ok and every key in `acks` holds its value.
fn reopen_and_check<'a>(
    data_dir: &Path,
    acks: &[&'a (String, String)],
    change_log: bool,
) -> anyhow::Result<Check<'a>> {
    let stores = Stores::open(data_dir, stores_options(change_log))
        .with_context(|| format!("reopening {} after the kill", data_dir.display()))?;
    let mut check = Check::default();
    check_tables(&stores, acks, &mut check);
    stores.close();
    Ok(check)
}

/// Check every table of `stores` is ok and every key in `acks` holds its value.
fn check_tables<'a>(stores: &Stores, acks: &[&'a (String, String)], check: &mut Check<'a>) {
    let mut snapshots: HashMap<&str, Box<dyn StoreSnapshot>> = HashMap::new();
    for owner in stores.owners() {
        let status = owner.shared().status();
        if status != TableStatus::Ok {
            check.failed_opens += 1;
            check
                .problems
                .push(format!("table {} did not open: {status}", owner.table()));
            continue;
        }
        match owner.snapshot() {
            Ok(s) => {
                snapshots.insert(owner.table(), s);
            }
            Err(e) => {
                check.failed_opens += 1;
                check
                    .problems
                    .push(format!("table {} gives no snapshot: {e}", owner.table()));
            }
        }
    }
    for &entry in acks {
        let (table, key) = entry;
        check.checked += 1;
        let Some(snapshot) = snapshots.get(table.as_str()) else {
            check.lost.push(entry);
            continue;
        };
        match snapshot.get(key.as_bytes()) {
            Ok(Some(v)) if v == value_for(key) => {}
            Ok(Some(_)) => {
                check.lost.push(entry);
                check.problems.push(format!("{table} {key}: wrong value"));
            }
            Ok(None) => {
                check.lost.push(entry);
                if check.problems.len() < 20 {
                    check
                        .problems
                        .push(format!("{table} {key}: acknowledged but missing"));
                }
            }
            Err(e) => {
                check.lost.push(entry);
                check
                    .problems
                    .push(format!("{table} {key}: read failed: {e}"));
            }
        }
    }
}

/// The child: what it does depends on the mode; runs until killed.
pub fn child(args: &ChildArgs) -> anyhow::Result<()> {
    match args.mode {
        Mode::Mixed => mixed_child(args),
        Mode::Restore => restore::child(args),
        Mode::Embedded => embedded::child(args),
    }
}

/// A thread-safe line printer to stdout, flushed after each line (the parent reads the lines
/// as they come; one cut by the kill is ignored).
fn line_printer() -> impl Fn(&str) + Sync {
    let out = Mutex::new(std::io::stdout());
    move |line: &str| {
        let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// The mixed child: writers on every table, compaction over and over, backups, restores.
fn mixed_child(args: &ChildArgs) -> anyhow::Result<()> {
    let change_log = !args.no_change_log;
    let stores = Arc::new(Stores::open(&args.data_dir, stores_options(change_log))?);
    let maintainer = Maintainer::new(stores.clone(), MaintenanceConfig::default());
    let say = line_printer();
    say("opened");
    let owners = stores.owners();
    let deadline = Instant::now() + Duration::from_millis(args.max_life_ms);
    std::thread::scope(|scope| {
        for owner in &owners {
            // Without a change log a restore rolls the restored table back to its backup, so
            // its writes are not reported; with one, the restore replays them: they count.
            let report = change_log || owner.table() != RESTORED_TABLE;
            for w in 0..args.writers {
                let say = &say;
                scope.spawn(move || writer(owner, args.iteration, w, deadline, report, say));
            }
        }
        // Three compactors, each over its own third of the tables.
        for part in 0..N_COMPACTORS {
            let mine: Vec<&OwnerHandle> = owners
                .iter()
                .copied()
                .skip(part)
                .step_by(N_COMPACTORS)
                .collect();
            let say = &say;
            scope.spawn(move || compactor(&mine, args.iteration, deadline, say));
        }
        let (maintainer, say) = (&maintainer, &say);
        scope.spawn(move || backups_and_restores(maintainer, args.iteration, deadline, say));
    });
    Ok(())
}

/// Back up [`RESTORED_TABLE`], restore it from that backup, then back up two other tables
/// (starting from a table that moves with `iteration`); and again.
fn backups_and_restores(
    maintainer: &Maintainer,
    iteration: u64,
    deadline: Instant,
    say: &(dyn Fn(&str) + Sync),
) {
    let tables = store_owners::TABLE_NAMES;
    let mut next_other = iteration as usize;
    let mut round = 0usize;
    while Instant::now() < deadline {
        let options = BackupOptions {
            wait: true,
            ..BackupOptions::default()
        };
        if round % 4 == 1 {
            let restored = maintainer.restore(
                RESTORED_TABLE,
                BackupSelector::LatestVerified,
                RecoveryTrigger::Manual,
            );
            if matches!(restored, Ok(ref r) if r.outcome == RecoveryOutcome::Restored) {
                say(&format!("restored {RESTORED_TABLE}"));
            }
        } else {
            let table = if round.is_multiple_of(4) {
                RESTORED_TABLE
            } else {
                next_other += 1;
                tables[next_other % tables.len()]
            };
            if matches!(maintainer.backup_one(table, options), Ok(ref run) if run.failures.is_empty())
            {
                say(&format!("backup {table}"));
            }
        }
        round += 1;
    }
}

/// Acknowledged puts (single, and now and then a batch of ten in one write job), with
/// scratch records written and deleted beside them so that compaction has dead space to
/// reclaim.
fn writer(
    owner: &OwnerHandle,
    iteration: u64,
    w: u64,
    deadline: Instant,
    report: bool,
    say: &(dyn Fn(&str) + Sync),
) {
    let table = owner.table();
    let mut j = 0u64;
    while Instant::now() < deadline {
        let keys: Vec<String> = if j % 8 == 7 {
            (0..10)
                .map(|k| format!("crash/{iteration:06}/{w}/{j:09}-{k}"))
                .collect()
        } else {
            vec![format!("crash/{iteration:06}/{w}/{j:09}")]
        };
        let records: Vec<(String, Vec<u8>)> =
            keys.iter().map(|k| (k.clone(), value_for(k))).collect();
        let scratch = format!("scratch/{iteration:06}/{w}/{j:09}").into_bytes();
        let old_scratch =
            format!("scratch/{iteration:06}/{w}/{:09}", j.saturating_sub(4)).into_bytes();
        let result = owner.write(move |batch| {
            for (k, v) in &records {
                batch.put(k.as_bytes(), v)?;
            }
            batch.put(&scratch, &[b's'; 400])?;
            batch.delete(&old_scratch)?;
            Ok(())
        });
        if result.is_ok() && report {
            for key in &keys {
                say(&format!("ack {table} {key}"));
            }
        }
        j += 1;
    }
}

/// Compact the tables one after another, online and in place in turn (the first table and
/// kind move with `iteration`).
fn compactor(
    owners: &[&OwnerHandle],
    iteration: u64,
    deadline: Instant,
    say: &(dyn Fn(&str) + Sync),
) {
    let mut round = iteration as usize;
    while Instant::now() < deadline {
        let owner = owners[round % owners.len()];
        if round % 2 == 1 {
            if owner.compact_in_place().is_ok() {
                say(&format!("compacted in-place {}", owner.table()));
            }
        } else if owner.compact_online(OnlineConfig::default()).is_ok() {
            say(&format!("compacted online {}", owner.table()));
        }
        round += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_no_campaign_created_is_never_emptied_unless_told() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("precious"), b"keep me").unwrap();
        let error = prepare_data_dir(&data, false).unwrap_err().to_string();
        assert!(error.contains("--wipe"), "{error}");
        assert_eq!(std::fs::read(data.join("precious")).unwrap(), b"keep me");
        // A campaign's own dir is emptied; so is any dir with --wipe.
        prepare_data_dir(&data, true).unwrap();
        assert!(!data.join("precious").exists());
        std::fs::write(data.join("from-a-run"), b"").unwrap();
        prepare_data_dir(&data, false).unwrap();
        assert!(!data.join("from-a-run").exists());
        // A missing or empty dir is fine.
        prepare_data_dir(&dir.path().join("new"), false).unwrap();
    }

    #[test]
    fn the_check_finds_a_missing_write_and_a_wrong_value() {
        let dir = tempfile::tempdir().unwrap();
        {
            let stores = Stores::open(dir.path(), StoresOptions::default()).unwrap();
            let owner = stores.owner("task_queue").unwrap();
            owner.put(b"crash/kept", &value_for("crash/kept")).unwrap();
            owner.put(b"crash/changed", b"something else").unwrap();
        }
        let acks = [
            ("task_queue".to_string(), "crash/kept".to_string()),
            ("task_queue".to_string(), "crash/changed".to_string()),
            ("task_queue".to_string(), "crash/never-written".to_string()),
            ("agent_mailbox".to_string(), "crash/kept".to_string()),
        ];
        let refs: Vec<&(String, String)> = acks.iter().collect();
        let check = reopen_and_check(dir.path(), &refs, false).unwrap();
        assert_eq!(check.checked, 4);
        assert_eq!(check.lost.len(), 3, "{:?}", check.problems);
        assert_eq!(check.failed_opens, 0);
    }

    #[test]
    fn values_are_tied_to_their_key() {
        assert_eq!(value_for("a").len(), 120);
        assert_ne!(value_for("crash/1"), value_for("crash/2"));
    }
}
