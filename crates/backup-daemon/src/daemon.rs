//! `backup-daemon run`: bind the admin address (first, so that a busy port fails before
//! anything is created), open the nine tables (integrity checked, corruption wired to automatic
//! recovery), start the compaction and backup schedules and the admin API, say where
//! everything is, and run until SIGINT or SIGTERM.
//!
//! # Shutdown
//!
//! On the first signal: the admin API stops taking requests and waits for the ones in progress
//! (a compaction or backup started through it finishes), the schedules stop (each waits for
//! its run in progress), automatic recovery stops, `daemon.json` is removed, and the tables
//! are closed (each owner answers its queue and closes its file). A second signal exits at
//! once: an operation still running is abandoned, which is safe because a compaction or a
//! restore replaces a table file only by an atomic rename, and a backup is only listed once
//! its manifest is written.
//!
//! Nothing in the shutdown waits on a client of the admin API for long: writes to clients
//! time out, and an event stream still blocked on its client after a second is left behind
//! (see [`crate::admin`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use compaction::Maintainer;
use compaction::remote::Uploader;
use crossbeam_channel::{Receiver, bounded};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use store_owners::{OpenStoresError, Stores, StoresOptions};

use crate::admin::{AdminListener, AdminServer};
use crate::config::DaemonConfig;
use crate::files::{self, DaemonFile};

/// Capacity of the corruption report channel (a report is sent once per detection).
const CORRUPTION_QUEUE: usize = 64;

/// Run the daemon until a signal; returns after a clean shutdown.
pub fn run(config: &DaemonConfig) -> Result<()> {
    // The admin address before anything else: a busy port fails the start at once, before a
    // data dir, a table or a token is created.
    let listener = AdminListener::bind(config.admin.listen)?;
    let data_dir = absolute(&config.data_dir)?;
    store_core::fsutil::create_dir_durably(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let signals = watch_signals()?;

    let token_file = absolute(&config.token_file())?;
    let token = files::load_or_create_token(&token_file)?;

    let (reports, reports_rx) = bounded(CORRUPTION_QUEUE);
    let options = StoresOptions {
        check_integrity_on_open: true,
        corruption_reports: Some(reports),
        ..Default::default()
    };
    let stores = Stores::open(&data_dir, options).map_err(|e| match e {
        OpenStoresError::Locked(dir) => anyhow::anyhow!(
            "data dir {} is in use by another process (another daemon, or a CLI command running directly)",
            dir.display()
        ),
        e => anyhow::Error::new(e).context("opening the tables"),
    })?;
    let mut maintenance = config.maintenance();
    maintenance.backup.dir = absolute(&config.backup_dir())?;
    let maintainer = Arc::new(Maintainer::new(Arc::new(stores), maintenance));

    // The admin API first: its metrics subscribe to the events before any operation can run
    // (an automatic restore of a table found corrupt at open shows in the metrics).
    let offsite = crate::remote::open_offsite(config, &maintainer)?;
    let admin = AdminServer::start(listener, token, maintainer.clone(), offsite.clone())?;
    let recovery = maintainer
        .start_auto_recovery(reports_rx)
        .context("starting automatic recovery")?;
    let compaction_schedule = maintainer
        .start_compaction_schedule()
        .context("starting the compaction schedule")?;
    let backup_schedule = maintainer
        .start_backup_schedule()
        .context("starting the backup schedule")?;
    // After each backup run, the upload thread copies the new backups off-site.
    let uploader = match &offsite {
        Some(offsite) => {
            Some(Uploader::start(offsite.clone()).context("starting the off-site upload thread")?)
        }
        None => None,
    };

    DaemonFile {
        pid: std::process::id(),
        admin: admin.addr(),
        token_file: token_file.clone(),
    }
    .write(&data_dir)?;

    let next_compaction = compaction_schedule.next_run();
    let next_backup = backup_schedule.next_run();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "backup-daemon running (pid {})", std::process::id());
    let _ = writeln!(out, "  data dir:        {}", data_dir.display());
    let _ = writeln!(
        out,
        "  backup dir:      {}",
        maintainer.backup_dir().display()
    );
    if let Some(offsite) = &offsite {
        let _ = writeln!(out, "  off-site:        {}", offsite.config().url);
    }
    let _ = writeln!(out, "  admin API:       http://{}", admin.addr());
    let _ = writeln!(out, "  token file:      {}", token_file.display());
    let _ = writeln!(
        out,
        "  next compaction: {}",
        next_compaction.map_or_else(|| "-".to_string(), when)
    );
    let _ = writeln!(
        out,
        "  next backup:     {}",
        next_backup.map_or_else(|| "-".to_string(), when)
    );
    let _ = writeln!(out, "  metrics:         http://{}/metrics", admin.addr());
    let _ = out.flush();
    drop(out);
    tracing::info!(data_dir = %data_dir.display(), admin = %admin.addr(), "daemon started");

    let signal = signals.recv().unwrap_or(SIGTERM);
    tracing::info!(
        signal,
        "shutting down; a second signal abandons the operation in progress"
    );
    let dir = data_dir.clone();
    let second = std::thread::Builder::new()
        .name("second-signal".into())
        .spawn(move || {
            if let Ok(signal) = signals.recv() {
                tracing::warn!(
                    signal,
                    "second signal: exiting now, abandoning the operation in progress"
                );
                DaemonFile::remove(&dir);
                std::process::exit(130);
            }
        });
    if let Err(e) = second {
        tracing::warn!(error = %e, "cannot watch for a second signal; shutting down anyway");
    }

    admin.shutdown();
    drop(compaction_schedule);
    drop(backup_schedule);
    drop(uploader);
    drop(offsite);
    recovery.stop();
    DaemonFile::remove(&data_dir);

    let stores = maintainer.stores().clone();
    drop(maintainer);
    match Arc::into_inner(stores) {
        Some(stores) => stores.close(),
        None => {
            tracing::warn!("the tables are still referenced; they close when the process exits")
        }
    }
    tracing::info!("daemon stopped");
    Ok(())
}

