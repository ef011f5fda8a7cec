//! Change-log chunks in the bucket: a run of consecutive groups of one table's log, in the
//! segment format ([`store_core::changelog::encode_groups`]), through the same codec as
//! backups (zstd, then age), stored as one object
//! `<table>/log/<first:020>-<last:020>.log[.zst][.age]` written by one PUT, so a chunk is in
//! the bucket whole or not at all and needs no manifest. Its name says which groups it holds
//! and how it is coded; reading it back checks both.

use bytes::Bytes;
use store_core::changelog::{LogGroup, decode_chunk, encode_groups};

use super::bucket::Bucket;
use super::codec::{DecodeError, Encoding, Encryption, decode, encode};
use super::error::{ChunkError, RemoteError};
use crate::config::Compression;

/// One chunk in the bucket, as its name describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// Its key relative to the prefix.
    pub(crate) key: String,
    /// Its first group.
    pub(crate) first: u64,
    /// Its last group.
    pub(crate) last: u64,
    /// Its size in the bucket.
    pub(crate) bytes: u64,
    /// How it is compressed.
    pub(crate) compression: Compression,
    /// How it is encrypted.
    pub(crate) encryption: Encryption,
}

/// The folder of `table`'s chunks, relative to the prefix.
fn log_dir(table: &str) -> String {
    format!("{table}/log")
}

/// The key of the chunk of `table` holding `first..=last`, coded as `encoding` says.
pub(crate) fn chunk_key(table: &str, first: u64, last: u64, encoding: &Encoding) -> String {
    let mut key = format!("{}/{first:020}-{last:020}.log", log_dir(table));
    if encoding.compression == Compression::Zstd {
        key.push_str(".zst");
    }
    if encoding.encryption() == Encryption::AgeX25519 {
        key.push_str(".age");
    }
    key
}

/// The chunk `key` names, if it names one of `table`.
pub(crate) fn parse_chunk(table: &str, key: &str, bytes: u64) -> Option<Chunk> {
    let name = key.strip_prefix(&log_dir(table))?.strip_prefix('/')?;
    let (first, rest) = name.split_at_checked(20)?;
    let rest = rest.strip_prefix('-')?;
    let (last, rest) = rest.split_at_checked(20)?;
    let (compression, encryption) = match rest {
        ".log" => (Compression::None, Encryption::None),
        ".log.zst" => (Compression::Zstd, Encryption::None),
        ".log.age" => (Compression::None, Encryption::AgeX25519),
        ".log.zst.age" => (Compression::Zstd, Encryption::AgeX25519),
        _ => return None,
    };
    let first: u64 = first.parse().ok()?;
    let last: u64 = last.parse().ok()?;
    (first >= 1 && first <= last).then(|| Chunk {
        key: key.to_string(),
        first,
        last,
        bytes,
        compression,
        encryption,
    })
}

/// `table`'s chunks in the bucket, by first group (then last).
pub(crate) fn list_chunks(bucket: &Bucket, table: &str) -> Result<Vec<Chunk>, RemoteError> {
    let mut chunks: Vec<Chunk> = bucket
        .list(&log_dir(table))?
        .into_iter()
        .filter_map(|o| parse_chunk(table, &o.key, o.bytes))
        .collect();
    chunks.sort_by_key(|c| (c.first, c.last));
    Ok(chunks)
}

/// Code `groups` (consecutive, at least one) and PUT them as one chunk of `table`.
pub(crate) fn put_chunk(
    bucket: &Bucket,
    encoding: &Encoding,
    table: &str,
    groups: &[LogGroup],
) -> Result<Chunk, ChunkError> {
    let (Some(first), Some(last)) = (groups.first(), groups.last()) else {
        unreachable!("put_chunk is given at least one group");
    };
    let key = chunk_key(table, first.seq, last.seq, encoding);
    let plain = encode_groups(groups);
    let (object, _) = encode(&mut plain.as_slice(), Vec::new(), encoding).map_err(|source| {
        ChunkError::Codec {
            key: key.clone(),
            source,
        }
    })?;
    let bytes = object.len() as u64;
    bucket.put(&key, Bytes::from(object))?;
    Ok(Chunk {
        key,
        first: first.seq,
        last: last.seq,
        bytes,
        compression: encoding.compression,
        encryption: encoding.encryption(),
    })
}

