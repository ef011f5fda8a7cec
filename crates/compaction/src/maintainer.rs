//! [`Maintainer`]: the façade over the nine tables that the daemon (and tests) drive. It holds
//! the tables, the config, the event topic and the history, and makes sure only one
//! maintenance operation (compaction, backup or restore) runs at a time.
//!
//! Operations are implemented in their own modules as `impl Maintainer` blocks:
//! [`crate::compact`], [`crate::backup`], [`crate::recovery`], [`crate::health`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use store_owners::Stores;

use crate::config::MaintenanceConfig;
use crate::events::EventBus;

/// The maintenance façade. Share it behind an `Arc`.
#[derive(Debug)]
pub struct Maintainer {
    /// The nine tables.
    pub(crate) stores: Arc<Stores>,
    /// Settings.
    pub(crate) config: MaintenanceConfig,
    /// The "backups" topic.
    pub(crate) bus: EventBus,
    /// Serializes maintenance operations: never two compactions, backups or restores at once.
    pub(crate) op_lock: Mutex<()>,
    /// Where backups live.
    pub(crate) backup_dir: PathBuf,
    /// The last compaction runs, persisted in the data dir (loaded here, at creation).
    pub(crate) history: crate::history::History,
    /// Test hook passed to every online compaction (see [`Maintainer::set_compaction_hook`]).
    pub(crate) compaction_hook: Mutex<Option<store_owners::StepHook>>,
    /// The compaction schedule's state, once started (for the next run time in health).
    pub(crate) compaction_schedule: Mutex<std::sync::Weak<crate::scheduler::ScheduleState>>,
    /// A fault injected into the next restores (tests only; see [`crate::recovery`]).
    pub(crate) restore_fault: Mutex<Option<crate::recovery::RestoreFault>>,
    /// Copies pruned from the quarantine (see [`crate::quarantine`]).
    pub(crate) quarantine_pruned: std::sync::atomic::AtomicU64,
}

impl Maintainer {
    /// Wrap opened tables.
    pub fn new(stores: Arc<Stores>, config: MaintenanceConfig) -> Maintainer {
        let backup_dir = if config.backup.dir.as_os_str().is_empty() {
            stores.data_dir().join("backups")
        } else {
            config.backup.dir.clone()
        };
        let history = crate::history::History::load(stores.data_dir());
        Maintainer {
            stores,
            config,
            bus: EventBus::new(),
            op_lock: Mutex::new(()),
            backup_dir,
            history,
            compaction_hook: Mutex::new(None),
            compaction_schedule: Mutex::new(std::sync::Weak::new()),
            restore_fault: Mutex::new(None),
            quarantine_pruned: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The tables.
    pub fn stores(&self) -> &Arc<Stores> {
        &self.stores
    }

    /// The settings.
    pub fn config(&self) -> &MaintenanceConfig {
        &self.config
    }

    /// The "backups" event topic.
    pub fn events(&self) -> &EventBus {
        &self.bus
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        self.stores.data_dir()
    }

    /// The backup dir.
    pub fn backup_dir(&self) -> &Path {
        &self.backup_dir
    }
}