/// SIGINT and SIGTERM, delivered on a channel.
fn watch_signals() -> Result<Receiver<i32>> {
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
    let (tx, rx) = bounded(4);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if tx.send(signal).is_err() {
                    break;
                }
            }
        })
        .context("spawning the signal thread")?;
    Ok(rx)
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// `2026-11-26T04:00:00Z (in 6h)`.
fn when(at: SystemTime) -> String {
    when_from(at, SystemTime::now())
}

/// [`when`], seen from `now`.
fn when_from(at: SystemTime, now: SystemTime) -> String {
    let rounded = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| Duration::from_secs(d.as_secs()))
        .unwrap_or_default();
    let in_ = at.duration_since(now).unwrap_or_default();
    format!(
        "{} (in {})",
        humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + rounded),
        humantime::format_duration(rounded_for_reading(in_))
    )
}

/// A wait rounded for reading: to the nearest minute from a minute on (`5h 59m 59.9s` reads
/// `6h`), to the nearest second under it.
fn rounded_for_reading(d: Duration) -> Duration {
    let secs = (d.as_millis() + 500) / 1000;
    let secs = if secs >= 60 {
        (secs + 30) / 60 * 60
    } else {
        secs
    };
    Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{rounded_for_reading, when_from};

    /// The banner's "in" reads as the README shows it: `(in 6h)`, not `(in 5h 59m 59s)`.
    #[test]
    fn the_banner_rounds_the_wait_to_the_minute() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_115_200_400);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_115_200 + 6 * 3600);
        assert_eq!(when_from(at, now), "2025-11-26T06:00:00Z (in 6h)");
        let secs = Duration::from_secs;
        assert_eq!(rounded_for_reading(secs(6 * 3600 - 1)), secs(6 * 3600));
        assert_eq!(rounded_for_reading(secs(22 * 3600 + 29)), secs(22 * 3600));
        assert_eq!(rounded_for_reading(secs(90)), secs(120));
        assert_eq!(rounded_for_reading(secs(89)), secs(60));
        assert_eq!(rounded_for_reading(Duration::from_millis(41_600)), secs(42));
        assert_eq!(rounded_for_reading(Duration::ZERO), Duration::ZERO);
        // A time already past reads as now.
        assert!(when_from(now - secs(5), now).ends_with("(in 0s)"));
    }
}
