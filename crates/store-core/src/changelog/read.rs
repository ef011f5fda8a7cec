//! Reading a change log's segments in order: [`LogReader`] yields the groups after a given
//! position and tells a torn tail (the end of the last segment, a write a crash cut short and
//! that was never acknowledged) from damage (a record that was once complete).

use std::path::{Path, PathBuf};

use super::error::LogError;
use super::format::{Decoded, LogGroup, MAGIC, decode};

/// One segment file: the groups from `first` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Sequence number of its first group.
    pub first: u64,
    /// The file.
    pub path: PathBuf,
}

/// The file name of the segment starting at `first`.
pub fn segment_name(first: u64) -> String {
    format!("{first:020}.log")
}

/// The segments in `dir`, by first sequence number. A missing directory has none.
pub fn list_segments(dir: &Path) -> Result<Vec<Segment>, LogError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::io(dir, e)),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io(dir, e))?;
        let name = entry.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        segments.push(Segment {
            first,
            path: entry.path(),
        });
    }
    segments.sort_by_key(|s| s.first);
    Ok(segments)
}

/// How one segment reads.
#[derive(Debug)]
pub(crate) struct SegmentScan {
    /// Its intact groups, in order.
    pub groups: Vec<LogGroup>,
    /// The byte offset just past each group's record (same order).
    pub ends: Vec<u64>,
    /// Bytes up to the end of the last intact record.
    pub valid_len: u64,
    /// Bytes in the file.
    pub file_len: u64,
    /// Damage met (the groups after it are unknown).
    pub damage: Option<LogError>,
}

/// Read a whole segment. In the last segment (`last`), a record cut short at the end of the
/// file, or followed by nothing but zeros, is a torn tail and ends the segment quietly;
/// anywhere else a record that does not read back is damage.
pub(crate) fn scan_segment(segment: &Segment, last: bool) -> Result<SegmentScan, LogError> {
    let bytes = std::fs::read(&segment.path).map_err(|e| LogError::io(&segment.path, e))?;
    let file_len = bytes.len() as u64;
    let mut scan = SegmentScan {
        groups: Vec::new(),
        ends: Vec::new(),
        valid_len: 0,
        file_len,
        damage: None,
    };
    if bytes.len() < MAGIC.len() {
        // Created, but a crash came before its header: nothing was ever written to it.
        if !last || bytes.iter().any(|&b| b != 0) && !MAGIC.starts_with(&bytes) {
            scan.damage = Some(damaged(segment, 0, segment.first - 1, "no segment header"));
        }
        return Ok(scan);
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        scan.damage = Some(damaged(segment, 0, segment.first - 1, "bad segment header"));
        return Ok(scan);
    }
    scan_records(
        segment,
        last,
        &bytes[MAGIC.len()..],
        MAGIC.len() as u64,
        segment.first - 1,
        &mut scan,
    );
    Ok(scan)
}

/// Read a segment from byte `offset` on, where a record of group `last_good + 1` starts (a
/// [`LogCursor`] of an earlier read); the rest as [`scan_segment`].
fn scan_segment_from(
    segment: &Segment,
    last: bool,
    offset: u64,
    last_good: u64,
) -> Result<SegmentScan, LogError> {
    use std::io::{Read, Seek, SeekFrom};
    let io = |e| LogError::io(&segment.path, e);
    let mut file = std::fs::File::open(&segment.path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut scan = SegmentScan {
        groups: Vec::new(),
        ends: Vec::new(),
        valid_len: offset.min(file_len),
        file_len,
        damage: None,
    };
    if file_len < offset {
        scan.damage = Some(damaged(
            segment,
            offset,
            last_good,
            "segment shorter than the cursor",
        ));
        return Ok(scan);
    }
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    scan_records(segment, last, &bytes, offset, last_good, &mut scan);
    Ok(scan)
}

fn damaged(segment: &Segment, offset: u64, last_good: u64, detail: impl Into<String>) -> LogError {
    LogError::Damaged {
        segment: segment.path.clone(),
        offset,
        last_good,
        detail: detail.into(),
    }
}

/// Read the records in `bytes`, which start at byte `base` of the segment, after group
/// `last_good`, into `scan`.
fn scan_records(
    segment: &Segment,
    last: bool,
    bytes: &[u8],
    base: u64,
    mut last_good: u64,
    scan: &mut SegmentScan,
) {
    let mut pos = 0;
    scan.valid_len = base;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let torn = last && rest.iter().all(|&b| b == 0);
        let at = base + pos as u64;
        match decode(rest) {
            Decoded::Group(group, len) => {
                if group.seq != last_good + 1 {
                    scan.damage = Some(damaged(
                        segment,
                        at,
                        last_good,
                        format!("group {} where {} was expected", group.seq, last_good + 1),
                    ));
                    return;
                }
                last_good = group.seq;
                scan.groups.push(group);
                pos += len;
                scan.valid_len = base + pos as u64;
                scan.ends.push(scan.valid_len);
            }
            Decoded::Short if last => return,
            Decoded::Short => {
                scan.damage = Some(damaged(
                    segment,
                    at,
                    last_good,
                    "segment ends inside a record",
                ));
                return;
            }
            Decoded::Bad(_) if torn => return,
            Decoded::Bad(detail) => {
                scan.damage = Some(damaged(segment, at, last_good, detail));
                return;
            }
        }
    }
}

