//! The errors of off-site backups: opening the remote ([`OpenRemoteError`]), one request to
//! the bucket ([`RemoteError`], which names refused credentials and a missing bucket as
//! such), an upload ([`UploadError`]), a remote backup that does not verify
//! ([`RemoteVerifyError`], corruption told from the environment), a restore from the bucket
//! ([`RemoteRestoreError`]) and the recovery of a whole data dir ([`RecoverError`]).

use std::io;
use std::path::PathBuf;

use store_owners::OpenStoresError;

use crate::backup::{ListBackupsError, VerifyError};
use crate::recovery::RestoreError;
use crate::report::RejectedBackup;

/// The `[remote]` settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenRemoteError {
    /// A setting is wrong; `key` is its name in `[remote]`.
    #[error("key `{key}`: {message}")]
    Config {
        /// The key at fault.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The recipients or identity file cannot be read.
    #[error("key `{key}`: cannot read {}: {source}", path.display())]
    ReadKeyFile {
        /// `encryption_recipients` or `identity_file`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// A line of the recipients file is not an age X25519 recipient.
    #[error("key `encryption_recipients`: {}:{line}: not an age X25519 recipient: {reason}", path.display())]
    BadRecipient {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The parser's reason.
        reason: String,
    },
    /// The identity file holds no usable identity.
    #[error("key `identity_file`: {}: {source}", path.display())]
    BadIdentity {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: age::DecryptError,
    },
    /// The S3 client could not be built from the settings and the environment.
    #[error("the S3 client: {0}")]
    Client(#[source] object_store::Error),
    /// The runtime of the remote's I/O did not start.
    #[error("starting the remote's I/O threads: {0}")]
    Runtime(#[source] io::Error),
}

/// One request to the bucket failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The server refused the credentials or the request (HTTP 401/403).
    #[error(
        "{what}: the server refused the credentials (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's policy): {source}"
    )]
    Refused {
        /// The request.
        what: String,
        /// The failure.
        source: Box<object_store::Error>,
    },
    /// The bucket does not exist.
    #[error("{what}: bucket {bucket:?} not found: {source}")]
    NoBucket {
        /// The request.
        what: String,
        /// The bucket.
        bucket: String,
        /// The failure.
        source: Box<object_store::Error>,
    },
    /// The object does not exist.
    #[error("{what}: no such object: {source}")]
    NotFound {
        /// The request.
        what: String,
        /// The failure.
        source: Box<object_store::Error>,
    },
    /// Anything else (the server down or too slow after the retries, a server error...).
    #[error("{what}: {source}")]
    Store {
        /// The request.
        what: String,
        /// The failure.
        source: Box<object_store::Error>,
    },
}

impl RemoteError {
    /// Classify `source`, the failure of request `what` on `bucket`. The client keeps S3's
    /// error codes only in its message, so the two an operator must tell apart at once,
    /// `NoSuchBucket` and refused credentials, are recognised there too.
    pub(crate) fn of(what: String, bucket: &str, source: object_store::Error) -> RemoteError {
        let text = source.to_string();
        let source = Box::new(source);
        let refused = [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
        ];
        if text.contains("NoSuchBucket") {
            return RemoteError::NoBucket {
                what,
                bucket: bucket.to_string(),
                source,
            };
        }
        match *source {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => RemoteError::Refused { what, source },
            _ if refused.iter().any(|code| text.contains(code)) => {
                RemoteError::Refused { what, source }
            }
            object_store::Error::NotFound { .. } => RemoteError::NotFound { what, source },
            _ => RemoteError::Store { what, source },
        }
    }

    /// True when the failure is the bucket's as a whole (down, refusing, missing), not one
    /// object's: an upload pass stops there instead of failing table after table.
    pub fn is_bucket_wide(&self) -> bool {
        !matches!(self, RemoteError::NotFound { .. })
    }
}

