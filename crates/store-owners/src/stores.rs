//! Opening the nine tables of a data dir: one owner each, files `<data_dir>/<table>.redb`,
//! and a lock file so that a second process cannot open the same data dir.
//!
//! # Birth markers
//!
//! Once a table's file has opened, an empty marker file `<data_dir>/.<table>.created` says
//! that the table exists. From then on a missing (or empty) table file is never taken for a
//! new, empty table: the table opens [`crate::TableStatus::Lost`] and is reported for a
//! restore, and no backup of it is taken until it serves again (so retention can never push
//! its good backups out). To really start a table afresh, remove its file *and* its marker.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use crossbeam_channel::Sender;
use std::sync::Arc;

use store_core::{Pacer, StoreOptions};

use crate::error::OpenStoresError;
use crate::owner::{OwnerConfig, OwnerHandle};
use crate::tables::{
    AgentChannels, AgentMailbox, AgentcomConfig, ChannelHistory, MessageHistory, TABLE_NAMES,
    TaskDeadLetter, TaskQueue, ThreadMessages, ThreadReplies,
};

/// How the tables of a data dir are opened.
#[derive(Debug, Clone, Default)]
pub struct StoresOptions {
    /// Verify every page checksum when a table opens (finds corruption before it is served).
    pub check_integrity_on_open: bool,
    /// Where corruption detected at open or at run time is reported, by table name.
    pub corruption_reports: Option<Sender<&'static str>>,
    /// Owner tuning; `store` and `corruption_reports` are filled from the fields above.
    pub owner: OwnerConfig,
    /// redb cache of particular tables, in bytes, by table name; the others get
    /// `owner.store.cache_bytes`.
    pub cache_bytes_per_table: std::collections::BTreeMap<String, usize>,
    /// Keep a change log per table in `<data_dir>/changelog/<table>/` (see
    /// `store_core::changelog`): writes become durable there, restores replay it and lose no
    /// acknowledged write. `None` commits every group durably in the table file alone.
    pub change_log: Option<store_core::changelog::LogOptions>,
}

/// The nine tables of one data dir. Dropping it closes every owner (each answers its queued
/// commands and closes its file) and then releases the data dir lock.
#[derive(Debug)]
pub struct Stores {
    /// Per-table typed handles.
    pub agent_mailbox: AgentMailbox,
    #[allow(missing_docs)]
    pub message_history: MessageHistory,
    #[allow(missing_docs)]
    pub agent_channels: AgentChannels,
    #[allow(missing_docs)]
    pub channel_history: ChannelHistory,
    #[allow(missing_docs)]
    pub agentcom_config: AgentcomConfig,
    #[allow(missing_docs)]
    pub thread_messages: ThreadMessages,
    #[allow(missing_docs)]
    pub thread_replies: ThreadReplies,
    #[allow(missing_docs)]
    pub task_queue: TaskQueue,
    #[allow(missing_docs)]
    pub task_dead_letter: TaskDeadLetter,
    data_dir: PathBuf,
    /// The I/O pacer every owner reports its commits to and every maintenance job paces by.
    pacer: Arc<Pacer>,
    // Declared last: released only after every owner above has closed its file.
    _lock: File,
}

/// The file of `table` in `data_dir`.
pub fn table_path(data_dir: &Path, table: &str) -> PathBuf {
    data_dir.join(format!("{table}.redb"))
}

/// The change-log directory of `table` in `data_dir`.
pub fn change_log_dir(data_dir: &Path, table: &str) -> PathBuf {
    data_dir.join("changelog").join(table)
}

/// The birth marker of `table` in `data_dir` (see the module doc).
pub fn birth_marker(data_dir: &Path, table: &str) -> PathBuf {
    data_dir.join(format!(".{table}.created"))
}

/// Write the birth marker of a table whose file just opened, if it is not there yet.
fn mark_born(data_dir: &Path, table: &str) -> std::io::Result<()> {
    let marker = birth_marker(data_dir, table);
    if marker.exists() {
        return Ok(());
    }
    store_core::fsutil::write_file_atomically(&marker, b"")
}

