//! `backup-daemon run`: start the [`Daemon`] (admin address bound first, tables opened without
//! reading every page, automatic recovery, the compaction, backup and scrub schedules, the
//! admin API, `daemon.json`), say where everything is, and run until SIGINT or SIGTERM.
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
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, bounded};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::DaemonConfig;
use crate::embed::Daemon;
use crate::files::DaemonFile;

/// Run the daemon until a signal; returns after a clean shutdown.
pub fn run(config: &DaemonConfig) -> Result<()> {
    let signals = watch_signals()?;
    let daemon = Daemon::start(config)?;
    let maintainer = daemon.maintainer();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "backup-daemon running (pid {})", std::process::id());
    let _ = writeln!(out, "  data dir:        {}", daemon.data_dir().display());
    let _ = writeln!(
        out,
        "  backup dir:      {}",
        maintainer.backup_dir().display()
    );
    if let Some(offsite) = daemon.offsite() {
        let _ = writeln!(out, "  off-site:        {}", offsite.config().url);
    }
    let _ = writeln!(out, "  admin API:       http://{}", daemon.admin_addr());
    let _ = writeln!(out, "  token file:      {}", daemon.token_file().display());
    for (name, next) in daemon.next_runs() {
        let label = format!("next {}:", name.trim_end_matches("-schedule"));
        let _ = writeln!(
            out,
            "  {label:<17}{}",
            next.map_or_else(|| "-".to_string(), when)
        );
    }
    let _ = writeln!(
        out,
        "  metrics:         http://{}/metrics",
        daemon.admin_addr()
    );
    let _ = out.flush();
    drop(out);
    tracing::info!(data_dir = %daemon.data_dir().display(), admin = %daemon.admin_addr(), "daemon started");

    let signal = signals.recv().unwrap_or(SIGTERM);
    tracing::info!(
        signal,
        "shutting down; a second signal abandons the operation in progress"
    );
    let dir = daemon.data_dir().to_path_buf();
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
    daemon.shutdown();
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
