//! The owner's side of its table's change log ([`store_core::changelog`]): [`Journal`]
//! appends each write group before the table file commits it (the fsync a write waits for),
//! brings a file up to the log after every open and restore, makes the file's lazy commits
//! durable now and then, and prunes what no restore needs any more.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use store_core::changelog::{Appended, ChangeLog, LogError, LogOptions, ReplayLimit, replay};
use store_core::{KeyRange, TableStore, WriteBatch, WriteError, WriteOp};

use crate::shared::{LogGap, LogProgress, LogState, Publisher};

/// Longest a table file's commits stay lazy (in the log only) before the owner makes them
/// durable in the file too: bounds the replay at open and keeps redb reusing pages.
pub(super) const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Records per scan while comparing two files for [`Journal::log_difference`].
const DIFF_CHUNK: usize = 10_000;

/// Where a table's change log lives and how it writes.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// The table's log directory (`<data_dir>/changelog/<table>`).
    pub dir: PathBuf,
    /// Segment size.
    pub options: LogOptions,
}

/// An owner's change log.
#[derive(Debug)]
pub(super) struct Journal {
    log: ChangeLog,
    /// The first lazy commit since the table file was last made durable.
    unsynced_since: Option<Instant>,
    /// The table file's position at its last durable commit.
    durable_position: u64,
    appended: u64,
    replayed: u64,
    unrecovered: Option<LogGap>,
    /// The first group as last published in the whole state: when the log's first group
    /// changes (its first segment started), the whole state is published again.
    published_first: std::cell::Cell<Option<u64>>,
}

/// What bringing a file up to the log did.
#[derive(Debug, Clone, Default)]
pub(super) struct CatchUp {
    /// Groups replayed.
    pub groups: u64,
    /// The range that could not be, if any.
    pub gap: Option<LogGap>,
}

impl Journal {
    /// Open the log of `config` for a table file at `position`.
    pub(super) fn open(config: &JournalConfig, position: u64) -> Result<Journal, LogError> {
        let log = ChangeLog::open(&config.dir, config.options.clone(), position)?;
        if let Some(damage) = log.damage_at_open() {
            tracing::error!(dir = %config.dir.display(), %damage, "change log damaged; appending in a new segment");
        }
        Ok(Journal {
            log,
            unsynced_since: None,
            durable_position: position,
            appended: 0,
            replayed: 0,
            unrecovered: None,
            published_first: std::cell::Cell::new(None),
        })
    }

    /// Bring `store` up to the log's head: replay the groups after its position. Where the
    /// log cannot be read further, the file is moved past the unreadable range (so that the
    /// writes after it, new ones included, are replayed after a crash) and the range is
    /// reported.
    pub(super) fn catch_up<S: TableStore>(
        &mut self,
        table: &'static str,
        store: &mut S,
    ) -> Result<CatchUp, WriteError> {
        self.log.advance_to(store.log_position());
        let head = self.log.head();
        let outcome = replay(
            store,
            self.log.dir(),
            ReplayLimit {
                through: Some(head),
                ..ReplayLimit::default()
            },
        )?;
        self.replayed += outcome.groups;
        let mut gap = None;
        if outcome.position < head {
            let detail = match &outcome.stopped {
                Some(e) => e.to_string(),
                None => "the log ends early".to_string(),
            };
            let lost = LogGap {
                from: outcome.position + 1,
                through: head,
                detail,
            };
            tracing::error!(table, %lost, "replay of the change log stopped early");
            let mut batch = store.begin_batch()?;
            batch.set_log_position(head);
            batch.commit()?;
            self.unrecovered = Some(lost.clone());
            gap = Some(lost);
        } else if outcome.groups > 0 {
            tracing::info!(
                table,
                groups = outcome.groups,
                from = outcome.from,
                to = outcome.position,
                "change log replayed"
            );
        }
        self.unsynced_since = None;
        self.durable_position = store.log_position();
        Ok(CatchUp {
            groups: outcome.groups,
            gap,
        })
    }

    /// Append a committed group's writes; durable when this returns.
    pub(super) fn append(&mut self, ops: &[WriteOp]) -> Result<Appended, LogError> {
        let group = self.log.append(ops)?;
        self.appended += 1;
        Ok(group)
    }

    /// Take back the group just appended after its table commit failed.
    pub(super) fn retract(&mut self, seq: u64) {
        if !self.log.retract(seq) {
            tracing::warn!(
                seq,
                "a failed group stays in the change log; a replay will apply it"
            );
        }
    }

    /// A lazy commit of the table file returned.
    pub(super) fn committed_lazily(&mut self) {
        self.unsynced_since.get_or_insert_with(Instant::now);
    }

    /// When the table file's lazy commits are due to be made durable.
    pub(super) fn sync_due(&self) -> Option<Instant> {
        self.unsynced_since.map(|t| t + SYNC_INTERVAL)
    }

    /// Make `store`'s lazy commits durable.
    pub(super) fn sync<S: TableStore>(&mut self, store: &mut S) -> Result<(), WriteError> {
        store.sync()?;
        self.unsynced_since = None;
        self.durable_position = store.log_position();
        Ok(())
    }

