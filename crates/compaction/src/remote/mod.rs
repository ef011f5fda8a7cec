//! Off-site backups in S3-compatible object storage (AWS S3, MinIO, Ceph RGW, R2...) and
//! disaster recovery from the bucket alone.
//!
//! After each verified local backup the [`Uploader`] thread copies it off-site: compressed
//! (zstd), optionally encrypted (age, X25519 recipients: the standard `age` tool decrypts it),
//! streamed in parts, with its manifest uploaded last as the commit marker. A remote that is
//! down, slow or refusing never blocks local backups, compactions or the tables: a failed
//! upload is an `upload_failed` event and a line in `/health`, and is tried again after the
//! next backup run.
//!
//! # Layout in the bucket
//!
//! `<prefix>/<table>/<id>.redb[.zst][.age]` (the object) and
//! `<prefix>/<table>/<id>.manifest.json` ([`RemoteManifest`]: table, id, records, plain size
//! and blake3, object size and blake3, compression, encryption, format version, log
//! position). A backup without its manifest does not exist for any reader.
//! `<prefix>/<table>/log/<first:020>-<last:020>.log[.zst][.age]`: the table's change log,
//! shipped every `sync_interval` by the [`Shipper`], one PUT per chunk.
//!
//! # Where things are
//!
//! - `offsite.rs`: [`Offsite`], the façade: settings, bucket, keys, status, readers.
//! - `bucket.rs`: the S3 client behind blocking calls (credentials: the environment, then
//!   `profile.rs`, the shared credentials file, then the instance's role). **The tokio runtime lives there and
//!   nowhere else**: owners stay plain threads and the rest of the crate calls plain functions.
//! - `codec.rs`: zstd and age, streamed, hashing both sides. `manifest.rs`: keys, the remote
//!   manifest, listing a table.
//! - `upload.rs`: one backup up. `sync.rs`: an upload pass over the tables
//!   ([`Offsite::upload_pending`]). `uploader.rs`: the thread running passes after backups.
//! - `fetch.rs`: one backup down and verified. `list.rs`: `backups --remote` and
//!   `verify --remote`. `restore.rs`: `restore --from remote`. `recover.rs`:
//!   `recover --from remote` ([`recover_data_dir`]): newest verified backups plus the
//!   shipped change log after them. `retention.rs`: remote `keep`, backups and chunks.
//! - `chunks.rs`: change-log chunks in the bucket, `<table>/log/<first>-<last>.log[.zst][.age]`.
//!   `ship.rs`: [`Offsite::ship_logs`] and the [`Shipper`] thread, every `sync_interval`.
//! - `error.rs`: the error of each operation.

mod bucket;
mod chunks;
mod codec;
mod error;
mod fetch;
mod list;
mod manifest;
mod offsite;
mod profile;
mod recover;
mod restore;
mod retention;
mod ship;
mod sync;
mod upload;
mod uploader;
mod worker;

pub use self::bucket::Credentials;
pub use self::codec::Encryption;
pub use self::error::{
    ChunkError, OpenRemoteError, RecoverError, RemoteError, RemoteRestoreError, RemoteVerifyError,
    UploadError,
};
pub use self::list::RemoteBackupInfo;
pub use self::manifest::{REMOTE_MANIFEST_FORMAT, RemoteManifest};
pub use self::offsite::{Offsite, ReadingGuard};
pub use self::recover::{RecoverFailure, RecoverReport, recover_data_dir, recover_data_dir_at};
pub use self::ship::{ShipFailure, ShipPass, ShippedChunk, Shipper};
pub use self::sync::UploadPass;
pub use self::uploader::Uploader;
pub use crate::report::{
    RemoteHealth, RemoteTableStats, RemoteUpload, RemoteUploadFailure, ShippedLog,
};
