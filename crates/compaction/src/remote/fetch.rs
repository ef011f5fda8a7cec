//! Fetching an off-site backup and verifying it ([`fetch_verified`]), what `verify --remote`,
//! a restore and a recovery all do: the manifest is read and checked, the object streamed
//! through decryption and decompression into a local work file (0600) while both are hashed,
//! then the object's size and blake3, the backup's size and blake3, redb's integrity check and
//! the record count are compared with the manifest. The work file then holds exactly the
//! verified bytes.
//!
//! Failures of the bucket, or of the local disk, are told apart from damage
//! ([`RemoteVerifyError::is_corruption`]): only damage lets a restore skip a backup.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use store_core::{Pacer, Progress};

use super::bucket::{Bucket, stream_failure};
use super::codec::{DecodeError, HashingReader, decode};
use super::error::{RemoteError, RemoteVerifyError};
use super::manifest::{RemoteManifest, read_manifest};
use crate::backup::{FILE_MODE, VerifyError, integrity_and_count, is_valid_backup_id};

/// A failure to write the local work file, carried through `io::Error` so that it is never
/// taken for damage of the object.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct LocalWriteFailure(io::Error);

/// The work file, whose write errors are marked as local; what is written advances the
/// progress.
struct WorkFile<'a>(File, &'a Progress);

impl Write for WorkFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self
            .0
            .write(buf)
            .map_err(|e| io::Error::other(LocalWriteFailure(e)))?;
        self.1.advance(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0
            .flush()
            .map_err(|e| io::Error::other(LocalWriteFailure(e)))
    }
}

/// Classify an I/O failure met while decoding: the bucket's, the local disk's, or damage.
fn classify(e: io::Error) -> RemoteVerifyError {
    let e = match stream_failure(e) {
        Ok(remote) => return RemoteVerifyError::Remote(remote),
        Err(e) => e,
    };
    if e.get_ref().is_some_and(|i| i.is::<LocalWriteFailure>()) {
        return RemoteVerifyError::Io {
            what: "writing the work file".into(),
            source: e,
        };
    }
    RemoteVerifyError::Decode(e)
}

fn mismatch(
    what: &'static str,
    expected: impl ToString,
    actual: impl ToString,
) -> RemoteVerifyError {
    RemoteVerifyError::ObjectMismatch {
        what,
        expected: expected.to_string(),
        actual: actual.to_string(),
    }
}

/// Fetch backup `id` of `table` into `work` (created here; the caller removes or uses it) and
/// verify it; see the module doc. `progress` is set to the bytes it moves: the backup's
/// plain bytes twice (written into `work`, then read by the integrity check).
pub(crate) fn fetch_verified(
    bucket: &Bucket,
    table: &str,
    id: &str,
    identities: &[Box<dyn age::Identity + Send + Sync>],
    work: &Path,
    pacer: &std::sync::Arc<Pacer>,
    progress: &Progress,
) -> Result<RemoteManifest, RemoteVerifyError> {
    if !is_valid_backup_id(id) {
        return Err(RemoteVerifyError::InvalidBackupId(id.to_string()));
    }
    let manifest = read_manifest(bucket, table, id)?;
    let reader = match bucket.reader(&manifest.object) {
        Ok(reader) => reader,
        Err(RemoteError::NotFound { .. }) => {
            return Err(RemoteVerifyError::ObjectMissing(manifest.object));
        }
        Err(e) => return Err(RemoteVerifyError::Remote(e)),
    };
    let _ = store_core::fsutil::remove_file_gradually(work, pacer);
    progress.set_total(progress.read().bytes_done + 2 * manifest.plain_bytes);
    progress.set_phase("download");
    let local_io = |what: &str| {
        let what = format!("{what} {}", work.display());
        move |source| RemoteVerifyError::Io { what, source }
    };
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(work)
        .map_err(local_io("creating"))?;
    let mut output = WorkFile(file, progress);
    let mut input = HashingReader::new(reader);
    let plain = decode(
        &mut input,
        &mut output,
        manifest.compression,
        manifest.encryption,
        identities,
    )
    .map_err(|e| match e {
        DecodeError::Io(e) => classify(e),
        DecodeError::Decrypt(e) => RemoteVerifyError::Decrypt(e),
        DecodeError::NoIdentity => RemoteVerifyError::NoIdentity,
    })?;
    // Whatever the decoders left unread still belongs to the object's checksum.
    io::copy(&mut input, &mut io::sink()).map_err(classify)?;
    let object = &input.digest;
    if object.bytes != manifest.object_bytes {
        return Err(mismatch("size", manifest.object_bytes, object.bytes));
    }
    if object.hex() != manifest.object_blake3 {
        return Err(mismatch("blake3", &manifest.object_blake3, object.hex()));
    }
    if plain.bytes != manifest.plain_bytes {
        return Err(RemoteVerifyError::Backup(VerifyError::SizeMismatch {
            expected: manifest.plain_bytes,
            actual: plain.bytes,
        }));
    }
    if plain.hex() != manifest.plain_blake3 {
        return Err(RemoteVerifyError::Backup(VerifyError::ChecksumMismatch {
            expected: manifest.plain_blake3.clone(),
            actual: plain.hex(),
        }));
    }
    output.0.sync_all().map_err(local_io("fsync of"))?;
    drop(output);
    progress.set_phase("check");
    let records = integrity_and_count(work, pacer, progress).map_err(RemoteVerifyError::Backup)?;
    if records != manifest.records {
        return Err(RemoteVerifyError::Backup(
            VerifyError::RecordCountMismatch {
                expected: manifest.records,
                actual: records,
            },
        ));
    }
    Ok(manifest)
}

/// Read an identity file (age's format: `AGE-SECRET-KEY-1...` lines, `#` comments).
pub(crate) fn read_identities(
    path: &Path,
) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>, super::error::OpenRemoteError> {
    use super::error::OpenRemoteError;
    let mut text = String::new();
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|source| OpenRemoteError::ReadKeyFile {
            key: "identity_file",
            path: path.to_path_buf(),
            source,
        })?;
    let file = age::IdentityFile::from_buffer(text.as_bytes()).map_err(|source| {
        OpenRemoteError::ReadKeyFile {
            key: "identity_file",
            path: path.to_path_buf(),
            source,
        }
    })?;
    file.into_identities()
        .map_err(|source| OpenRemoteError::BadIdentity {
            path: path.to_path_buf(),
            source,
        })
}
