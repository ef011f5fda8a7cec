//! The bytes of a change log: a segment starts with [`MAGIC`]; each record is a length, an
//! XXH3-64 checksum of the body and the body (sequence number, commit time, the group's
//! writes). Little-endian throughout.
//!
//! ```text
//! record := u32 body_len | u64 xxh3_64(body) | body
//! body   := u64 seq | u64 unix_micros | u32 n_ops | op*
//! op     := 0x01 u32 key_len key u32 value_len value      (put)
//!         | 0x02 u32 key_len key                          (delete)
//! ```

use xxhash_rust::xxh3::xxh3_64;

use super::error::LogError;
use crate::store::WriteOp;

/// The first bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"AGCLOG01";
/// Bytes before a record's body.
pub(crate) const RECORD_HEADER: usize = 12;
/// Largest body a record may declare (a sanity bound while reading damaged bytes).
pub(crate) const MAX_BODY: usize = 1 << 30;

const PUT: u8 = 1;
const DELETE: u8 = 2;

/// One committed write group: every write an owner committed in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGroup {
    /// Position in the table's log, from 1, without gaps.
    pub seq: u64,
    /// When the group was committed (microseconds since the Unix epoch; never decreasing).
    pub unix_micros: u64,
    /// Its writes, in the order they were made.
    pub ops: Vec<WriteOp>,
}

impl LogGroup {
    /// Bytes of the record holding this group.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER + body_len(&self.ops)
    }
}

fn body_len(ops: &[WriteOp]) -> usize {
    20 + ops
        .iter()
        .map(|op| match op {
            WriteOp::Put { key, value } => 9 + key.len() + value.len(),
            WriteOp::Delete { key } => 5 + key.len(),
        })
        .sum::<usize>()
}

/// Append the record of `group` to `out`.
pub(crate) fn encode(group: &LogGroup, out: &mut Vec<u8>) {
    encode_parts(group.seq, group.unix_micros, &group.ops, out);
}

/// Append the record of group `seq`, committed at `unix_micros`, holding `ops`, to `out`
/// (the writer's path: the ops are borrowed, never copied into a [`LogGroup`]).
pub(crate) fn encode_parts(seq: u64, unix_micros: u64, ops: &[WriteOp], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&unix_micros.to_le_bytes());
    out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for op in ops {
        match op {
            WriteOp::Put { key, value } => {
                out.push(PUT);
                out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                out.extend_from_slice(value);
            }
            WriteOp::Delete { key } => {
                out.push(DELETE);
                out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                out.extend_from_slice(key);
            }
        }
    }
    let body = &out[start + RECORD_HEADER..];
    let len = (body.len() as u32).to_le_bytes();
    let sum = xxh3_64(body).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + RECORD_HEADER].copy_from_slice(&sum);
}

/// The bytes of a segment holding `groups`: [`MAGIC`], then their records in order. What
/// off-site shipping puts in one object (a chunk), and what [`decode_chunk`] reads back.
pub fn encode_groups(groups: &[LogGroup]) -> Vec<u8> {
    let len = MAGIC.len() + groups.iter().map(LogGroup::encoded_len).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(MAGIC);
    for group in groups {
        encode(group, &mut out);
    }
    out
}

/// Read back a chunk written by [`encode_groups`]: every record must be intact and the
/// groups consecutive. Unlike a live segment a chunk has no torn tail (it was written whole,
/// in one request), so anything short or wrong is damage: [`LogError::BadChunk`].
pub fn decode_chunk(bytes: &[u8]) -> Result<Vec<LogGroup>, LogError> {
    let bad = |offset: usize, last_good: Option<u64>, detail: String| LogError::BadChunk {
        offset: offset as u64,
        last_good,
        detail,
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad(0, None, "bad chunk header".into()));
    }
    let mut groups: Vec<LogGroup> = Vec::new();
    let mut pos = MAGIC.len();
    while pos < bytes.len() {
        let last_good = groups.last().map(|g| g.seq);
        match decode(&bytes[pos..]) {
            Decoded::Group(group, len) => {
                if let Some(last) = last_good
                    && group.seq != last + 1
                {
                    return Err(bad(
                        pos,
                        last_good,
                        format!("group {} where {} was expected", group.seq, last + 1),
                    ));
                }
                groups.push(group);
                pos += len;
            }
            Decoded::Short => {
                return Err(bad(pos, last_good, "chunk ends inside a record".into()));
            }
            Decoded::Bad(detail) => return Err(bad(pos, last_good, detail)),
        }
    }
    Ok(groups)
}

