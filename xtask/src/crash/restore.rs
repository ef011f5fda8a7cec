//! `cargo xtask crash --mode restore`: restores of a table with known records, killed at
//! random moments.
//!
//! The defect this mode was written for: a restore moved the live table file into
//! `quarantine/`, fsynced the directory, and only then renamed the restored file in. A kill
//! between the two left no file at the table's path, and the next open created an empty table
//! with status ok: every record of the table gone, and nothing said so.
//!
//! The child opens the data dir (like the mixed child), makes sure [`RESTORED_TABLE`] holds its
//! known set ([`known_set`]: [`N_KNOWN`] configuration entries, written through the typed
//! handle by idempotent puts) and that a backup holding it exists (`Maintainer::backup_one`,
//! which verifies it before listing it); the first child writes them, later ones find them.
//! It then prints `seeded` and restores the table from its latest verified backup as fast as
//! it can, printing `restored` after each restore, while writers run on the eight other tables
//! and acknowledge their writes as in the mixed mode.
//!
//! After the kill the parent reopens the data dir the way the daemon does (integrity check on
//! open, corruption reports wired to `Maintainer::start_auto_recovery`), waits up to
//! [`RECOVERY_WAIT`] for every table that did not open ok to be recovered, then checks the
//! acknowledged writes and every table's status like the mixed mode, and the restored table's
//! known set. An **emptied table** is a reopen, once the child said the known set was in place,
//! where the restored table lacks any known record, holds a wrong or an unexpected one, or
//! cannot be read, whatever its status. A table that did not open ok but serves again after
//! the automatic recovery is counted apart (it is the daemon doing its job; any data it lost
//! shows as lost writes or an emptied table); one still not ok is a failed open.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use compaction::recovery::RecoveryOutcome;
use compaction::{
    BackupOptions, BackupSelector, Envelope, Event, Maintainer, MaintenanceConfig, RecoveryTrigger,
};
use crossbeam_channel::Receiver;
use store_owners::tables::ConfigEntry;
use store_owners::{OwnerHandle, Stores, StoresOptions, TableStatus};

use super::{Check, ChildArgs, Figures, check_tables, line_printer, value_for, writer};

/// The table restored back to back. Nothing but the known set is ever written to it.
pub const RESTORED_TABLE: &str = "agentcom_config";

/// Records in the known set.
const N_KNOWN: usize = 200;

/// Threads writing the known set (so that the owner commits the puts in groups).
const N_SEEDERS: usize = 8;

/// Longest wait, after a reopen, for the automatic recovery of the tables that did not open
/// ok.
const RECOVERY_WAIT: Duration = Duration::from_secs(10);

/// Capacity of the corruption report channel (as in the daemon).
const CORRUPTION_QUEUE: usize = 64;

/// The known set of [`RESTORED_TABLE`]: entry name → entry. Always the same, so writing it
/// again is a no-op.
fn known_set() -> BTreeMap<String, ConfigEntry> {
    (0..N_KNOWN)
        .map(|i| {
            let name = format!("crash-restore/{i:03}");
            let entry = ConfigEntry {
                value: String::from_utf8_lossy(&value_for(&name)).into_owned(),
                updated_at_ms: 1_000 + i as u64,
            };
            (name, entry)
        })
        .collect()
}

/// The restore child: put the known set in place, then restore it over and over while
/// writers run on the other tables; runs until killed.
pub fn child(args: &ChildArgs) -> anyhow::Result<()> {
    let stores = Arc::new(Stores::open(
        &args.data_dir,
        super::stores_options(!args.no_change_log),
    )?);
    let maintainer = Maintainer::new(stores.clone(), MaintenanceConfig::default());
    let say = line_printer();
    say("opened");
    let deadline = Instant::now() + Duration::from_millis(args.max_life_ms);
    let seeded = put_known_set(&stores, &maintainer);
    std::thread::scope(|scope| {
        for owner in stores.owners() {
            if owner.table() == RESTORED_TABLE {
                continue;
            }
            for w in 0..args.writers {
                let say = &say;
                scope.spawn(move || writer(owner, args.iteration, w, deadline, true, say));
            }
        }
        match &seeded {
            Ok(()) => {
                say(&format!("seeded {RESTORED_TABLE} {N_KNOWN}"));
                restore_over_and_over(&maintainer, deadline, &say);
            }
            // The parent counts what it finds at the reopen; this child only keeps writing.
            Err(e) => say(&format!("seed-failed {e:#}")),
        }
    });
    Ok(())
}