/// Where a [`LogReader`] is: just past the record of group `seq`, at byte `offset` of the
/// segment starting at group `segment`. [`LogReader::resume`] starts there without reading
/// the segment again from its start (what a reader following a live log, like off-site
/// shipping, needs: the current segment may hold tens of MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogCursor {
    /// The first group of the segment.
    pub segment: u64,
    /// The byte offset past the group's record.
    pub offset: u64,
    /// The group.
    pub seq: u64,
}

/// The groups of a log after a position, in order, across its segments. Ends at the last
/// intact group; yields one error and then ends if the log is damaged before that or does
/// not reach back to the position asked for.
#[derive(Debug)]
pub struct LogReader {
    segments: Vec<Segment>,
    next_segment: usize,
    pending: std::iter::Zip<std::vec::IntoIter<LogGroup>, std::vec::IntoIter<u64>>,
    /// The first group of the segment `pending` comes from.
    pending_segment: u64,
    pending_damage: Option<LogError>,
    after: u64,
    last: u64,
    cursor: Option<LogCursor>,
    done: bool,
}

fn no_groups() -> std::iter::Zip<std::vec::IntoIter<LogGroup>, std::vec::IntoIter<u64>> {
    Vec::new().into_iter().zip(Vec::new())
}

impl LogReader {
    /// Read the log in `dir` from the group after `after`.
    pub fn open(dir: &Path, after: u64) -> Result<LogReader, LogError> {
        let segments = list_segments(dir)?;
        // The last segment starting at or before the wanted group; earlier ones hold nothing
        // wanted.
        let start = segments
            .iter()
            .rposition(|s| s.first <= after + 1)
            .unwrap_or(0);
        let mut reader = LogReader {
            segments,
            next_segment: start,
            pending: no_groups(),
            pending_segment: 0,
            pending_damage: None,
            after,
            last: after,
            cursor: None,
            done: false,
        };
        if let Some(first) = reader.segments.first()
            && first.first > after + 1
        {
            reader.pending_damage = Some(LogError::Missing {
                wanted: after + 1,
                detail: format!("the log starts at group {}", first.first),
            });
        }
        Ok(reader)
    }

    /// Read the log in `dir` from where an earlier reader's [`LogReader::cursor`] was. When
    /// the log no longer matches it (its segment pruned or rewritten), this reads as
    /// [`LogReader::open`] after `cursor.seq` does.
    pub fn resume(dir: &Path, cursor: LogCursor) -> Result<LogReader, LogError> {
        let segments = list_segments(dir)?;
        let Some(index) = segments.iter().position(|s| s.first == cursor.segment) else {
            return LogReader::open(dir, cursor.seq);
        };
        let is_last = index + 1 == segments.len();
        let scan = scan_segment_from(&segments[index], is_last, cursor.offset, cursor.seq)?;
        if scan.damage.is_some() && scan.groups.is_empty() {
            // Not where a record starts any more: read it whole, as a fresh reader would.
            return LogReader::open(dir, cursor.seq);
        }
        Ok(LogReader {
            pending: scan.groups.into_iter().zip(scan.ends),
            pending_segment: cursor.segment,
            pending_damage: scan.damage,
            next_segment: index + 1,
            segments,
            after: cursor.seq,
            last: cursor.seq,
            cursor: Some(cursor),
            done: false,
        })
    }

    /// The sequence number of the last group yielded (or the starting position).
    pub fn position(&self) -> u64 {
        self.last
    }

    /// Where the last group yielded ends, to [`LogReader::resume`] from (None before the
    /// first).
    pub fn cursor(&self) -> Option<LogCursor> {
        self.cursor
    }

    fn load_next(&mut self) -> Result<bool, LogError> {
        let Some(segment) = self.segments.get(self.next_segment).cloned() else {
            return Ok(false);
        };
        let is_last = self.next_segment + 1 == self.segments.len();
        self.next_segment += 1;
        if segment.first > self.last + 1 {
            return Err(LogError::Missing {
                wanted: self.last + 1,
                detail: format!("the next segment starts at group {}", segment.first),
            });
        }
        let scan = scan_segment(&segment, is_last)?;
        let (groups, ends): (Vec<LogGroup>, Vec<u64>) = scan
            .groups
            .into_iter()
            .zip(scan.ends)
            .filter(|(g, _)| g.seq > self.after)
            .unzip();
        self.pending = groups.into_iter().zip(ends);
        self.pending_segment = segment.first;
        self.pending_damage = scan.damage;
        Ok(true)
    }
}

impl Iterator for LogReader {
    type Item = Result<LogGroup, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if let Some((group, end)) = self.pending.next() {
                if group.seq <= self.last {
                    continue;
                }
                if group.seq != self.last + 1 {
                    self.done = true;
                    return Some(Err(LogError::Missing {
                        wanted: self.last + 1,
                        detail: format!("the log jumps to group {}", group.seq),
                    }));
                }
                self.last = group.seq;
                self.cursor = Some(LogCursor {
                    segment: self.pending_segment,
                    offset: end,
                    seq: group.seq,
                });
                return Some(Ok(group));
            }
            if let Some(damage) = self.pending_damage.take() {
                self.done = true;
                return Some(Err(damage));
            }
            match self.load_next() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