    /// Delete the segments no restore needs: those before `keep_after` (the oldest kept
    /// backup's position) and before the table file's durable position.
    pub(super) fn prune(&mut self, keep_after: u64) -> Result<u64, LogError> {
        self.log
            .prune_through(keep_after.min(self.durable_position))
    }

    /// Publish what a commit changed: three counters, without a lock; the whole state only
    /// when the log's first group changed too (its first segment was started).
    pub(super) fn publish_commit(&self, publisher: &Publisher) {
        if self.log.first() != self.published_first.get() {
            publisher.publish_log(self.state());
        } else {
            publisher.publish_log_progress(LogProgress {
                head: self.log.head(),
                disk_bytes: self.log.disk_bytes(),
                appended: self.appended,
            });
        }
    }

    /// The state to publish.
    pub(super) fn state(&self) -> LogState {
        self.published_first.set(self.log.first());
        LogState {
            dir: self.log.dir().to_path_buf(),
            head: self.log.head(),
            durable_position: self.durable_position,
            first: self.log.first(),
            disk_bytes: self.log.disk_bytes(),
            appended: self.appended,
            replayed: self.replayed,
            unrecovered: self.unrecovered.clone(),
        }
    }

    /// Log, as one group, the writes that turn `live` into `fresh` (a point-in-time restore
    /// about to replace the table), and set `fresh`'s position to that group. If the
    /// replacement then fails, the caller takes the group back ([`Journal::retract`]) before
    /// the previous file is caught up again. A replay from
    /// any earlier backup then arrives at the restored state, and a crash between this and
    /// the swap replays it into the old file.
    pub(super) fn log_difference<S: TableStore>(
        &mut self,
        live: &S,
        fresh: &mut S,
    ) -> Result<(Appended, usize), DifferenceError> {
        let ops = difference(live, fresh)?;
        let group = self.append(&ops).map_err(DifferenceError::Log)?;
        let mut batch = fresh.begin_batch()?;
        batch.set_log_position(group.seq);
        if let Err(e) = batch.commit() {
            self.retract(group.seq);
            return Err(e.into());
        }
        Ok((group, ops.len()))
    }
}

/// Why [`Journal::log_difference`] failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum DifferenceError {
    /// Reading either file or writing the fresh one.
    #[error(transparent)]
    Store(#[from] WriteError),
    /// Appending to the log.
    #[error(transparent)]
    Log(LogError),
}

impl From<store_core::ReadError> for DifferenceError {
    fn from(e: store_core::ReadError) -> Self {
        DifferenceError::Store(e.into())
    }
}

/// The writes that turn `from` into `to`: both scanned in key order, in chunks.
fn difference<S: TableStore>(from: &S, to: &S) -> Result<Vec<WriteOp>, store_core::ReadError> {
    let mut ops = Vec::new();
    let mut left = Chunks::new(from);
    let mut right = Chunks::new(to);
    loop {
        match (left.peek()?, right.peek()?) {
            (None, None) => return Ok(ops),
            (Some(a), None) => {
                ops.push(WriteOp::delete(&a.key));
                left.advance();
            }
            (None, Some(b)) => {
                ops.push(WriteOp::put(&b.key, &b.value));
                right.advance();
            }
            (Some(a), Some(b)) => match a.key.cmp(&b.key) {
                std::cmp::Ordering::Less => {
                    ops.push(WriteOp::delete(&a.key));
                    left.advance();
                }
                std::cmp::Ordering::Greater => {
                    ops.push(WriteOp::put(&b.key, &b.value));
                    right.advance();
                }
                std::cmp::Ordering::Equal => {
                    if a.value != b.value {
                        ops.push(WriteOp::put(&b.key, &b.value));
                    }
                    left.advance();
                    right.advance();
                }
            },
        }
    }
}

/// A store's records in key order, read a chunk at a time.
struct Chunks<'a, S> {
    store: &'a S,
    buf: std::collections::VecDeque<store_core::Record>,
    after: Option<Vec<u8>>,
    exhausted: bool,
}

impl<'a, S: TableStore> Chunks<'a, S> {
    fn new(store: &'a S) -> Self {
        Chunks {
            store,
            buf: Default::default(),
            after: None,
            exhausted: false,
        }
    }

    fn peek(&mut self) -> Result<Option<&store_core::Record>, store_core::ReadError> {
        if self.buf.is_empty() && !self.exhausted {
            let range = KeyRange {
                start: match self.after.take() {
                    Some(k) => std::ops::Bound::Excluded(k),
                    None => std::ops::Bound::Unbounded,
                },
                end: std::ops::Bound::Unbounded,
                reverse: false,
            };
            let chunk = self.store.scan(&range, DIFF_CHUNK)?;
            self.exhausted = chunk.len() < DIFF_CHUNK;
            self.after = chunk.last().map(|r| r.key.clone());
            self.buf.extend(chunk);
        }
        Ok(self.buf.front())
    }

    fn advance(&mut self) {
        self.buf.pop_front();
    }
}
