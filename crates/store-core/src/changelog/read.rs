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
    let damaged = |offset: usize, last_good: u64, detail: String| LogError::Damaged {
        segment: segment.path.clone(),
        offset: offset as u64,
        last_good,
        detail,
    };
    let mut scan = SegmentScan {
        groups: Vec::new(),
        valid_len: 0,
        file_len,
        damage: None,
    };
    if bytes.len() < MAGIC.len() {
        // Created, but a crash came before its header: nothing was ever written to it.
        if !last || bytes.iter().any(|&b| b != 0) && !MAGIC.starts_with(&bytes) {
            scan.damage = Some(damaged(0, segment.first - 1, "no segment header".into()));
        }
        return Ok(scan);
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        scan.damage = Some(damaged(0, segment.first - 1, "bad segment header".into()));
        return Ok(scan);
    }
    let mut pos = MAGIC.len();
    scan.valid_len = pos as u64;
    let mut last_good = segment.first - 1;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let torn = last && rest.iter().all(|&b| b == 0);
        match decode(rest) {
            Decoded::Group(group, len) => {
                if group.seq != last_good + 1 {
                    scan.damage = Some(damaged(
                        pos,
                        last_good,
                        format!("group {} where {} was expected", group.seq, last_good + 1),
                    ));
                    return Ok(scan);
                }
                last_good = group.seq;
                scan.groups.push(group);
                pos += len;
                scan.valid_len = pos as u64;
            }
            Decoded::Short if last => return Ok(scan),
            Decoded::Short => {
                scan.damage = Some(damaged(
                    pos,
                    last_good,
                    "segment ends inside a record".into(),
                ));
                return Ok(scan);
            }
            Decoded::Bad(_) if torn => return Ok(scan),
            Decoded::Bad(detail) => {
                scan.damage = Some(damaged(pos, last_good, detail));
                return Ok(scan);
            }
        }
    }
    Ok(scan)
}

/// The groups of a log after a position, in order, across its segments. Ends at the last
/// intact group; yields one error and then ends if the log is damaged before that or does
/// not reach back to the position asked for.
#[derive(Debug)]
pub struct LogReader {
    segments: Vec<Segment>,
    next_segment: usize,
    pending: std::vec::IntoIter<LogGroup>,
    pending_damage: Option<LogError>,
    after: u64,
    last: u64,
    done: bool,
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
            pending: Vec::new().into_iter(),
            pending_damage: None,
            after,
            last: after,
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

    /// The sequence number of the last group yielded (or the starting position).
    pub fn position(&self) -> u64 {
        self.last
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
        let groups: Vec<LogGroup> = scan
            .groups
            .into_iter()
            .filter(|g| g.seq > self.after)
            .collect();
        self.pending = groups.into_iter();
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
            if let Some(group) = self.pending.next() {
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