/// What the bytes at the start of `buf` hold.
pub(crate) enum Decoded {
    /// A whole, intact record of this many bytes.
    Group(LogGroup, usize),
    /// The record would end past the end of `buf`.
    Short,
    /// The record is there but does not read back.
    Bad(String),
}

/// Read the record at the start of `buf`.
pub(crate) fn decode(buf: &[u8]) -> Decoded {
    if buf.len() < RECORD_HEADER {
        return Decoded::Short;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    let sum = u64::from_le_bytes(buf[4..12].try_into().expect("8 bytes"));
    if len > MAX_BODY {
        return Decoded::Bad(format!("record length {len} is not plausible"));
    }
    if buf.len() < RECORD_HEADER + len {
        return Decoded::Short;
    }
    let body = &buf[RECORD_HEADER..RECORD_HEADER + len];
    if xxh3_64(body) != sum {
        return Decoded::Bad("checksum mismatch".into());
    }
    match decode_body(body) {
        Some(group) => Decoded::Group(group, RECORD_HEADER + len),
        None => Decoded::Bad("checksum matches but the body does not decode".into()),
    }
}

fn decode_body(body: &[u8]) -> Option<LogGroup> {
    let mut r = Reader(body);
    let seq = r.u64()?;
    let unix_micros = r.u64()?;
    let n = r.u32()? as usize;
    let mut ops = Vec::with_capacity(n.min(body.len() / 5));
    for _ in 0..n {
        let tag = r.bytes(1)?[0];
        let key_len = r.u32()? as usize;
        let key = r.bytes(key_len)?.to_vec();
        ops.push(match tag {
            PUT => {
                let value_len = r.u32()? as usize;
                WriteOp::Put {
                    key,
                    value: r.bytes(value_len)?.to_vec(),
                }
            }
            DELETE => WriteOp::Delete { key },
            _ => return None,
        });
    }
    r.0.is_empty().then_some(LogGroup {
        seq,
        unix_micros,
        ops,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_reads_back_and_a_flipped_bit_does_not() {
        let group = LogGroup {
            seq: 7,
            unix_micros: 1_700_000_000_000_000,
            ops: vec![WriteOp::put(b"k", b"value"), WriteOp::delete(b"gone")],
        };
        let mut buf = Vec::new();
        encode(&group, &mut buf);
        assert_eq!(buf.len(), group.encoded_len());
        match decode(&buf) {
            Decoded::Group(g, n) => assert_eq!((g, n), (group, buf.len())),
            _ => panic!("does not read back"),
        }
        assert!(matches!(decode(&buf[..buf.len() - 1]), Decoded::Short));
        buf[20] ^= 1;
        assert!(matches!(decode(&buf), Decoded::Bad(_)));
    }

    #[test]
    fn a_chunk_reads_back_and_a_cut_or_flipped_one_does_not() {
        let groups: Vec<LogGroup> = (5..9)
            .map(|seq| LogGroup {
                seq,
                unix_micros: 1_700_000_000_000_000 + seq,
                ops: vec![WriteOp::put(format!("k{seq}").as_bytes(), b"v")],
            })
            .collect();
        let chunk = encode_groups(&groups);
        assert_eq!(decode_chunk(&chunk).unwrap(), groups);
        assert_eq!(decode_chunk(&encode_groups(&[])).unwrap(), Vec::new());
        assert!(matches!(
            decode_chunk(&chunk[..chunk.len() - 1]),
            Err(LogError::BadChunk {
                last_good: Some(7),
                ..
            })
        ));
        let mut flipped = chunk.clone();
        flipped[MAGIC.len() + RECORD_HEADER + 2] ^= 1;
        assert!(matches!(
            decode_chunk(&flipped),
            Err(LogError::BadChunk {
                last_good: None,
                ..
            })
        ));
        let skipping = encode_groups(&[groups[0].clone(), groups[2].clone()]);
        assert!(decode_chunk(&skipping).is_err());
    }
}