/// Take the exclusive lock of a data dir, creating the dir if needed (mode 0700; an
/// existing dir open to group or others is made private, with a warning).
pub fn lock_data_dir(data_dir: &Path) -> Result<File, OpenStoresError> {
    let io = |source| OpenStoresError::Io {
        path: data_dir.to_path_buf(),
        source,
    };
    let existed = data_dir.is_dir();
    if existed {
        if store_core::fsutil::make_private(data_dir, store_core::fsutil::DIR_MODE).map_err(io)? {
            tracing::warn!(data_dir = %data_dir.display(), "the data dir was open to group or others; made private (0700)");
        }
    } else {
        store_core::fsutil::create_dir_durably(data_dir).map_err(io)?;
    }
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join(".lock"))
        .map_err(io)?;
    // A lock is tied to the open file, and a process that forks copies its open files: a
    // child forked by another thread of this process holds a just-closed lock until it
    // execs (microseconds, more on a loaded machine). So a busy lock is asked for again
    // for a moment before it is reported as held by someone else.
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(lock),
            Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(OpenStoresError::Locked(data_dir.to_path_buf()));
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
    }
}

/// How long a busy data dir lock is asked for again before [`OpenStoresError::Locked`].
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

impl Stores {
    /// Open (creating on first use) the nine tables of `data_dir`. Fails if another process
    /// has the data dir open. A table whose file is corrupt still gets an owner, reported
    /// through `options.corruption_reports` and serving errors until it is restored.
    pub fn open(data_dir: &Path, options: StoresOptions) -> Result<Stores, OpenStoresError> {
        let lock = lock_data_dir(data_dir)?;
        let mut owner = options.owner.clone();
        owner.store = StoreOptions {
            check_integrity_on_open: options.check_integrity_on_open,
            ..owner.store
        };
        owner.corruption_reports = options.corruption_reports.clone();
        let start = |table: &'static str| {
            let mut config = owner.clone();
            config.store.create_if_missing = !birth_marker(data_dir, table).exists();
            if let Some(&bytes) = options.cache_bytes_per_table.get(table) {
                config.store.cache_bytes = bytes;
            }
            if let Some(log) = &options.change_log {
                config.journal = Some(crate::owner::JournalConfig {
                    dir: change_log_dir(data_dir, table),
                    options: log.clone(),
                });
            }
            let handle = OwnerHandle::start::<store_core::RedbStore>(
                table,
                &table_path(data_dir, table),
                config,
            );
            if handle.shared().status() == crate::TableStatus::Ok
                && let Err(e) = mark_born(data_dir, table)
            {
                tracing::warn!(table, error = %e, "cannot write the table's birth marker");
            }
            handle
        };
        let dead_letter = start("task_dead_letter");
        let stores = Stores {
            agent_mailbox: AgentMailbox::new(start("agent_mailbox")),
            message_history: MessageHistory::new(start("message_history")),
            agent_channels: AgentChannels::new(start("agent_channels")),
            channel_history: ChannelHistory::new(start("channel_history")),
            agentcom_config: AgentcomConfig::new(start("agentcom_config")),
            thread_messages: ThreadMessages::new(start("thread_messages")),
            thread_replies: ThreadReplies::new(start("thread_replies")),
            task_queue: TaskQueue::new(start("task_queue"), dead_letter.clone()),
            task_dead_letter: TaskDeadLetter::new(dead_letter),
            data_dir: data_dir.to_path_buf(),
            pacer: owner.pacer.clone(),
            _lock: lock,
        };
        // A task whose move to the dead-letter table was interrupted by a crash is finished
        // now, before the hub uses the queue.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        match stores.task_queue.resume_dead_lettering(now_ms) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                n_tasks = n,
                "finished interrupted moves to task_dead_letter"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot finish interrupted dead-letter moves"),
        }
        Ok(stores)
    }

    /// The data dir these tables live in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The I/O pacer shared by the nine owners ([`OwnerConfig::pacer`]): maintenance jobs
    /// pace their reads and writes by it.
    pub fn pacer(&self) -> &Arc<Pacer> {
        &self.pacer
    }

    /// The owner of `table`, if it is one of the nine.
    pub fn owner(&self, table: &str) -> Option<&OwnerHandle> {
        self.owners().into_iter().find(|o| o.table() == table)
    }

    /// The nine owners, in [`TABLE_NAMES`] order.
    pub fn owners(&self) -> Vec<&OwnerHandle> {
        let owners = vec![
            self.agent_mailbox.owner(),
            self.message_history.owner(),
            self.agent_channels.owner(),
            self.channel_history.owner(),
            self.agentcom_config.owner(),
            self.thread_messages.owner(),
            self.thread_replies.owner(),
            self.task_queue.owner(),
            self.task_dead_letter.owner(),
        ];
        debug_assert!(
            owners
                .iter()
                .map(|o| o.table())
                .eq(TABLE_NAMES.iter().copied())
        );
        owners
    }

    /// Close every owner, waiting for each to answer its queue and close its file.
    pub fn close(self) {
        drop(self);
    }
}
