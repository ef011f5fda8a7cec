//! Opening the nine tables of a data dir: one owner each, files `<data_dir>/<table>.redb`,
//! and a lock file so that a second process cannot open the same data dir.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use crossbeam_channel::Sender;
use store_core::StoreOptions;

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
    // Declared last: released only after every owner above has closed its file.
    _lock: File,
}

/// The file of `table` in `data_dir`.
pub fn table_path(data_dir: &Path, table: &str) -> PathBuf {
    data_dir.join(format!("{table}.redb"))
}

/// Take the exclusive lock of a data dir, creating the dir if needed.
pub fn lock_data_dir(data_dir: &Path) -> Result<File, OpenStoresError> {
    let io = |source| OpenStoresError::Io {
        path: data_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join(".lock"))
        .map_err(io)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(TryLockError::WouldBlock) => Err(OpenStoresError::Locked(data_dir.to_path_buf())),
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

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
            OwnerHandle::start::<store_core::RedbStore>(
                table,
                &table_path(data_dir, table),
                owner.clone(),
            )
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
