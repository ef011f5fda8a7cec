//! `agentcom_config`: the hub's configuration keys, read with a default when unset.
//!
//! Key layout:
//!
//! - `[0x01] str(name)` → [`ConfigEntry`] (postcard), in name order.

use serde::{Deserialize, Serialize};

use super::keys::{Key, KeyReader};
use super::{JobError, decode, encode, get_record, get_record_in, mutate, query, table_handle};
use crate::error::CallError;

const ENTRY: u8 = 0x01;

/// One configuration value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// The value, as text (the hub parses it).
    pub value: String,
    /// When it was last set, in milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
}

table_handle!(
    /// `agentcom_config`: configuration keys with defaults.
    AgentcomConfig
);

impl AgentcomConfig {
    /// The entry of `name`, if set.
    pub fn get(&self, name: &str) -> Result<Option<ConfigEntry>, CallError> {
        let key = Key::tag(ENTRY).str(name);
        query(&self.owner, move |view| get_record(view, key.bytes()))
    }

    /// The value of `name`, or `default` when it is unset.
    pub fn get_or(&self, name: &str, default: &str) -> Result<String, CallError> {
        Ok(self
            .get(name)?
            .map_or_else(|| default.to_string(), |e| e.value))
    }

    /// Set `name`; returns the entry it replaced, if any.
    pub fn put(
        &self,
        name: &str,
        value: &str,
        updated_at_ms: u64,
    ) -> Result<Option<ConfigEntry>, CallError> {
        let key = Key::tag(ENTRY).str(name);
        let entry = ConfigEntry {
            value: value.to_string(),
            updated_at_ms,
        };
        mutate(&self.owner, move |batch| {
            let previous = get_record_in::<ConfigEntry, CallError>(batch, key.bytes())?;
            batch.put(key.bytes(), &encode(&entry))?;
            Ok::<_, JobError<CallError>>(previous)
        })
    }

    /// Unset `name`; returns whether it was set.
    pub fn remove(&self, name: &str) -> Result<bool, CallError> {
        let key = Key::tag(ENTRY).str(name);
        mutate(&self.owner, move |batch| {
            Ok::<_, JobError<CallError>>(batch.delete(key.bytes())?)
        })
    }

    /// Every entry, in name order.
    pub fn list(&self) -> Result<Vec<(String, ConfigEntry)>, CallError> {
        query(&self.owner, move |view| {
            view.scan(&Key::tag(ENTRY).range(), usize::MAX)?
                .iter()
                .map(|r| Ok((KeyReader::new(&r.key, ENTRY)?.str()?, decode(&r.value)?)))
                .collect()
        })
    }
}