/// Write whatever is missing of the known set, and back it up unless the newest backup
/// already holds it.
fn put_known_set(stores: &Stores, maintainer: &Maintainer) -> anyhow::Result<()> {
    let table = &stores.agentcom_config;
    let found: BTreeMap<String, ConfigEntry> = table.list()?.into_iter().collect();
    let expected = known_set();
    if let Some(name) = found.keys().find(|n| !expected.contains_key(*n)) {
        bail!("{RESTORED_TABLE} holds an entry outside the known set: {name}");
    }
    let missing: Vec<(&String, &ConfigEntry)> = expected
        .iter()
        .filter(|(name, entry)| found.get(*name) != Some(*entry))
        .collect();
    if !missing.is_empty() {
        let per_thread = missing.len().div_ceil(N_SEEDERS);
        std::thread::scope(|scope| {
            let puts: Vec<_> = missing
                .chunks(per_thread)
                .map(|chunk| {
                    scope.spawn(move || -> anyhow::Result<()> {
                        for (name, entry) in chunk {
                            table.put(name, &entry.value, entry.updated_at_ms)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            puts.into_iter()
                .try_for_each(|p| p.join().map_err(|_| anyhow::anyhow!("a seeder panicked"))?)
        })?;
    }
    let backed_up = maintainer
        .last_backup(RESTORED_TABLE)
        .and_then(|b| b.manifest)
        .is_some_and(|m| m.records == N_KNOWN as u64);
    if !missing.is_empty() || !backed_up {
        let options = BackupOptions {
            wait: true,
            ..BackupOptions::default()
        };
        let run = maintainer.backup_one(RESTORED_TABLE, options)?;
        if let Some(failure) = run.failures.first() {
            bail!("backing up {RESTORED_TABLE}: {}", failure.error);
        }
    }
    Ok(())
}

/// Restore [`RESTORED_TABLE`] from its latest verified backup, again and again.
fn restore_over_and_over(maintainer: &Maintainer, deadline: Instant, say: &(dyn Fn(&str) + Sync)) {
    while Instant::now() < deadline {
        let restored = maintainer.restore(
            RESTORED_TABLE,
            BackupSelector::LatestVerified,
            RecoveryTrigger::Manual,
        );
        match restored {
            Ok(report) if report.outcome == RecoveryOutcome::Restored => {
                say(&format!("restored {RESTORED_TABLE}"));
            }
            Ok(report) => say(&format!("restore-failed {:?}", report.outcome)),
            Err(e) => say(&format!("restore-failed {e}")),
        }
    }
}

/// Reopen the data dir like the daemon, give the automatic recovery its chance, then check
/// the tables, the acknowledged writes in `acks` and, when `known_set_in_place`, the restored
/// table's known set.
pub fn reopen_and_check<'a>(
    data_dir: &Path,
    acks: &[&'a (String, String)],
    known_set_in_place: bool,
    change_log: bool,
) -> anyhow::Result<Check<'a>> {
    let (reports, reports_rx) = crossbeam_channel::bounded(CORRUPTION_QUEUE);
    let options = StoresOptions {
        check_integrity_on_open: true,
        corruption_reports: Some(reports),
        ..super::stores_options(change_log)
    };
    let stores = Stores::open(data_dir, options)
        .with_context(|| format!("reopening {} after the kill", data_dir.display()))?;
    let maintainer = Arc::new(Maintainer::new(
        Arc::new(stores),
        MaintenanceConfig::default(),
    ));
    let mut check = Check::default();
    let not_ok: Vec<(&'static str, TableStatus)> = maintainer
        .stores()
        .owners()
        .into_iter()
        .map(|o| (o.table(), o.shared().status()))
        .filter(|(_, status)| *status != TableStatus::Ok)
        .collect();
    // Subscribed before the recovery starts, so that no recovery event is missed.
    let events = maintainer.events().subscribe();
    let recovery = maintainer
        .start_auto_recovery(reports_rx)
        .context("starting automatic recovery")?;
    let outcomes = wait_for_recovery(&maintainer, &events, &not_ok);
    recovery.stop();
    for (table, status) in &not_ok {
        let now = owner(&maintainer, table).shared().status();
        let outcome = outcomes.iter().find(|(t, _)| t == table).map_or_else(
            || "no automatic recovery".to_string(),
            |(_, outcome)| format!("automatic recovery: {outcome}"),
        );
        check.problems.push(format!(
            "table {table} did not open ok ({status}); {outcome}; now {now}"
        ));
        if now == TableStatus::Ok {
            check.recovered += 1;
        }
    }

    check_tables(maintainer.stores(), acks, &mut check);
    if known_set_in_place {
        check_known_set(maintainer.stores(), &mut check);
    }

    drop(events);
    let stores = maintainer.stores().clone();
    drop(maintainer);
    match Arc::into_inner(stores) {
        Some(stores) => stores.close(),
        None => bail!("the reopened tables are still referenced; cannot close them"),
    }
    Ok(check)
}

fn owner<'m>(maintainer: &'m Maintainer, table: &str) -> &'m OwnerHandle {
    maintainer
        .stores()
        .owner(table)
        .expect("one of the nine tables")
}

/// Wait until every table of `not_ok` has had a recovery (an event) or serves again, for at
/// most [`RECOVERY_WAIT`]. Returns the recoveries seen: table and outcome.
fn wait_for_recovery(
    maintainer: &Maintainer,
    events: &Receiver<Envelope>,
    not_ok: &[(&'static str, TableStatus)],
) -> Vec<(String, String)> {
    let mut pending: HashSet<&str> = not_ok.iter().map(|(t, _)| *t).collect();
    let mut outcomes = Vec::new();
    let deadline = Instant::now() + RECOVERY_WAIT;
    while !pending.is_empty() && Instant::now() < deadline {
        match events.recv_timeout(Duration::from_millis(20)) {
            Ok(Envelope {
                event: Event::RecoveryComplete { report } | Event::RecoveryFailed { report },
                ..
            }) => {
                let outcome = match &report.error {
                    Some(error) => format!("{:?} ({error})", report.outcome),
                    None => format!("{:?}", report.outcome),
                };
                pending.remove(report.table.as_str());
                outcomes.push((report.table, outcome));
            }
            Ok(_) => {}
            Err(e) if e.is_disconnected() => break,
            Err(_) => {}
        }
        pending.retain(|t| owner(maintainer, t).shared().status() != TableStatus::Ok);
    }
    outcomes
}

/// Count an emptied table when [`RESTORED_TABLE`] lacks any of its known records, holds a
/// wrong or unexpected one, or cannot be read.
fn check_known_set(stores: &Stores, check: &mut Check<'_>) {
    let status = stores.agentcom_config.owner().shared().status();
    let expected = known_set();
    let found = match stores.agentcom_config.list() {
        Ok(found) => found,
        Err(e) => {
            check.emptied += 1;
            check.problems.push(format!(
                "emptied table: {RESTORED_TABLE} cannot be read ({e}), status {status}"
            ));
            return;
        }
    };
    let n_found = found.len();
    let (mut n_kept, mut n_wrong, mut n_unexpected) = (0, 0, 0);
    for (name, entry) in &found {
        match expected.get(name) {
            Some(e) if e == entry => n_kept += 1,
            Some(_) => n_wrong += 1,
            None => n_unexpected += 1,
        }
    }
    if n_kept != N_KNOWN || n_found != N_KNOWN {
        check.emptied += 1;
        check.problems.push(format!(
            "emptied table: {RESTORED_TABLE} reopened with {n_kept} of its {N_KNOWN} known records \
             ({n_wrong} wrong, {n_unexpected} unexpected), status {status}"
        ));
    }
}

/// Deal with the files the child's restores moved to `<data_dir>/quarantine/` (one per
/// restore, so they pile up): removed, or with `keep` moved to
/// `<data_dir>/crash-quarantine/iteration-<n>/` (the evidence of a problem, emptied with the
/// data dir when the next campaign starts), which is returned.
pub fn clear_quarantine(
    data_dir: &Path,
    iteration: u64,
    keep: bool,
) -> anyhow::Result<Option<PathBuf>> {
    let dir = data_dir.join("quarantine");
    if !dir.exists() {
        return Ok(None);
    }
    if keep {
        let kept = data_dir
            .join("crash-quarantine")
            .join(format!("iteration-{iteration}"));
        if let Some(parent) = kept.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(&dir, &kept)
            .with_context(|| format!("moving {} to {}", dir.display(), kept.display()))?;
        return Ok(Some(kept));
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(None)
}

/// The closing figures of the restore mode.
pub fn print_figures(figures: &Figures, started: Instant) {
    let elapsed = started.elapsed().as_secs_f64();
    println!("crash campaign figures (restore mode, {RESTORED_TABLE} restored back to back):");
    super::print_shared_figures(figures);
    println!(
        "  killed before the table was seeded:    {}",
        figures.killed_before_seeded
    );
    println!(
        "  tables that failed to open:            {} (not ok after automatic recovery)",
        figures.failed_opens
    );
    println!(
        "  emptied tables:                        {} ({RESTORED_TABLE} reopened without its {N_KNOWN} known records)",
        figures.emptied
    );
    println!(
        "  recovered automatically at reopen:     {} (did not open ok, then served again)",
        figures.recovered
    );
    println!(
        "  restores completed:                    {} ({} failed)",
        figures.restores, figures.failed_restores
    );
    println!(
        "  time:                                  {elapsed:.0} s ({:.0} ms per kill)",
        1000.0 * elapsed / figures.kills.max(1) as f64
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Open `dir`, put the known set in (all of it, or all but the first `n_missing` entries),
    /// close.
    fn write_known_set(dir: &Path, n_missing: usize) {
        let stores = Stores::open(dir, StoresOptions::default()).unwrap();
        for (name, entry) in known_set().into_iter().skip(n_missing) {
            stores
                .agentcom_config
                .put(&name, &entry.value, entry.updated_at_ms)
                .unwrap();
        }
    }

    #[test]
    fn the_check_counts_a_table_missing_known_records_as_emptied() {
        let dir = tempfile::tempdir().unwrap();
        write_known_set(dir.path(), 0);
        let check = reopen_and_check(dir.path(), &[], true, true).unwrap();
        assert_eq!(check.emptied, 0, "{:?}", check.problems);
        assert_eq!(check.failed_opens, 0, "{:?}", check.problems);

        let dir = tempfile::tempdir().unwrap();
        write_known_set(dir.path(), 1);
        let check = reopen_and_check(dir.path(), &[], true, true).unwrap();
        assert_eq!(check.emptied, 1, "{:?}", check.problems);
        // Not expected to hold the set yet: nothing counted.
        let check = reopen_and_check(dir.path(), &[], false, true).unwrap();
        assert_eq!(check.emptied, 0, "{:?}", check.problems);
    }

    #[test]
    fn the_check_counts_a_table_whose_file_vanished_as_emptied() {
        let dir = tempfile::tempdir().unwrap();
        write_known_set(dir.path(), 0);
        std::fs::remove_file(store_owners::stores::table_path(dir.path(), RESTORED_TABLE)).unwrap();
        // Served empty with status ok, or not served: emptied either way.
        let check = reopen_and_check(dir.path(), &[], true, true).unwrap();
        assert_eq!(check.emptied, 1, "{:?}", check.problems);
    }

    #[test]
    fn the_known_set_has_its_size_and_distinct_values() {
        let set = known_set();
        assert_eq!(set.len(), N_KNOWN);
        let values: HashSet<&String> = set.values().map(|e| &e.value).collect();
        assert_eq!(values.len(), N_KNOWN);
    }
}
