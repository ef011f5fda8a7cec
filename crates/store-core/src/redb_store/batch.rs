//! [`RedbBatch`]: one redb write transaction of a [`super::RedbStore`], keeping the `meta`
//! counters exact in the same commit as the data (so metrics never walk the file).

use redb::{ReadableTable, WriteTransaction};

use super::schema::{
    DATA, META, META_DEAD_BYTES, META_DEAD_RECORDS, META_LIVE_BYTES, META_LOG_POSITION, scan_table,
};
use crate::error::WriteError;
use crate::metrics::TableCounters;
use crate::store::{KeyRange, Record, WriteBatch};

/// An open redb write transaction with the counter bookkeeping of its writes.
pub struct RedbBatch<'a> {
    pub(super) txn: WriteTransaction,
    /// The store's counters, updated once the commit returned.
    pub(super) counters: &'a mut TableCounters,
    /// The counters as this batch's writes leave them.
    pub(super) pending: TableCounters,
    /// The store's log position, updated once the commit returned.
    pub(super) log_position: &'a mut u64,
    /// The log position this batch sets, if any.
    pub(super) pending_position: Option<u64>,
    /// Set when a commit without fsync returned (the store then owes a sync).
    pub(super) unsynced: Option<&'a mut bool>,
}

impl std::fmt::Debug for RedbBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbBatch")
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl WriteBatch for RedbBatch<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, WriteError> {
        let table = self.txn.open_table(DATA)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<Record>, WriteError> {
        let table = self.txn.open_table(DATA)?;
        Ok(scan_table(&table, range, limit)?)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), WriteError> {
        let mut table = self.txn.open_table(DATA)?;
        let old = table.insert(key, value)?.map(|v| v.value().len() as u64);
        let p = &mut self.pending;
        if let Some(old_len) = old {
            p.dead_records += 1;
            p.dead_bytes += key.len() as u64 + old_len;
            p.live_bytes -= key.len() as u64 + old_len;
        } else {
            p.records += 1;
        }
        p.live_bytes += (key.len() + value.len()) as u64;
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<bool, WriteError> {
        let mut table = self.txn.open_table(DATA)?;
        let old = table.remove(key)?.map(|v| v.value().len() as u64);
        if let Some(old_len) = old {
            let p = &mut self.pending;
            p.records -= 1;
            p.live_bytes -= key.len() as u64 + old_len;
            p.dead_records += 1;
            p.dead_bytes += key.len() as u64 + old_len;
        }
        Ok(old.is_some())
    }

    fn set_log_position(&mut self, seq: u64) {
        self.pending_position = Some(seq);
    }

    fn commit(self) -> Result<(), WriteError> {
        {
            let mut meta = self.txn.open_table(META)?;
            meta.insert(META_LIVE_BYTES, self.pending.live_bytes)?;
            meta.insert(META_DEAD_BYTES, self.pending.dead_bytes)?;
            meta.insert(META_DEAD_RECORDS, self.pending.dead_records)?;
            if let Some(seq) = self.pending_position {
                meta.insert(META_LOG_POSITION, seq)?;
            }
            // Make sure the data table exists even for an empty first commit.
            self.txn.open_table(DATA)?;
        }
        self.txn.commit()?;
        *self.counters = self.pending;
        if let Some(seq) = self.pending_position {
            *self.log_position = seq;
        }
        if let Some(unsynced) = self.unsynced {
            *unsynced = true;
        }
        Ok(())
    }

    fn abort(self) {
        let _ = self.txn.abort();
    }
}
