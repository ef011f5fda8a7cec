//! `message_history`: every message the hub delivered, queried by time range, overall or for
//! one agent (as sender or recipient).
//!
//! Key layout:
//!
//! - `[0x00]` → the last message id assigned (`u64` big-endian).
//! - `[0x01] u64(sent_at_ms) u64(id)` → [`HistoryMessage`] (postcard), in time order.
//! - `[0x02] str(agent) u64(sent_at_ms) u64(id)` → empty: the per-agent index, one entry for
//!   the sender and one for the recipient (a single one when they are the same agent).

use serde::{Deserialize, Serialize};

use super::keys::{Key, KeyReader, u64_value};
use super::{JobError, Sequenced, decode, encode, mutate, query, table_handle};
use crate::error::CallError;

const LAST_ID: u8 = 0x00;
const BY_TIME: u8 = 0x01;
const BY_AGENT: u8 = 0x02;

/// One delivered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryMessage {
    /// The sending agent.
    pub from: String,
    /// The receiving agent (or channel).
    pub to: String,
    /// The message body.
    pub body: String,
    /// When it was sent, in milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
}

table_handle!(
    /// `message_history`: every message, queried by time range.
    MessageHistory
);

impl MessageHistory {
    /// Store `message`; returns the id assigned to it (1 for the first).
    pub fn store(&self, message: HistoryMessage) -> Result<u64, CallError> {
        mutate(&self.owner, move |batch| {
            let counter = Key::tag(LAST_ID);
            let id = match batch.get(counter.bytes())? {
                Some(bytes) => u64_value(&bytes)? + 1,
                None => 1,
            };
            let at = message.sent_at_ms;
            batch.put(counter.bytes(), &id.to_be_bytes())?;
            batch.put(Key::tag(BY_TIME).u64(at).u64(id).bytes(), &encode(&message))?;
            batch.put(
                Key::tag(BY_AGENT)
                    .str(&message.from)
                    .u64(at)
                    .u64(id)
                    .bytes(),
                &[],
            )?;
            if message.to != message.from {
                batch.put(
                    Key::tag(BY_AGENT).str(&message.to).u64(at).u64(id).bytes(),
                    &[],
                )?;
            }
            Ok::<_, JobError<CallError>>(id)
        })
    }

    /// Up to `limit` messages sent in `[from_ms, to_ms)`, oldest first.
    pub fn query(
        &self,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<Vec<Sequenced<HistoryMessage>>, CallError> {
        query(&self.owner, move |view| {
            view.scan(&Key::tag(BY_TIME).range_between(from_ms, to_ms), limit)?
                .iter()
                .map(|r| {
                    let mut key = KeyReader::new(&r.key, BY_TIME)?;
                    key.u64()?;
                    Ok(Sequenced {
                        seq: key.u64()?,
                        record: decode(&r.value)?,
                    })
                })
                .collect()
        })
    }

    /// Up to `limit` messages sent or received by `agent` in `[from_ms, to_ms)`, oldest first.
    pub fn query_agent(
        &self,
        agent: &str,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<Vec<Sequenced<HistoryMessage>>, CallError> {
        let agent = agent.to_string();
        query(&self.owner, move |view| {
            let index = Key::tag(BY_AGENT).str(&agent).range_between(from_ms, to_ms);
            let mut out = Vec::new();
            for r in view.scan(&index, limit)? {
                let mut key = KeyReader::new(&r.key, BY_AGENT)?;
                key.str()?;
                let (at, id) = (key.u64()?, key.u64()?);
                let primary = Key::tag(BY_TIME).u64(at).u64(id);
                let bytes = view.get(primary.bytes())?.ok_or_else(|| {
                    CallError::Decode(format!("index entry of message {id} has no message"))
                })?;
                out.push(Sequenced {
                    seq: id,
                    record: decode(&bytes)?,
                });
            }
            Ok(out)
        })
    }
}
