//! `agent_mailbox`: each agent's queue of incoming messages. Enqueue assigns the next
//! sequence number of the agent; a reader polls after the last number it saw and acks up to
//! the last one it handled, which deletes them.
//!
//! Key layout (a [`seqlog`] scoped by agent):
//!
//! - `[0x00] str(agent)` → last sequence number assigned to the agent (`u64` big-endian).
//! - `[0x01] str(agent) u64(seq)` → [`MailboxMessage`] (postcard).

use serde::{Deserialize, Serialize};

use super::{Sequenced, mutate, query, seqlog, table_handle};
use crate::error::CallError;

/// One message waiting in an agent's mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxMessage {
    /// The sending agent.
    pub from: String,
    /// The message body.
    pub body: String,
    /// When it was sent, in milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
}

table_handle!(
    /// `agent_mailbox`: per-agent queue of messages.
    AgentMailbox
);

impl AgentMailbox {
    /// Append `message` to `agent`'s mailbox; returns its sequence number (1 for the first).
    /// Numbers are never reused, even after an ack emptied the mailbox.
    pub fn enqueue(&self, agent: &str, message: MailboxMessage) -> Result<u64, CallError> {
        let agent = agent.to_string();
        mutate(&self.owner, move |batch| {
            seqlog::append(batch, &agent, &message)
        })
    }

    /// Up to `limit` messages of `agent` with a sequence number above `after`, oldest first.
    pub fn poll(
        &self,
        agent: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Sequenced<MailboxMessage>>, CallError> {
        let agent = agent.to_string();
        query(&self.owner, move |view| {
            seqlog::read_after(view, &agent, after, limit)
        })
    }

    /// Delete `agent`'s messages up to and including `through`; returns how many were deleted.
    pub fn ack(&self, agent: &str, through: u64) -> Result<u64, CallError> {
        let agent = agent.to_string();
        mutate(&self.owner, move |batch| {
            seqlog::delete_through(batch, &agent, through)
        })
    }
}
