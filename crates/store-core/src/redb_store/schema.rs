//! The layout of a table file on redb, shared by the store, its batches and its snapshots:
//! the `data` table of byte keys and values, the `meta` table of counters, and the reads
//! every one of them does (counters at open, point reads, ordered scans).

use redb::{ReadTransaction, ReadableTable, TableDefinition};

use crate::error::{ReadError, WriteError};
use crate::metrics::TableCounters;
use crate::store::{KeyRange, Record};

pub(super) const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(super) const META_LIVE_BYTES: &str = "live_bytes";
pub(super) const META_DEAD_BYTES: &str = "dead_bytes";
pub(super) const META_DEAD_RECORDS: &str = "dead_records";
/// The last change-log group the file holds.
pub(super) const META_LOG_POSITION: &str = "log_position";

/// The counters a file's `meta` table holds (live bytes counted once for a file written by
/// another tool).
pub(super) fn read_counters(
    data: &impl ReadableTable<&'static [u8], &'static [u8]>,
    meta: &impl ReadableTable<&'static str, u64>,
) -> Result<TableCounters, WriteError> {
    let get =
        |name: &str| -> Result<Option<u64>, WriteError> { Ok(meta.get(name)?.map(|v| v.value())) };
    let records = data.len()?;
    let live_bytes = match get(META_LIVE_BYTES)? {
        Some(v) => v,
        // A file written by another tool: count once.
        None => {
            let mut total = 0;
            for entry in data.iter()? {
                let (k, v) = entry?;
                total += (k.value().len() + v.value().len()) as u64;
            }
            total
        }
    };
    Ok(TableCounters {
        records,
        live_bytes,
        dead_records: get(META_DEAD_RECORDS)?.unwrap_or(0),
        dead_bytes: get(META_DEAD_BYTES)?.unwrap_or(0),
    })
}

pub(super) fn snapshot_get(
    txn: &ReadTransaction,
    key: &[u8],
) -> Result<Option<Vec<u8>>, ReadError> {
    let table = txn.open_table(DATA)?;
    Ok(table.get(key)?.map(|v| v.value().to_vec()))
}

/// A borrowed key or value of the data table.
type Guard<'a> = redb::AccessGuard<'a, &'static [u8]>;

pub(super) fn scan_table(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    range: &KeyRange,
    limit: usize,
) -> Result<Vec<Record>, ReadError> {
    if range.is_inverted() || limit == 0 {
        return Ok(Vec::new());
    }
    let bounds = (
        range.start.as_ref().map(|k| k.as_slice()),
        range.end.as_ref().map(|k| k.as_slice()),
    );
    let iter = table.range::<&[u8]>(bounds)?;
    let mut out = Vec::new();
    let mut push =
        |entry: Result<(Guard<'_>, Guard<'_>), redb::StorageError>| -> Result<bool, ReadError> {
            let (k, v) = entry?;
            out.push(Record {
                key: k.value().to_vec(),
                value: v.value().to_vec(),
            });
            Ok(out.len() < limit)
        };
    if range.reverse {
        for entry in iter.rev() {
            if !push(entry)? {
                break;
            }
        }
    } else {
        for entry in iter {
            if !push(entry)? {
                break;
            }
        }
    }
    Ok(out)
}
