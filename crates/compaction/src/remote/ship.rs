//! Shipping the tables' change logs off-site, so that a machine lost whole loses about
//! `sync_interval` of acknowledged writes rather than everything since the last backup.
//!
//! [`Offsite::ship_logs`] is one pass: for each table with a change log, the groups after
//! its last shipped position up to the log's head (as the owner last published it, so never
//! a group whose commit failed and was taken back) are read from the local segments with
//! [`LogReader`] and PUT as chunks (see `chunks.rs`). The last shipped position of a table
//! is found by listing its chunks the first time, then kept. [`Shipper`] is the thread that
//! runs a pass every `sync_interval`, and one last pass when it is stopped.
//!
//! A pass reads segment files only: it takes no maintenance lock and never waits for an
//! owner, so a bucket that is down or slow holds up nothing but shipping. A failure is a
//! log line, a count and the last error in `/health`; the next pass starts again where the
//! bucket ends. Local pruning keeps every group not shipped yet
//! ([`crate::Maintainer::log_prune_bound`]).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crossbeam_channel::{Receiver, select};
use serde::{Deserialize, Serialize};
use store_core::changelog::{LogCursor, LogGroup, LogReader};
use store_owners::TABLE_NAMES;

use super::chunks::{Chunk, list_chunks, put_chunk};
use super::error::ChunkError;
use super::offsite::Offsite;
use super::worker::Worker;
use crate::report::ShippedLog;

/// Encoded bytes of groups past which a chunk is closed and another started, so that a
/// long backlog (a first start, a bucket back after an outage) goes up in bounded pieces.
const CHUNK_BYTES: usize = 8 << 20;

/// One chunk shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippedChunk {
    /// The table.
    pub table: String,
    /// Its first group.
    pub first: u64,
    /// Its last group.
    pub last: u64,
    /// Its size in the bucket.
    pub bytes: u64,
}

/// A table whose shipment failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipFailure {
    /// The table.
    pub table: String,
    /// Why.
    pub error: String,
}

/// What one pass shipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipPass {
    /// The chunks put in the bucket, table by table.
    pub chunks: Vec<ShippedChunk>,
    /// The tables that failed (tried again by the next pass).
    pub failures: Vec<ShipFailure>,
}

impl Offsite {
    /// Ship every table's change log up to its head (see the module doc). One pass at a
    /// time: a second caller waits for the first.
    pub fn ship_logs(&self) -> ShipPass {
        let mut cursors = self.ship_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut pass = ShipPass::default();
        for table in TABLE_NAMES {
            let mut shipped = Vec::new();
            let cursor = cursors.remove(table);
            let result = self.ship_table(table, cursor, &mut shipped);
            if let Ok(Some(cursor)) = &result {
                cursors.insert(table.to_string(), *cursor);
            }
            pass.chunks
                .extend(shipped.into_iter().map(|c| ShippedChunk {
                    table: table.to_string(),
                    first: c.first,
                    last: c.last,
                    bytes: c.bytes,
                }));
            if let Err(e) = result {
                tracing::error!(table, error = %e, "change log not shipped off-site");
                let mut status = self.status();
                status.ship_failures += 1;
                status.last_ship_failure_at = Some(SystemTime::now());
                status.last_ship_error = Some(format!("{table}: {e}"));
                drop(status);
                let bucket_wide = matches!(&e, ChunkError::Remote(r) if r.is_bucket_wide());
                pass.failures.push(ShipFailure {
                    table: table.to_string(),
                    error: e.to_string(),
                });
                if bucket_wide {
                    // The other tables would only fail the same way, one timeout after the
                    // other; the next pass tries again.
                    break;
                }
            }
        }
        if pass.failures.is_empty() {
            let mut status = self.status();
            status.last_ship_failure_at = None;
            status.last_ship_error = None;
        }
        pass
    }

    /// The last group of `table` in the bucket, as last known.
    fn shipped_position(&self, table: &str) -> Option<u64> {
        let status = self.status();
        status
            .logs
            .iter()
            .find(|l| l.table == table)
            .map(|l| l.position)
    }

