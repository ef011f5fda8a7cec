//! A table's change log: every write group its owner commits, in order, each group a record
//! with its sequence number, commit time and a checksum, in segment files
//! `<dir>/<first seq, 20 digits>.log`.
//!
//! The log is where a write becomes durable: [`ChangeLog::append`] returns once the group's
//! record is fsynced, and only then may the owner acknowledge it. The table file is committed
//! without an fsync of its own and records the last group it holds (its log position); at
//! open the groups after that position are replayed into it ([`replay`]). A restore replays
//! the groups after its backup's position, so it loses nothing; a point-in-time restore stops
//! at the last group committed before the instant asked for.
//!
//! - `format.rs`: the bytes of a segment and a record; [`encode_groups`] and
//!   [`decode_chunk`], a run of groups as one buffer in the segment format (off-site shipping).
//! - `read.rs`: [`LogReader`], the groups after a position across segments; a torn tail (a
//!   crash in the middle of an append, never acknowledged) is cut quietly, damage is an error.
//! - `replay.rs`: applying groups to a [`crate::TableStore`].
//! - `error.rs`: [`LogError`].

mod error;
mod format;
mod read;
mod replay;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub use error::LogError;
pub use format::{LogGroup, MAGIC, decode_chunk, encode_groups};
pub use read::{LogCursor, LogReader, Segment, list_segments, segment_name};
pub use replay::{Replay, ReplayLimit, replay};

use crate::fsutil;
use crate::store::WriteOp;
use read::scan_segment;

/// A group [`ChangeLog::append`] made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its sequence number.
    pub seq: u64,
    /// Its commit time (microseconds since the Unix epoch; never decreasing).
    pub unix_micros: u64,
}

/// How a change log writes.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// A segment holding at least this many bytes is closed and a new one started.
    pub segment_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 64 << 20,
        }
    }
}

/// The segment being appended to.
#[derive(Debug)]
struct Current {
    file: File,
    len: u64,
}

/// The writer of one table's change log. One per table, held by its owner.
#[derive(Debug)]
pub struct ChangeLog {
    dir: PathBuf,
    options: LogOptions,
    segments: Vec<Segment>,
    /// Sizes of the segments before the current one, for [`ChangeLog::disk_bytes`].
    closed_bytes: u64,
    current: Option<Current>,
    /// The last group appended (0: none yet).
    head: u64,
    last_micros: u64,
    buf: Vec<u8>,
    /// Damage met when the log was opened, kept for whoever replays.
    damage_at_open: Option<String>,
    /// The last group appended and the offset its record starts at, for
    /// [`ChangeLog::retract`].
    last_append: Option<(u64, u64)>,
}

