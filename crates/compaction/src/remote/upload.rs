//! Copying one verified local backup off-site ([`upload_backup`]): the file is streamed
//! through the codec (zstd, age) into the object, in parts, while the plain bytes are hashed;
//! only when they match the local manifest's blake3 (the bytes that were verified) is the
//! object completed, and only then is the remote manifest written, last. An upload that
//! stops at any point leaves no manifest, so nothing a listing shows.
//!
//! The backup file is read through the shared maintenance I/O pacer ([`Pacer`]): an upload
//! takes its share of the disk with compactions, backups and scrubs, and `auto` slows it
//! down when the tables' commits slow down. `max_upload_rate` is a separate cap, on the
//! network side.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use store_core::{Pacer, Progress};

use super::bucket::{Bucket, stream_failure};
use super::codec::{Encoding, HashingWriter, encode};
use super::error::UploadError;
use super::manifest::{REMOTE_MANIFEST_FORMAT, RemoteManifest, manifest_key};
use crate::backup::BackupManifest;

/// The result of one upload.
#[derive(Debug)]
pub(crate) struct Uploaded {
    /// What the bucket now holds.
    pub(crate) manifest: RemoteManifest,
    /// Wall time.
    pub(crate) duration: Duration,
}

/// A reader whose every read is paid to the pacer and advances the upload's progress.
struct PacedReader<'a, R> {
    inner: R,
    pacer: &'a Pacer,
    progress: &'a Progress,
}

impl<R: Read> Read for PacedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pacer.pace(n as u64);
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// An I/O failure of the upload: the bucket's, when that is what it is.
fn upload_io(what: &str, e: io::Error) -> UploadError {
    match stream_failure(e) {
        Ok(remote) => UploadError::Remote(remote),
        Err(source) => UploadError::Io {
            what: what.to_string(),
            source,
        },
    }
}

/// Upload the backup file `path` of the table `local.table`, described by `local`, reading it
/// through `pacer` (see the module doc); `progress` is set to the file's bytes and advanced by
/// those read.
pub(crate) fn upload_backup(
    bucket: &Bucket,
    encoding: &Encoding,
    max_rate: u64,
    pacer: &Pacer,
    progress: &Progress,
    path: &Path,
    local: &BackupManifest,
) -> Result<Uploaded, UploadError> {
    let started = Instant::now();
    let table = local.table.as_str();
    progress.set_total(local.bytes);
    let file = File::open(path).map_err(|source| UploadError::Io {
        what: format!("opening {}", path.display()),
        source,
    })?;
    let mut file = PacedReader {
        inner: file,
        pacer,
        progress,
    };
    let object = format!("{table}/{}{}", local.id, encoding.suffix());
    let writer = HashingWriter::new(bucket.writer(&object, max_rate));
    let (writer, plain) =
        encode(&mut file, writer, encoding).map_err(|e| upload_io("encoding the backup", e))?;
    let (writer, digest) = writer.into_parts();
    let actual = plain.hex();
    if actual != local.blake3 || plain.bytes != local.bytes {
        // Dropping the writer aborts the object: it never becomes visible.
        return Err(UploadError::LocalChanged {
            id: local.id.clone(),
            expected: local.blake3.clone(),
            actual,
        });
    }
    writer
        .finish()
        .map_err(|e| upload_io("completing the object", e))?;
    let manifest = RemoteManifest {
        format: REMOTE_MANIFEST_FORMAT,
        table: table.to_string(),
        id: local.id.clone(),
        records: local.records,
        plain_bytes: plain.bytes,
        plain_blake3: local.blake3.clone(),
        object,
        object_bytes: digest.bytes,
        object_blake3: digest.hex(),
        compression: encoding.compression,
        encryption: encoding.encryption(),
        created_at: local.created_at,
        uploaded_at: SystemTime::now(),
        log_position: local.log_position,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(UploadError::EncodeManifest)?;
    bucket.put(&manifest_key(table, &local.id), Bytes::from(json))?;
    Ok(Uploaded {
        manifest,
        duration: started.elapsed(),
    })
}
