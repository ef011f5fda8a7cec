//! [`Daemon`]: everything `backup-daemon run` does, as a value a hub starts in its own process
//! and stops: the nine tables opened (no full verification at open; corruption wired to
//! automatic recovery), automatic recovery, the compaction, backup and scrub schedules, the
//! off-site upload thread and the change-log shipper when `[remote]` is set, the admin API
//! (token, SSE events, metrics) and `daemon.json`, so that the CLI verbs find it.
//! The binary's `run` is a caller of this and nothing more.
//!
//! The hub writes and reads through [`Daemon::stores`], the same typed handles a hub that
//! opens `Stores` itself gets; the daemon opens them because automatic recovery must hear
//! about corruption from the first read on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use compaction::Maintainer;
use compaction::recovery::AutoRecovery;
use compaction::remote::{Offsite, Shipper, Uploader};
use compaction::scheduler::Schedule;
use crossbeam_channel::bounded;
use store_owners::{OpenStoresError, Stores, StoresOptions};

use crate::admin::{AdminListener, AdminServer};
use crate::config::DaemonConfig;
use crate::files::{self, DaemonFile};
use crate::notify::Notifier;

/// Capacity of the corruption report channel (a report is sent once per detection).
const CORRUPTION_QUEUE: usize = 64;

/// The tables and their maintenance, running. [`Daemon::shutdown`] (or dropping it) stops
/// everything and closes the tables.
#[derive(Debug)]
pub struct Daemon {
    // Declared in the order they stop in (see `stop_all`).
    admin: Option<AdminServer>,
    schedules: Vec<Schedule>,
    uploader: Option<Uploader>,
    shipper: Option<Shipper>,
    offsite: Option<Arc<Offsite>>,
    recovery: Option<AutoRecovery>,
    notifier: Option<Notifier>,
    maintainer: Option<Arc<Maintainer>>,
    data_dir: PathBuf,
    token_file: PathBuf,
    admin_addr: SocketAddr,
}

impl Daemon {
    /// Start everything `config` describes: bind the admin address (first: a busy port fails
    /// before anything is created), create the data dir and the token if needed, open the
    /// tables, start automatic recovery, the admin API and the three schedules, and write
    /// `daemon.json`.
    pub fn start(config: &DaemonConfig) -> Result<Daemon> {
        let listener = AdminListener::bind(config.admin.listen)?;
        let data_dir = absolute(&config.data_dir)?;
        store_core::fsutil::create_dir_durably(&data_dir)
            .with_context(|| format!("creating data dir {}", data_dir.display()))?;
        let token_file = absolute(&config.token_file())?;
        let token = files::load_or_create_token(&token_file)?;

        let (reports, reports_rx) = bounded(CORRUPTION_QUEUE);
        // No integrity check at open (it reads every page: seconds per GiB before the hub can
        // serve); the scrub schedule verifies every page in the background instead.
        let options = StoresOptions {
            check_integrity_on_open: false,
            corruption_reports: Some(reports),
            ..config.stores_options()
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

        // The admin API first: its metrics subscribe to the events before any operation can
        // run (an automatic restore of a table found corrupt shows in the metrics).
        let offsite = crate::remote::open_offsite(config, &maintainer)?;
        // The notifier too, so that an automatic restore at start is notified.
        let notifier = match &config.notify {
            Some(notify) => Some(Notifier::start(notify, &maintainer, &data_dir)?),
            None => None,
        };
        let admin = AdminServer::start(
            listener,
            token,
            maintainer.clone(),
            offsite.clone(),
            notifier.as_ref().map(|n| n.stats().clone()),
        )?;
        // From here on, a failure stops what has started (dropping the half-built daemon).
        let mut daemon = Daemon {
            admin_addr: admin.addr(),
            admin: Some(admin),
            schedules: Vec::new(),
            uploader: None,
            shipper: None,
            offsite: offsite.clone(),
            recovery: None,
            notifier,
            maintainer: Some(maintainer.clone()),
            data_dir: data_dir.clone(),
            token_file: token_file.clone(),
        };
        daemon.recovery = Some(
            maintainer
                .start_auto_recovery(reports_rx)
                .context("starting automatic recovery")?,
        );
        daemon.schedules.push(
            maintainer
                .start_compaction_schedule()
                .context("starting the compaction schedule")?,
        );
        daemon.schedules.push(
            maintainer
                .start_backup_schedule()
                .context("starting the backup schedule")?,
        );
        daemon.schedules.push(
            maintainer
                .start_scrub_schedule()
                .context("starting the scrub schedule")?,
        );
        // After each backup run, the upload thread copies the new backups off-site.
        // And every sync_interval the shipper sends the change logs after them.
        if let Some(offsite) = offsite {
            daemon.uploader = Some(
                Uploader::start(offsite.clone()).context("starting the off-site upload thread")?,
            );
            daemon.shipper =
                Some(Shipper::start(offsite).context("starting the change-log shipper")?);
        }
        DaemonFile {
            pid: std::process::id(),
            admin: daemon.admin_addr,
            token_file,
        }
        .write(&data_dir)?;
        if let Some(admin) = &daemon.admin {
            admin.set_started();
        }
        Ok(daemon)
    }

    /// The nine tables, with their typed handles (`stores().agent_mailbox.enqueue(..)`).
    pub fn stores(&self) -> &Stores {
        self.maintainer().stores()
    }

    /// The maintenance façade: compaction, backups, restores, health, events.
    pub fn maintainer(&self) -> &Arc<Maintainer> {
        self.maintainer
            .as_ref()
            .expect("present until the daemon stops")
    }

    /// Where the admin API listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The file holding the admin API's bearer token.
    pub fn token_file(&self) -> &Path {
        &self.token_file
    }

    /// The data dir, absolute.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The off-site backups of `[remote]`, if configured.
    pub fn offsite(&self) -> Option<&Arc<Offsite>> {
        self.offsite.as_ref()
    }

    /// When each schedule (compaction, backup, scrub) runs next.
    pub fn next_runs(&self) -> Vec<(&str, Option<std::time::SystemTime>)> {
        self.schedules
            .iter()
            .map(|s| (s.name(), s.next_run()))
            .collect()
    }

    /// Stop cleanly: the admin API stops taking requests and finishes the ones in progress, a
    /// scrub in progress stops at its next read, the other schedules finish their run,
    /// automatic recovery stops, `daemon.json` is removed, and the tables are closed (each
    /// owner answers its queue and closes its file) once the hub has dropped its own clones
    /// of the handles.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        if let Some(admin) = self.admin.take() {
            admin.shutdown();
        }
        for schedule in &self.schedules {
            schedule.request_stop();
        }
        self.schedules.clear();
        drop(self.uploader.take());
        // One last shipment of what was acknowledged, before the tables close.
        drop(self.shipper.take());
        drop(self.offsite.take());
        if let Some(recovery) = self.recovery.take() {
            recovery.stop();
        }
        // After everything that publishes: a message in its retries is given up, logged.
        drop(self.notifier.take());
        DaemonFile::remove(&self.data_dir);
        let Some(maintainer) = self.maintainer.take() else {
            return;
        };
        let stores = maintainer.stores().clone();
        drop(maintainer);
        match Arc::into_inner(stores) {
            Some(stores) => stores.close(),
            None => tracing::warn!(
                "the tables are still referenced; they close when the last reference goes"
            ),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}