impl ChangeLog {
    /// Open (or create) the log in `dir`. A torn tail is cut off. The next group appended
    /// follows both the log's last group and `at_least` (the table file's log position: the
    /// log may have lost what the file holds, never the other way round for acknowledged
    /// writes).
    pub fn open(dir: &Path, options: LogOptions, at_least: u64) -> Result<ChangeLog, LogError> {
        fsutil::create_dir_durably(dir).map_err(|e| LogError::io(dir, e))?;
        let segments = list_segments(dir)?;
        let mut log = ChangeLog {
            dir: dir.to_path_buf(),
            options,
            closed_bytes: 0,
            current: None,
            head: 0,
            last_micros: 0,
            buf: Vec::new(),
            damage_at_open: None,
            last_append: None,
            segments,
        };
        for segment in &log.segments {
            log.closed_bytes += std::fs::metadata(&segment.path)
                .map_err(|e| LogError::io(&segment.path, e))?
                .len();
        }
        if let Some(last) = log.segments.last().cloned() {
            let scan = scan_segment(&last, true)?;
            log.head = scan.groups.last().map_or(last.first - 1, |g| g.seq);
            log.last_micros = scan.groups.last().map_or(0, |g| g.unix_micros);
            match scan.damage {
                Some(damage) => {
                    // Never append after damage: what follows it is unknown. store-core logs
                    // nothing itself; the owner reports it.
                    log.damage_at_open = Some(damage.to_string());
                }
                None => {
                    let file = OpenOptions::new()
                        .append(true)
                        .open(&last.path)
                        .map_err(|e| LogError::io(&last.path, e))?;
                    if scan.valid_len < scan.file_len || scan.valid_len == 0 {
                        // A torn tail (or a header never written): cut back to what is intact.
                        file.set_len(scan.valid_len)
                            .map_err(|e| LogError::io(&last.path, e))?;
                        if scan.valid_len == 0 {
                            (&file)
                                .write_all(MAGIC)
                                .map_err(|e| LogError::io(&last.path, e))?;
                        }
                        file.sync_all().map_err(|e| LogError::io(&last.path, e))?;
                    }
                    let len = scan.valid_len.max(MAGIC.len() as u64);
                    log.closed_bytes -= scan.file_len;
                    log.current = Some(Current { file, len });
                }
            }
        }
        if at_least > log.head {
            log.head = at_least;
            // The file is ahead of the log (its segments were lost): start a new segment.
            log.close_current();
        }
        Ok(log)
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last group appended (0: none).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The first group still in the log, if any.
    pub fn first(&self) -> Option<u64> {
        self.segments.first().map(|s| s.first)
    }

    /// Damage met in the last segment when the log was opened.
    pub fn damage_at_open(&self) -> Option<&str> {
        self.damage_at_open.as_deref()
    }

    /// Bytes the log's segments take.
    pub fn disk_bytes(&self) -> u64 {
        self.closed_bytes + self.current.as_ref().map_or(0, |c| c.len)
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Append `ops` as the next group and fsync it. Returns the group's sequence number and
    /// commit time once it is durable. On error nothing is appended (the partial record is
    /// cut off again).
    pub fn append(&mut self, ops: &[WriteOp]) -> Result<Appended, LogError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let appended = Appended {
            seq: self.head + 1,
            unix_micros: now.max(self.last_micros),
        };
        let rotate = self
            .current
            .as_ref()
            .is_none_or(|c| c.len >= self.options.segment_bytes);
        if rotate {
            self.start_segment(appended.seq)?;
        }
        self.buf.clear();
        format::encode_parts(appended.seq, appended.unix_micros, ops, &mut self.buf);
        let path = self
            .segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_default();
        let current = self.current.as_mut().expect("a segment was just started");
        let written = (&current.file)
            .write_all(&self.buf)
            .and_then(|()| current.file.sync_data());
        if let Err(e) = written {
            // Cut the partial record off, so that the next append follows the last good one.
            let _ = current.file.set_len(current.len);
            let _ = current.file.sync_data();
            return Err(LogError::io(path, e));
        }
        self.last_append = Some((appended.seq, current.len));
        current.len += self.buf.len() as u64;
        self.head = appended.seq;
        self.last_micros = appended.unix_micros;
        Ok(appended)
    }

    /// Take back the group just appended (`seq`, the head), whose table commit failed, so
    /// that a replay never applies a write its client was told failed. Returns false when it
    /// is no longer possible (another group followed, or the cut failed).
    pub fn retract(&mut self, seq: u64) -> bool {
        let Some((last, offset)) = self.last_append.take() else {
            return false;
        };
        let Some(current) = &mut self.current else {
            return false;
        };
        if last != seq || self.head != seq {
            return false;
        }
        if current
            .file
            .set_len(offset)
            .and_then(|()| current.file.sync_data())
            .is_err()
        {
            return false;
        }
        current.len = offset;
        self.head = seq - 1;
        true
    }

    /// Make sure the next group appended follows `position` (a table file restored from a
    /// backup that is ahead of the log, whose segments were lost).
    pub fn advance_to(&mut self, position: u64) {
        if position > self.head {
            self.head = position;
            self.close_current();
        }
    }

    fn close_current(&mut self) {
        if let Some(current) = self.current.take() {
            self.closed_bytes += current.len;
        }
    }

    /// Close the current segment and start `<first>.log`, durably.
    fn start_segment(&mut self, first: u64) -> Result<(), LogError> {
        let path = self.dir.join(segment_name(first));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(fsutil::FILE_MODE)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        file.write_all(MAGIC)
            .and_then(|()| file.sync_all())
            .and_then(|()| fsutil::sync_parent_dir(&path))
            .map_err(|e| LogError::io(&path, e))?;
        self.close_current();
        self.segments.retain(|s| s.first != first);
        self.segments.push(Segment { first, path });
        self.current = Some(Current {
            file,
            len: MAGIC.len() as u64,
        });
        Ok(())
    }

    /// Delete the segments holding only groups up to `through` (never the one being
    /// appended to). Returns the bytes freed.
    pub fn prune_through(&mut self, through: u64) -> Result<u64, LogError> {
        let mut freed = 0;
        while self.segments.len() > 1 && self.segments[1].first <= through + 1 {
            let segment = self.segments.remove(0);
            let len = std::fs::metadata(&segment.path).map_or(0, |m| m.len());
            match std::fs::remove_file(&segment.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    self.segments.insert(0, segment.clone());
                    return Err(LogError::io(&segment.path, e));
                }
            }
            self.closed_bytes = self.closed_bytes.saturating_sub(len);
            freed += len;
        }
        if freed > 0 {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| LogError::io(&self.dir, e))?;
        }
        Ok(freed)
    }
}