    /// Ship `table`'s groups after its last shipped position up to its head, reading the
    /// local log from `cursor` when it is where that position ends; the chunks put in the
    /// bucket go to `shipped`, even when a later one fails. Returns where the last group
    /// shipped ends, for the next pass.
    fn ship_table(
        &self,
        table: &str,
        cursor: Option<LogCursor>,
        shipped: &mut Vec<Chunk>,
    ) -> Result<Option<LogCursor>, ChunkError> {
        // Read before the head: everything acknowledged by now is at or before it.
        let seen_at = SystemTime::now();
        let Some(log) = self
            .maintainer
            .owner_of(table)
            .and_then(|owner| owner.shared().log())
        else {
            return Ok(None);
        };
        let mut position = match self.shipped_position(table) {
            Some(p) => p,
            None => {
                let chunks = list_chunks(&self.bucket, table)?;
                let p = chunks.iter().map(|c| c.last).max().unwrap_or(0);
                self.record_position(table, p, log.head, None, None);
                p
            }
        };
        if log.head < position {
            // The bucket holds groups this log never had: another history (a data dir
            // recovered short of a gap, or a second hub on the same prefix).
            tracing::warn!(
                table,
                head = log.head,
                shipped = position,
                "change log behind what the bucket holds; nothing shipped until it passes"
            );
            return Ok(None);
        }
        let first_kept = log.first.map_or(log.head, |first| first - 1);
        if position < first_kept {
            // The groups between were pruned before shipping started (or the log started
            // after them): they live in the backups, never in the bucket's log.
            tracing::warn!(
                table,
                from = position + 1,
                through = first_kept,
                "change-log groups no longer local, not shipped"
            );
            position = first_kept;
        }
        let cursor = cursor.filter(|c| c.seq == position);
        if position >= log.head {
            self.record_position(table, position, log.head, Some(seen_at), None);
            return Ok(cursor);
        }
        let mut reader = match cursor {
            Some(cursor) => LogReader::resume(&log.dir, cursor),
            None => LogReader::open(&log.dir, position),
        }
        .map_err(ChunkError::Log)?;
        let mut batch: Vec<LogGroup> = Vec::new();
        let mut batch_bytes = 0;
        let mut last_cursor = None;
        while let Some(group) = reader.next() {
            let group = match group {
                Ok(g) => g,
                Err(e) => {
                    self.ship_batch(table, &mut batch, log.head, shipped)?;
                    return Err(ChunkError::Log(e));
                }
            };
            if group.seq > log.head {
                break;
            }
            last_cursor = reader.cursor();
            batch_bytes += group.encoded_len();
            batch.push(group);
            if batch_bytes >= CHUNK_BYTES {
                self.ship_batch(table, &mut batch, log.head, shipped)?;
                batch_bytes = 0;
            }
        }
        self.ship_batch(table, &mut batch, log.head, shipped)?;
        let reached = self.shipped_position(table).unwrap_or(position);
        if reached >= log.head {
            self.record_position(table, reached, log.head, Some(seen_at), None);
        }
        Ok(last_cursor.filter(|c| c.seq == reached))
    }

    /// Put `batch` (emptied) in the bucket as one chunk, and record it.
    fn ship_batch(
        &self,
        table: &str,
        batch: &mut Vec<LogGroup>,
        head: u64,
        shipped: &mut Vec<Chunk>,
    ) -> Result<(), ChunkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let chunk = put_chunk(&self.bucket, &self.encoding, table, batch)?;
        batch.clear();
        tracing::debug!(
            table,
            first = chunk.first,
            last = chunk.last,
            bytes = chunk.bytes,
            "change log shipped"
        );
        self.record_position(table, chunk.last, head, None, Some(&chunk));
        shipped.push(chunk);
        Ok(())
    }

    /// Record that the bucket holds `table`'s log through `position`, for `/health` and for
    /// local pruning.
    fn record_position(
        &self,
        table: &str,
        position: u64,
        head: u64,
        current_at: Option<SystemTime>,
        chunk: Option<&Chunk>,
    ) {
        self.maintainer.record_shipped(table, position);
        let mut status = self.status();
        let index = match status.logs.iter().position(|l| l.table == table) {
            Some(i) => i,
            None => {
                status.logs.push(ShippedLog {
                    table: table.to_string(),
                    position,
                    head,
                    current_at: None,
                    chunks: 0,
                    bytes: 0,
                });
                status.logs.sort_by_key(|l| {
                    TABLE_NAMES
                        .iter()
                        .position(|n| *n == l.table)
                        .unwrap_or(usize::MAX)
                });
                status
                    .logs
                    .iter()
                    .position(|l| l.table == table)
                    .expect("just pushed")
            }
        };
        let entry = &mut status.logs[index];
        entry.position = position;
        entry.head = head.max(position);
        if current_at.is_some() {
            entry.current_at = current_at;
        }
        if let Some(chunk) = chunk {
            entry.chunks += 1;
            entry.bytes += chunk.bytes;
        }
    }
}

/// The shipping thread; dropping it runs one last pass (a few seconds at most, see
/// `worker.rs`) and stops.
#[derive(Debug)]
pub struct Shipper {
    _worker: Worker,
}

impl Shipper {
    /// Start shipping `offsite`'s change logs every `sync_interval`.
    pub fn start(offsite: Arc<Offsite>) -> std::io::Result<Shipper> {
        let worker = Worker::spawn("remote-ship", move |stop| run(&offsite, stop))?;
        Ok(Shipper { _worker: worker })
    }
}

fn run(offsite: &Offsite, stop: &Receiver<()>) {
    let interval = offsite.config.sync_interval;
    loop {
        let started = Instant::now();
        offsite.ship_logs();
        let wait = interval.saturating_sub(started.elapsed());
        select! {
            recv(stop) -> _ => {
                // What was acknowledged before the stop goes up too.
                offsite.ship_logs();
                return;
            }
            default(wait) => {}
        }
    }
}
