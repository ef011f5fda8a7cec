//! `--mode embedded`: the child is a hub with the daemon embedded (`backup_daemon::Daemon`,
//! as `examples/hub.rs` runs it): its own compaction, backup and scrub schedules on short
//! intervals (compaction forced by a zero threshold), the admin API and `daemon.json`, while
//! writers on every table write through the daemon's tables. Nothing is restored, so every
//! table's acknowledged writes are checked after each kill, the same way as the mixed mode.

use std::time::{Duration, Instant};

use backup_daemon::config::ByteSize;
use backup_daemon::{Daemon, DaemonConfig};
use compaction::{Event, TableOutcome};

use super::{ChildArgs, line_printer, writer};

/// The embedded child: the daemon's schedules run the maintenance; writers on every table.
pub fn child(args: &ChildArgs) -> anyhow::Result<()> {
    let mut config = DaemonConfig {
        data_dir: args.data_dir.clone(),
        ..DaemonConfig::default()
    };
    config.admin.listen = "127.0.0.1:0".parse()?;
    config.compaction.interval = Duration::from_millis(150);
    config.compaction.threshold = 0.0;
    config.backup.interval = Duration::from_millis(250);
    config.scrub.after_start = Duration::ZERO;
    config.scrub.interval = Duration::from_millis(200);
    config.tables.cache = ByteSize(9 << 20);
    let daemon = Daemon::start(&config)?;
    let say = line_printer();
    say("opened");
    let events = daemon.maintainer().events().subscribe();
    let owners = daemon.stores().owners();
    let deadline = Instant::now() + Duration::from_millis(args.max_life_ms);
    std::thread::scope(|scope| {
        for owner in &owners {
            for w in 0..args.writers {
                let say = &say;
                scope.spawn(move || writer(owner, args.iteration, w, deadline, true, say));
            }
        }
        let say = &say;
        scope.spawn(move || {
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                let Ok(envelope) = events.recv_timeout(left) else {
                    break;
                };
                match envelope.event {
                    Event::CompactionComplete { run } => {
                        for result in run.results {
                            if result.outcome == TableOutcome::Compacted {
                                say(&format!("compacted online {}", result.table));
                            }
                        }
                    }
                    Event::BackupComplete { run } => {
                        for backup in run.backups {
                            say(&format!("backup {}", backup.table));
                        }
                    }
                    _ => {}
                }
            }
        });
    });
    daemon.shutdown();
    Ok(())
}