/// Copying one backup off-site failed; nothing of it is visible in the bucket (its manifest,
/// written last, is not there).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// A request to the bucket failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Reading the local backup or encoding it failed.
    #[error("{what}: {source}")]
    Io {
        /// The step.
        what: String,
        /// The failure.
        source: io::Error,
    },
    /// The local backup file no longer has the bytes its manifest describes.
    #[error(
        "local backup {id} changed since it was verified: blake3 {actual}, manifest says {expected}"
    )]
    LocalChanged {
        /// The backup.
        id: String,
        /// From the local manifest.
        expected: String,
        /// Read now.
        actual: String,
    },
    /// Listing the local backups failed.
    #[error("listing local backups: {0}")]
    ListLocal(#[source] ListBackupsError),
    /// Encryption could not start.
    #[error("encrypting: {0}")]
    Encrypt(#[source] age::EncryptError),
    /// The manifest did not serialize.
    #[error("encoding the remote manifest: {0}")]
    EncodeManifest(#[source] serde_json::Error),
}

/// A remote backup is unusable, or could not be checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteVerifyError {
    /// Not one of the nine tables.
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    /// The id has characters a backup id never has.
    #[error("invalid backup id {0:?}")]
    InvalidBackupId(String),
    /// No manifest for this backup in the bucket.
    #[error("no off-site backup {id} of table {table}")]
    NotFound {
        /// The table.
        table: String,
        /// The id.
        id: String,
    },
    /// A request to the bucket failed (not a sign of damage).
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The manifest is not the JSON of a remote manifest.
    #[error("remote manifest unusable: {0}")]
    ManifestParse(#[source] serde_json::Error),
    /// The manifest is of an unknown format, or describes another backup.
    #[error("remote manifest unusable: {0}")]
    Manifest(String),
    /// The manifest exists, its object does not.
    #[error("the object {0} of the manifest is missing")]
    ObjectMissing(String),
    /// The object's size or checksum differs from the manifest.
    #[error("object {what} is {actual}, manifest says {expected}")]
    ObjectMismatch {
        /// `size` or `blake3`.
        what: &'static str,
        /// From the manifest.
        expected: String,
        /// Found.
        actual: String,
    },
    /// The object does not decrypt or decompress.
    #[error("the object does not decode: {0}")]
    Decode(#[source] io::Error),
    /// The object is encrypted and no identity was configured, or it does not decrypt it.
    #[error("cannot decrypt: {0}")]
    Decrypt(#[source] age::DecryptError),
    /// The object is encrypted and no `identity_file` is configured.
    #[error("the backup is encrypted and no identity_file is configured")]
    NoIdentity,
    /// The decoded backup differs from the manifest, or fails the local checks.
    #[error("the decoded backup does not verify: {0}")]
    Backup(#[source] VerifyError),
    /// A local file-system step failed.
    #[error("{what}: {source}")]
    Io {
        /// The step.
        what: String,
        /// The failure.
        source: io::Error,
    },
}

impl RemoteVerifyError {
    /// True when the remote backup itself is bad: only then may a restore skip it for an
    /// older one.
    pub fn is_corruption(&self) -> bool {
        match self {
            RemoteVerifyError::Manifest(_)
            | RemoteVerifyError::ManifestParse(_)
            | RemoteVerifyError::ObjectMissing(_)
            | RemoteVerifyError::ObjectMismatch { .. }
            | RemoteVerifyError::Decode(_) => true,
            RemoteVerifyError::Backup(e) => e.is_corruption(),
            // A header or a payload that does not decrypt is damage; keys that do not match,
            // or a read that failed, are not.
            RemoteVerifyError::Decrypt(e) => !matches!(
                e,
                age::DecryptError::NoMatchingKeys | age::DecryptError::Io(_)
            ),
            _ => false,
        }
    }
}

/// A restore from the bucket was refused or failed; the table's file keeps serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteRestoreError {
    /// Not one of the nine tables.
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    /// The off-site backups could not be listed.
    #[error("listing off-site backups: {0}")]
    List(#[source] RemoteError),
    /// The backup asked for does not verify (or could not be fetched).
    #[error("off-site backup {id} does not verify: {source}")]
    Verify {
        /// The backup.
        id: String,
        /// Why.
        source: RemoteVerifyError,
    },
    /// No off-site backup of the table verifies.
    #[error("no verified off-site backup of table {table} ({} rejected)", rejected.len())]
    NoVerifiedBackup {
        /// The table.
        table: String,
        /// The backups tried and refused.
        rejected: Vec<RejectedBackup>,
    },
    /// The verified backup could not be swapped in.
    #[error("{0}")]
    Restore(#[source] RestoreError),
    /// The shipped change log could not be listed or fetched (a failure of the bucket or of
    /// the disk: a damaged chunk is a gap, reported, not an error).
    #[error("shipped change log: {0}")]
    Log(#[source] ChunkError),
    /// The fetched backup did not open to apply the shipped change log.
    #[error("opening {} to apply the shipped change log: {source}", path.display())]
    OpenFetched {
        /// The fetched backup.
        path: PathBuf,
        /// The store's failure.
        source: store_core::OpenError,
    },
    /// The shipped groups could not be applied to the fetched backup.
    #[error("applying the shipped change log to {}: {source}", path.display())]
    Apply {
        /// The fetched backup.
        path: PathBuf,
        /// The store's failure.
        source: store_core::WriteError,
    },
}

/// A change-log chunk could not be shipped, listed or fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// The bucket failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The local change log could not be read (damage included).
    #[error("reading the local change log: {0}")]
    Log(#[source] store_core::changelog::LogError),
    /// Compressing, encrypting, decrypting or decompressing failed.
    #[error("coding chunk {key}: {source}")]
    Codec {
        /// The chunk's key.
        key: String,
        /// Why.
        source: io::Error,
    },
    /// The chunk is encrypted and its identities do not open it.
    #[error("decrypting chunk {key}: {source}")]
    Decrypt {
        /// The chunk's key.
        key: String,
        /// Why.
        source: age::DecryptError,
    },
    /// The chunk is encrypted and no `identity_file` is set.
    #[error("chunk {0} is encrypted and no identity_file is set")]
    NoIdentity(String),
    /// The chunk decodes but does not hold what its name says, or its records are damaged.
    #[error("chunk {key} is damaged: {detail}")]
    Damaged {
        /// The chunk's key.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// Writing the chunk as a local segment failed.
    #[error("writing {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// `recover --from remote` could not rebuild the data dir.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoverError {
    /// The target data dir exists and is not empty.
    #[error("{} is not empty: recover rebuilds a data dir from nothing", .0.display())]
    NotEmpty(PathBuf),
    /// The target dir cannot be read or created.
    #[error("{}: {source}", path.display())]
    Io {
        /// The dir.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The fresh tables did not open.
    #[error("opening the new tables: {0}")]
    Open(#[source] OpenStoresError),
    /// The remote cannot be used.
    #[error("remote: {0}")]
    Remote(#[source] OpenRemoteError),
}
