//! Applying a change log to a table file: the groups after the file's log position, in
//! order, each setting the position it reached, committed in chunks without an fsync and made
//! durable once at the end.

use std::path::Path;

use super::error::LogError;
use super::read::LogReader;
use crate::error::WriteError;
use crate::store::{TableStore, WriteBatch, WriteOp};

/// Writes applied per commit while replaying.
const REPLAY_CHUNK_OPS: usize = 20_000;

/// Where a replay should stop (besides the end of the log).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayLimit {
    /// Apply no group committed after this instant (microseconds since the Unix epoch).
    pub until_micros: Option<u64>,
    /// Apply no group after this one.
    pub through: Option<u64>,
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct Replay {
    /// The file's log position before.
    pub from: u64,
    /// The file's log position after: the last group applied.
    pub position: u64,
    /// Groups applied.
    pub groups: u64,
    /// Writes applied.
    pub ops: u64,
    /// Commit time of the last group applied (0: none).
    pub last_micros: u64,
    /// Why the replay stopped before the end of the log, if it did: damage, or groups missing
    /// (the range after `position` is then not recovered).
    pub stopped: Option<LogError>,
}

/// Apply the groups of the log in `dir` after `store`'s log position, up to `limit`, and make
/// them durable. A log that cannot be read further ends the replay at its last good group
/// ([`Replay::stopped`] says why); only a failure of the store itself is an error.
pub fn replay<S: TableStore>(
    store: &mut S,
    dir: &Path,
    limit: ReplayLimit,
) -> Result<Replay, WriteError> {
    let from = store.log_position();
    let mut outcome = Replay {
        from,
        position: from,
        ..Replay::default()
    };
    let reader = match LogReader::open(dir, from) {
        Ok(r) => r,
        Err(e) => {
            outcome.stopped = Some(e);
            return Ok(outcome);
        }
    };
    let mut chunk: Vec<(u64, Vec<WriteOp>)> = Vec::new();
    let mut chunk_ops = 0;
    for group in reader {
        let group = match group {
            Ok(g) => g,
            Err(e) => {
                outcome.stopped = Some(e);
                break;
            }
        };
        if limit.through.is_some_and(|t| group.seq > t)
            || limit.until_micros.is_some_and(|u| group.unix_micros > u)
        {
            break;
        }
        outcome.groups += 1;
        outcome.ops += group.ops.len() as u64;
        outcome.position = group.seq;
        outcome.last_micros = group.unix_micros;
        chunk_ops += group.ops.len();
        chunk.push((group.seq, group.ops));
        if chunk_ops >= REPLAY_CHUNK_OPS {
            apply_chunk(store, &chunk)?;
            chunk.clear();
            chunk_ops = 0;
        }
    }
    apply_chunk(store, &chunk)?;
    store.sync()?;
    Ok(outcome)
}

/// Apply consecutive groups in one commit without an fsync.
fn apply_chunk<S: TableStore>(
    store: &mut S,
    groups: &[(u64, Vec<WriteOp>)],
) -> Result<(), WriteError> {
    let Some((last, _)) = groups.last() else {
        return Ok(());
    };
    let mut batch = store.begin_lazy_batch()?;
    for (_, ops) in groups {
        for op in ops {
            match op {
                WriteOp::Put { key, value } => batch.put(key, value)?,
                WriteOp::Delete { key } => {
                    batch.delete(key)?;
                }
            }
        }
    }
    batch.set_log_position(*last);
    batch.commit()
}
