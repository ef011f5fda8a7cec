//! [`Maintainer`]: the façade over the nine tables that the daemon (and tests) drive. It holds
//! the tables, the config, the event topic, the history and the maintenance lock, which lets
//! only one maintenance operation (compaction, backup or restore) run at a time.
//!
//! The operations are `impl Maintainer` blocks in their own modules, which import this one
//! (never the reverse): [`crate::compact`] (compaction runs), [`crate::backup`] (backups,
//! listing, verification, retention), [`crate::recovery`] (restores, automatic recovery),
//! [`crate::quarantine`], [`crate::health`], [`crate::scrub`] (background checksum walks)
//! and [`crate::schedules`] (the compaction and backup schedules).
//! This module needs only the leaves: config, events, history, lock, operations, scheduler
//! state and, with the `testing` feature, the test hooks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};

use store_owners::{OwnerHandle, Stores};

use crate::config::MaintenanceConfig;
use crate::events::EventBus;
use crate::history::History;
use crate::lock::OpLock;
use crate::operations::{OperationInfo, Operations};
use crate::report::{ScrubProgress, ScrubResult};
use crate::scheduler::ScheduleState;

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
    pub(crate) op_lock: OpLock,
    /// Where backups live.
    pub(crate) backup_dir: PathBuf,
    /// The last compaction runs, persisted in the data dir (loaded here, at creation).
    pub(crate) history: History,
    /// The compaction schedule's state, once started (for the next run time in health).
    pub(crate) compaction_schedule: Mutex<Weak<ScheduleState>>,
    /// Copies pruned from the quarantine (see [`crate::quarantine`]).
    pub(crate) quarantine_pruned: AtomicU64,
    /// Scrub progress and results (see [`crate::scrub`]).
    pub(crate) scrub: Arc<ScrubState>,
    /// With off-site shipping, the last change-log group shipped per table: local pruning
    /// never deletes past it (see [`Maintainer::log_prune_bound`]). None: no shipping.
    pub(crate) shipped: Mutex<Option<BTreeMap<String, u64>>>,
    /// The operations moving bytes now (see [`crate::operations`]).
    pub(crate) operations: Operations,
    /// Test hooks (see [`crate::testing`]).
    #[cfg(feature = "testing")]
    pub(crate) hooks: crate::testing::Hooks,
}

impl Maintainer {
    /// Wrap opened tables; their shared I/O pacer is set to `config.pacing`.
    pub fn new(stores: Arc<Stores>, config: MaintenanceConfig) -> Maintainer {
        let backup_dir = if config.backup.dir.as_os_str().is_empty() {
            stores.data_dir().join("backups")
        } else {
            config.backup.dir.clone()
        };
        let history = History::load(stores.data_dir());
        stores.pacer().set_mode(config.pacing.io_rate);
        Maintainer {
            stores,
            config,
            bus: EventBus::new(),
            op_lock: OpLock::default(),
            backup_dir,
            history,
            compaction_schedule: Mutex::new(Weak::new()),
            quarantine_pruned: AtomicU64::new(0),
            scrub: Arc::default(),
            shipped: Mutex::new(None),
            operations: Operations::default(),
            #[cfg(feature = "testing")]
            hooks: crate::testing::Hooks::default(),
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

    /// The dir holding `table`'s backups.
    pub fn table_backup_dir(&self, table: &str) -> PathBuf {
        self.backup_dir.join(table)
    }

    /// Whether a maintenance operation (a compaction run, a backup run or a restore) is
    /// running now. Never waits.
    pub fn operation_running(&self) -> bool {
        self.op_lock.is_held()
    }

    /// The compactions, backups, verifications, restores and uploads running now, oldest
    /// first, with the bytes each has moved. An operation is listed exactly while it runs:
    /// it registers itself as it begins and is removed as it ends, however it ends.
    pub fn operations(&self) -> Vec<OperationInfo> {
        self.operations.list()
    }

    /// The owner of `table`, if it is one of the nine.
    pub(crate) fn owner_of(&self, table: &str) -> Option<&OwnerHandle> {
        self.stores.owner(table)
    }

    /// From now on, local change-log pruning keeps every group not shipped off-site yet
    /// (until [`Maintainer::record_shipped`] says otherwise, nothing is shipped).
    pub(crate) fn bound_log_pruning(&self) {
        self.shipped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(BTreeMap::new);
    }

    /// Groups up to `position` of `table`'s change log are off-site.
    pub(crate) fn record_shipped(&self, table: &str, position: u64) {
        if let Some(shipped) = self
            .shipped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            shipped.insert(table.to_string(), position);
        }
    }

    /// The last group of `table`'s change log that local pruning may delete as far as
    /// shipping is concerned: None without shipping, else the last group shipped (0 before
    /// the shipper knows). Because a segment pruned before it is shipped is lost to a
    /// recovery from the bucket.
    pub(crate) fn log_prune_bound(&self, table: &str) -> Option<u64> {
        self.shipped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|shipped| shipped.get(table).copied().unwrap_or(0))
    }

    /// Call `hook` at every step of every online compaction from now on (see
    /// [`store_owners::OnlineConfig::hook`]); an `Err` from it makes that step fail. `None`
    /// (the default) removes it.
    #[cfg(feature = "testing")]
    pub fn set_compaction_hook(&self, hook: Option<store_owners::StepHook>) {
        self.hooks.set_compaction_hook(hook);
    }

    /// Inject a fault into the following restores (`None` disarms).
    #[cfg(feature = "testing")]
    pub fn inject_restore_fault(&self, fault: Option<crate::testing::RestoreFault>) {
        self.hooks.set_restore_fault(fault);
    }
}

/// The scrubs' shared state: one run at a time, its progress, each table's last result.
#[derive(Debug, Default)]
pub(crate) struct ScrubState {
    pub(crate) running: Mutex<Option<ScrubProgress>>,
    pub(crate) last: Mutex<BTreeMap<String, ScrubResult>>,
    pub(crate) bytes_read_total: AtomicU64,
    pub(crate) wait_micros: AtomicU64,
    pub(crate) schedule: Mutex<Weak<ScheduleState>>,
}

impl ScrubState {
    pub(crate) fn set_bytes_read(&self, bytes: u64) {
        if let Some(p) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            p.bytes_read = bytes;
        }
    }
}
