//! `--mode embedded`: the child is a hub with the daemon embedded (`backup_daemon::Daemon`,
//! as `examples/hub.rs` runs it): its own compaction, backup and scrub schedules on short
//! intervals (compaction forced by a zero threshold), the admin API and `daemon.json`, while
//! writers on every table write through the daemon's tables. Nothing is restored, so every
//! table's acknowledged writes are checked after each kill, the same way as the mixed mode.

use std::time::{Duration, Instant};

use backup_daemon::config::ByteSize;
use backup_daemon::{Daemon, DaemonConfig};
use store_owners::TableStatus;

use super::{ChildArgs, line_printer, writer};

/// The embedded child: the daemon's schedules run the maintenance; writers on every table.
pub fn child(args: &ChildArgs) -> anyhow::Result<()> {
    let mut config = DaemonConfig {
        data_dir: args.data_dir.clone(),
        ..DaemonConfig::default()
    };
    config.admin.listen = "127.0.0.1:0".parse()?;
    config.compaction.interval = Duration::from_millis(800);
    config.compaction.threshold = 0.0;
    config.backup.interval = Duration::from_millis(200);
    config.scrub.after_start = Duration::ZERO;
    config.scrub.interval = Duration::from_millis(200);
    config.tables.cache = ByteSize(9 << 20);
    config.changelog.enabled = !args.no_change_log;
    config.changelog.segment_size = ByteSize(super::CAMPAIGN_SEGMENT_BYTES);
    if let Some(port) = args.remote_port {
        config.remote = Some(compaction::RemoteConfig {
            url: format!("s3://{}/crash", crate::bench::offsite::BUCKET),
            endpoint: format!("http://127.0.0.1:{port}"),
            region: "us-east-1".into(),
            allow_http: true,
            timeout: Duration::from_secs(5),
            sync_interval: Duration::from_millis(200),
            ..compaction::RemoteConfig::default()
        });
    }
    let daemon = Daemon::start(&config)?;
    let say = line_printer();
    say("opened");
    let owners = daemon.stores().owners();
    let deadline = Instant::now() + Duration::from_millis(args.max_life_ms);
    std::thread::scope(|scope| {
        for owner in &owners {
            for w in 0..args.writers {
                let say = &say;
                scope.spawn(move || writer(owner, args.iteration, w, deadline, true, say));
            }
        }
        // The schedules report whole runs; the campaign counts each table's compaction and
        // backup as it completes, so that short-lived children still show what they did.
        let (say, maintainer, owners, offsite) =
            (&say, daemon.maintainer(), &owners, daemon.offsite());
        scope.spawn(move || {
            let mut compacting = [false; 9];
            let mut last_backup: Vec<Option<String>> = vec![None; 9];
            for (i, table) in store_owners::TABLE_NAMES.iter().enumerate() {
                last_backup[i] = maintainer.last_backup(table).map(|b| b.id);
            }
            let mut round = 0u64;
            let mut shipped = 0u64;
            while Instant::now() < deadline {
                if round.is_multiple_of(20)
                    && let Some(offsite) = offsite
                {
                    let now: u64 = offsite.health().logs.iter().map(|l| l.chunks).sum();
                    if now > shipped {
                        say(&format!("shipped {}", now - shipped));
                        shipped = now;
                    }
                }
                for (i, owner) in owners.iter().enumerate() {
                    let now = owner.shared().status() == TableStatus::Compacting;
                    if compacting[i] && !now {
                        say(&format!("compacted online {}", owner.table()));
                    }
                    compacting[i] = now;
                    if round.is_multiple_of(20) {
                        let id = maintainer.last_backup(owner.table()).map(|b| b.id);
                        if id.is_some() && id != last_backup[i] {
                            say(&format!("backup {}", owner.table()));
                            last_backup[i] = id;
                        }
                    }
                }
                round += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    });
    daemon.shutdown();
    Ok(())
}
