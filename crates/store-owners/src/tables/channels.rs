//! `agent_channels` (who is subscribed to which channel) and `channel_history` (each
//! channel's message log).
//!
//! `agent_channels` key layout: one record per subscription, indexed both ways and written in
//! the same transaction, so either question is one prefix scan:
//!
//! - `[0x01] str(channel) str(agent)` → [`Subscription`] (postcard).
//! - `[0x02] str(agent) str(channel)` → empty.
//!
//! `channel_history` key layout (a [`seqlog`] scoped by channel):
//!
//! - `[0x00] str(channel)` → last sequence number assigned in the channel (`u64` big-endian).
//! - `[0x01] str(channel) u64(seq)` → [`ChannelMessage`] (postcard).

use serde::{Deserialize, Serialize};
use store_core::ReadView;

use super::keys::{Key, KeyReader};
use super::{JobError, Sequenced, encode, mutate, query, seqlog, table_handle};
use crate::error::CallError;

const BY_CHANNEL: u8 = 0x01;
const BY_AGENT: u8 = 0x02;

/// A subscription of an agent to a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// When the agent subscribed, in milliseconds since the Unix epoch.
    pub since_ms: u64,
}

/// One message posted to a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMessage {
    /// The posting agent.
    pub from: String,
    /// The message body.
    pub body: String,
    /// When it was posted, in milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
}

table_handle!(
    /// `agent_channels`: channel subscriptions.
    AgentChannels
);

impl AgentChannels {
    /// Subscribe `agent` to `channel`; returns false if it already was (the original
    /// subscription time is kept).
    pub fn subscribe(&self, agent: &str, channel: &str, since_ms: u64) -> Result<bool, CallError> {
        let (agent, channel) = (agent.to_string(), channel.to_string());
        mutate(&self.owner, move |batch| {
            let by_channel = Key::tag(BY_CHANNEL).str(&channel).str(&agent);
            if batch.get(by_channel.bytes())?.is_some() {
                return Ok(false);
            }
            batch.put(by_channel.bytes(), &encode(&Subscription { since_ms }))?;
            batch.put(Key::tag(BY_AGENT).str(&agent).str(&channel).bytes(), &[])?;
            Ok::<_, JobError<CallError>>(true)
        })
    }

    /// Unsubscribe `agent` from `channel`; returns whether it was subscribed.
    pub fn unsubscribe(&self, agent: &str, channel: &str) -> Result<bool, CallError> {
        let (agent, channel) = (agent.to_string(), channel.to_string());
        mutate(&self.owner, move |batch| {
            let existed = batch.delete(Key::tag(BY_CHANNEL).str(&channel).str(&agent).bytes())?;
            batch.delete(Key::tag(BY_AGENT).str(&agent).str(&channel).bytes())?;
            Ok::<_, JobError<CallError>>(existed)
        })
    }

    /// The agents subscribed to `channel`, in name order.
    pub fn subscribers(&self, channel: &str) -> Result<Vec<String>, CallError> {
        let channel = channel.to_string();
        query(&self.owner, move |view| {
            second_components(view, Key::tag(BY_CHANNEL).str(&channel), BY_CHANNEL)
        })
    }

    /// The channels `agent` is subscribed to, in name order.
    pub fn channels_of(&self, agent: &str) -> Result<Vec<String>, CallError> {
        let agent = agent.to_string();
        query(&self.owner, move |view| {
            second_components(view, Key::tag(BY_AGENT).str(&agent), BY_AGENT)
        })
    }
}

/// The second string component of every key in `scope` (a tag and one string).
fn second_components(view: &dyn ReadView, scope: Key, tag: u8) -> Result<Vec<String>, CallError> {
    view.scan(&scope.range(), usize::MAX)?
        .iter()
        .map(|r| {
            let mut key = KeyReader::new(&r.key, tag)?;
            key.str()?;
            key.str()
        })
        .collect()
}

table_handle!(
    /// `channel_history`: per-channel message log.
    ChannelHistory
);

impl ChannelHistory {
    /// Append `message` to `channel`'s log; returns its sequence number (1 for the first).
    pub fn append(&self, channel: &str, message: ChannelMessage) -> Result<u64, CallError> {
        let channel = channel.to_string();
        mutate(&self.owner, move |batch| {
            seqlog::append(batch, &channel, &message)
        })
    }

    /// Up to `limit` messages of `channel` with a sequence number above `after`, oldest first.
    pub fn read(
        &self,
        channel: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Sequenced<ChannelMessage>>, CallError> {
        let channel = channel.to_string();
        query(&self.owner, move |view| {
            seqlog::read_after(view, &channel, after, limit)
        })
    }
}
