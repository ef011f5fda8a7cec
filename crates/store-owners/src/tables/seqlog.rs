//! A log per scope (an agent's mailbox, a channel, a thread) with its own sequence counter,
//! the shape three tables share.
//!
//! Key layout inside the table:
//!
//! - `[0x00] str(scope)` → the last sequence number assigned in the scope (`u64` big-endian).
//!   Kept apart from the entries so that numbers are never reused, even after every entry of
//!   the scope was deleted.
//! - `[0x01] str(scope) u64(seq)` → the entry (postcard), in sequence order.

use std::ops::Bound;

use serde::Serialize;
use serde::de::DeserializeOwned;
use store_core::{KeyRange, ReadView, WriteBatch};

use super::keys::{Key, KeyReader, u64_value};
use super::{JobError, Sequenced, decode, encode};
use crate::error::CallError;

const COUNTER: u8 = 0x00;
const ENTRY: u8 = 0x01;

fn counter_key(scope: &str) -> Key {
    Key::tag(COUNTER).str(scope)
}

fn entries(scope: &str) -> Key {
    Key::tag(ENTRY).str(scope)
}

/// Assign the next sequence number of `scope` and store `record` under it.
pub(crate) fn append<T: Serialize, E: From<CallError>>(
    batch: &mut dyn WriteBatch,
    scope: &str,
    record: &T,
) -> Result<u64, JobError<E>> {
    let counter = counter_key(scope);
    let last = match batch.get(counter.bytes())? {
        Some(bytes) => u64_value(&bytes)?,
        None => 0,
    };
    let seq = last + 1;
    batch.put(counter.bytes(), &seq.to_be_bytes())?;
    batch.put(entries(scope).u64(seq).bytes(), &encode(record))?;
    Ok(seq)
}

/// Up to `limit` entries of `scope` with a sequence number above `after`, in order.
pub(crate) fn read_after<T: DeserializeOwned>(
    view: &dyn ReadView,
    scope: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<Sequenced<T>>, CallError> {
    view.scan(&entries(scope).range_after(after), limit)?
        .into_iter()
        .map(|r| {
            let mut key = KeyReader::new(&r.key, ENTRY)?;
            key.str()?;
            let seq = key.u64()?;
            Ok(Sequenced {
                seq,
                record: decode(&r.value)?,
            })
        })
        .collect()
}

/// Delete every entry of `scope` up to and including `through`; returns how many went.
pub(crate) fn delete_through<E: From<CallError>>(
    batch: &mut dyn WriteBatch,
    scope: &str,
    through: u64,
) -> Result<u64, JobError<E>> {
    let scope_key = entries(scope);
    let range = KeyRange {
        start: Bound::Included(scope_key.clone().u64(0).into_bytes()),
        end: Bound::Included(scope_key.u64(through).into_bytes()),
        reverse: false,
    };
    let mut n_deleted = 0;
    for record in batch.scan(&range, usize::MAX)? {
        if batch.delete(&record.key)? {
            n_deleted += 1;
        }
    }
    Ok(n_deleted)
}
