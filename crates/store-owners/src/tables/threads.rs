//! `thread_messages` (the messages of each conversation thread, in order) and
//! `thread_replies` (the reply index: which messages answer which).
//!
//! `thread_messages` key layout (a [`seqlog`] scoped by thread):
//!
//! - `[0x00] str(thread)` → last sequence number assigned in the thread (`u64` big-endian).
//! - `[0x01] str(thread) u64(seq)` → [`ThreadMessage`] (postcard).
//!
//! `thread_replies` key layout:
//!
//! - `[0x01] str(parent) str(child)` → [`ReplyRecord`] (postcard): one entry per reply, the
//!   replies of a message in child-id order.

use serde::{Deserialize, Serialize};

use super::keys::{Key, KeyReader};
use super::{JobError, Sequenced, decode, encode, mutate, query, seqlog, table_handle};
use crate::error::CallError;

const REPLY: u8 = 0x01;

/// One message of a thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadMessage {
    /// The message's id (the one the reply index refers to).
    pub message_id: String,
    /// The sending agent.
    pub from: String,
    /// The message body.
    pub body: String,
    /// When it was sent, in milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
}

/// What the reply index stores for one reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyRecord {
    /// When the reply was recorded, in milliseconds since the Unix epoch.
    pub replied_at_ms: u64,
}

/// One reply of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The replying message's id.
    pub child: String,
    /// When the reply was recorded, in milliseconds since the Unix epoch.
    pub replied_at_ms: u64,
}

table_handle!(
    /// `thread_messages`: messages of conversation threads.
    ThreadMessages
);

impl ThreadMessages {
    /// Add `message` to `thread`; returns its position in the thread (1 for the first).
    pub fn add(&self, thread: &str, message: ThreadMessage) -> Result<u64, CallError> {
        let thread = thread.to_string();
        mutate(&self.owner, move |batch| {
            seqlog::append(batch, &thread, &message)
        })
    }

    /// Up to `limit` messages of `thread` after position `after` (0 for the start), in order.
    pub fn list(
        &self,
        thread: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Sequenced<ThreadMessage>>, CallError> {
        let thread = thread.to_string();
        query(&self.owner, move |view| {
            seqlog::read_after(view, &thread, after, limit)
        })
    }
}

table_handle!(
    /// `thread_replies`: the reply index of threads.
    ThreadReplies
);

impl ThreadReplies {
    /// Record that `child` replies to `parent`; returns false if that was already recorded
    /// (the first time is kept).
    pub fn record(&self, parent: &str, child: &str, replied_at_ms: u64) -> Result<bool, CallError> {
        let key = Key::tag(REPLY).str(parent).str(child);
        mutate(&self.owner, move |batch| {
            if batch.get(key.bytes())?.is_some() {
                return Ok(false);
            }
            batch.put(key.bytes(), &encode(&ReplyRecord { replied_at_ms }))?;
            Ok::<_, JobError<CallError>>(true)
        })
    }

    /// The replies of `parent`, in child-id order.
    pub fn replies(&self, parent: &str) -> Result<Vec<Reply>, CallError> {
        let scope = Key::tag(REPLY).str(parent);
        query(&self.owner, move |view| {
            view.scan(&scope.range(), usize::MAX)?
                .iter()
                .map(|r| {
                    let mut key = KeyReader::new(&r.key, REPLY)?;
                    key.str()?;
                    let child = key.str()?;
                    let record: ReplyRecord = decode(&r.value)?;
                    Ok(Reply {
                        child,
                        replied_at_ms: record.replied_at_ms,
                    })
                })
                .collect()
        })
    }
}
