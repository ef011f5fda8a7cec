//! The nine hub tables: each a small spec (name, key layout, serde record) over the one
//! generic owner, with a typed handle for what the hub does with it.
//!
//! # Layout
//!
//! - [`keys`]: the order-preserving key encoding every table uses (tag byte, escaped strings,
//!   big-endian integers), and its reader.
//! - [`seqlog`]: a per-scope log with its own sequence counter, shared by the mailbox, the
//!   channel history and the thread messages.
//! - [`mailbox`] (`agent_mailbox`), [`history`] (`message_history`), [`channels`]
//!   (`agent_channels`, `channel_history`), [`config`] (`agentcom_config`), [`threads`]
//!   (`thread_messages`, `thread_replies`), [`tasks`] (`task_queue`, `task_dead_letter`).
//!
//! Every module documents its key layout. Records are encoded with postcard.
//!
//! # Writing a typed operation
//!
//! Reads go through `query`, writes through `mutate` (crate-private helpers of this module);
//! both run a closure on the owner thread. A write closure runs inside the owner's open
//! transaction, so a read-modify-write in it is atomic, and it shares the durable commit of
//! the writes queued with it (group commit).
//! It may run more than once (see [`OwnerHandle::write`]) and must decide to reject (a domain
//! error, [`JobError::Reject`]) before its first write: a rejected job's batch still commits,
//! with the other jobs of the group, so writes made before the rejection would stick.

pub mod channels;
pub mod config;
pub mod history;
pub mod keys;
pub mod mailbox;
pub mod seqlog;
pub mod tasks;
pub mod threads;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use store_core::{ReadView, WriteBatch, WriteError};

use crate::error::CallError;
use crate::owner::OwnerHandle;

pub use channels::{AgentChannels, ChannelHistory, ChannelMessage, Subscription};
pub use config::{AgentcomConfig, ConfigEntry};
pub use history::{HistoryMessage, MessageHistory};
pub use mailbox::{AgentMailbox, MailboxMessage};
pub use tasks::{
    DeadTask, FailOutcome, NewTask, Task, TaskDeadLetter, TaskError, TaskQueue, TaskState,
};
pub use threads::{Reply, ReplyRecord, ThreadMessage, ThreadMessages, ThreadReplies};

/// The nine table names, in the order the hub lists them.
pub const TABLE_NAMES: [&str; 9] = [
    "agent_mailbox",
    "message_history",
    "agent_channels",
    "channel_history",
    "agentcom_config",
    "thread_messages",
    "thread_replies",
    "task_queue",
    "task_dead_letter",
];

/// Encode a record for storage.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    postcard::to_stdvec(record).expect("serializing a record into memory cannot fail")
}

/// Decode a stored record.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CallError> {
    postcard::from_bytes(bytes).map_err(CallError::Record)
}

/// A record with the sequence number (or id) its table assigned to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequenced<T> {
    /// Assigned by the table, strictly increasing within its scope, starting at 1.
    pub seq: u64,
    /// The record.
    pub record: T,
}

/// Why a write closure gave up.
#[derive(Debug)]
pub enum JobError<E> {
    /// A storage failure: the whole batch is rolled back and every job of the group gets it.
    Abort(WriteError),
    /// A domain error (or a record that does not decode): this job answers with it; the batch
    /// still commits with the other jobs of the group. Only valid before the job's first write.
    Reject(E),
}

impl<E> From<WriteError> for JobError<E> {
    fn from(e: WriteError) -> Self {
        JobError::Abort(e)
    }
}

impl<E: From<CallError>> From<CallError> for JobError<E> {
    fn from(e: CallError) -> Self {
        JobError::Reject(E::from(e))
    }
}

/// Run a read-only closure on the owner thread against the committed state. Corruption the
/// closure meets is seen by the owner, which reports it and answers
/// [`CallError::Corrupted`], even if the closure converted the error into its own type.
pub(crate) fn query<T, E, F>(owner: &OwnerHandle, f: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<CallError> + Send + 'static,
    F: FnOnce(&dyn ReadView) -> Result<T, E> + Send + 'static,
{
    owner
        .read(move |view| Ok(f(view)))
        .unwrap_or_else(|e| Err(E::from(e)))
}

/// Run a write closure inside the owner's transaction; returns once its commit is durable.
pub(crate) fn mutate<T, E, F>(owner: &OwnerHandle, mut f: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<CallError> + Send + 'static,
    F: FnMut(&mut dyn WriteBatch) -> Result<T, JobError<E>> + Send + 'static,
{
    owner
        .write(move |batch| match f(batch) {
            Ok(value) => Ok(Ok(value)),
            Err(JobError::Reject(e)) => Ok(Err(e)),
            Err(JobError::Abort(e)) => Err(e),
        })
        .unwrap_or_else(|e| Err(E::from(e)))
}

/// Point read of a typed record through a read view.
pub(crate) fn get_record<T: DeserializeOwned>(
    view: &dyn ReadView,
    key: &[u8],
) -> Result<Option<T>, CallError> {
    view.get(key)?.map(|bytes| decode(&bytes)).transpose()
}

/// Point read of a typed record inside a write batch.
pub(crate) fn get_record_in<T: DeserializeOwned, E: From<CallError>>(
    batch: &dyn WriteBatch,
    key: &[u8],
) -> Result<Option<T>, JobError<E>> {
    match batch.get(key)? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(None),
    }
}

macro_rules! table_handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            owner: $crate::owner::OwnerHandle,
        }

        impl $name {
            /// Wrap the owner of this table.
            pub fn new(owner: $crate::owner::OwnerHandle) -> Self {
                Self { owner }
            }

            /// The generic owner behind this handle (maintenance commands, raw access).
            pub fn owner(&self) -> &$crate::owner::OwnerHandle {
                &self.owner
            }
        }
    };
}
pub(crate) use table_handle;