/// Fetch `chunk` and decode it: its groups, exactly `first..=last` of its name.
pub(crate) fn fetch_chunk(
    bucket: &Bucket,
    identities: &[Box<dyn age::Identity + Send + Sync>],
    chunk: &Chunk,
) -> Result<Vec<LogGroup>, ChunkError> {
    let object = bucket.get(&chunk.key)?;
    let mut plain = Vec::new();
    decode(
        &mut object.as_ref(),
        &mut plain,
        chunk.compression,
        chunk.encryption,
        identities,
    )
    .map_err(|e| match e {
        DecodeError::Io(source) => ChunkError::Codec {
            key: chunk.key.clone(),
            source,
        },
        DecodeError::Decrypt(source) => ChunkError::Decrypt {
            key: chunk.key.clone(),
            source,
        },
        DecodeError::NoIdentity => ChunkError::NoIdentity(chunk.key.clone()),
    })?;
    let damaged = |detail: String| ChunkError::Damaged {
        key: chunk.key.clone(),
        detail,
    };
    let groups = decode_chunk(&plain).map_err(|e| damaged(e.to_string()))?;
    let held = (groups.first().map(|g| g.seq), groups.last().map(|g| g.seq));
    if held != (Some(chunk.first), Some(chunk.last)) {
        return Err(damaged(format!(
            "holds groups {:?}..={:?}, its name says {}..={}",
            held.0, held.1, chunk.first, chunk.last
        )));
    }
    Ok(groups)
}

/// The chunks that carry the log on from `position` (the next group wanted is
/// `position + 1`), in order, up to the first one missing; and, when one is missing, the
/// groups that are then not there: from the first missing one to the last group of any
/// chunk.
pub(crate) fn run_after(chunks: &[Chunk], position: u64) -> (Vec<Chunk>, Option<(u64, u64)>) {
    let mut run = Vec::new();
    let mut next = position + 1;
    for chunk in chunks {
        if chunk.last < next {
            continue;
        }
        if chunk.first > next {
            let through = chunks.iter().map(|c| c.last).max().unwrap_or(next);
            return (run, Some((next, through)));
        }
        next = chunk.last + 1;
        run.push(chunk.clone());
    }
    (run, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoding(compression: Compression, encrypted: bool) -> Encoding {
        Encoding {
            compression,
            level: 3,
            recipients: if encrypted {
                vec![age::x25519::Identity::generate().to_public()]
            } else {
                Vec::new()
            },
        }
    }

    #[test]
    fn a_chunk_key_parses_back() {
        for (compression, encrypted) in [
            (Compression::None, false),
            (Compression::Zstd, false),
            (Compression::None, true),
            (Compression::Zstd, true),
        ] {
            let enc = encoding(compression, encrypted);
            let key = chunk_key("task_queue", 7, 42, &enc);
            let chunk = parse_chunk("task_queue", &key, 10).unwrap();
            assert_eq!((chunk.first, chunk.last), (7, 42));
            assert_eq!(
                (chunk.compression, chunk.encryption),
                (compression, enc.encryption())
            );
            assert!(parse_chunk("task_dead_letter", &key, 10).is_none());
        }
        assert!(parse_chunk("t", "t/log/x.log", 1).is_none());
        assert!(parse_chunk("t", "t/20261202T100000.000Z.manifest.json", 1).is_none());
    }

    fn chunk(first: u64, last: u64) -> Chunk {
        Chunk {
            key: format!("{first}-{last}"),
            first,
            last,
            bytes: 1,
            compression: Compression::None,
            encryption: Encryption::None,
        }
    }

    #[test]
    fn a_run_stops_at_the_first_missing_chunk() {
        let chunks = [chunk(1, 5), chunk(6, 9), chunk(10, 10), chunk(14, 20)];
        let (run, gap) = run_after(&chunks, 7);
        assert_eq!(run.iter().map(|c| c.first).collect::<Vec<_>>(), vec![6, 10]);
        assert_eq!(gap, Some((11, 20)));
        let (run, gap) = run_after(&chunks[..3], 0);
        assert_eq!(run.len(), 3);
        assert_eq!(gap, None);
        assert_eq!(run_after(&chunks, 20), (Vec::new(), None));
    }
}
