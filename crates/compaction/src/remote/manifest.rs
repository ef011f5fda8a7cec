//! What identifies an off-site backup in the bucket: its object `<table>/<id>.redb[.zst][.age]`
//! and its manifest `<table>/<id>.manifest.json`, uploaded last: the commit marker. A
//! backup without its manifest is invisible (an interrupted upload); the listing of a table
//! ([`list_table`]) reads the manifests and counts everything else as leftovers.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::bucket::{Bucket, Listed};
use super::codec::Encryption;
use super::error::{RemoteError, RemoteVerifyError};
use crate::backup::is_valid_backup_id;
use crate::config::Compression;

/// Version of the remote manifest format written by this code.
pub const REMOTE_MANIFEST_FORMAT: u32 = 1;

/// The manifest of one off-site backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteManifest {
    /// [`REMOTE_MANIFEST_FORMAT`].
    pub format: u32,
    /// The table.
    pub table: String,
    /// The backup id (the local backup's).
    pub id: String,
    /// Records in the backup.
    pub records: u64,
    /// Size of the backup file.
    pub plain_bytes: u64,
    /// blake3 of the backup file, lowercase hex.
    pub plain_blake3: String,
    /// The object's key, relative to the prefix.
    pub object: String,
    /// Size of the object.
    pub object_bytes: u64,
    /// blake3 of the object, lowercase hex.
    pub object_blake3: String,
    /// `zstd` or `none`.
    pub compression: Compression,
    /// `none` or `age-x25519`.
    pub encryption: Encryption,
    /// When the backup's snapshot was taken.
    #[serde(with = "humantime_serde")]
    pub created_at: SystemTime,
    /// When the upload ended.
    #[serde(with = "humantime_serde")]
    pub uploaded_at: SystemTime,
    /// The last change-log group the backup holds (the local manifest's): recovery applies
    /// the shipped groups after it. None for backups taken without a change log, or uploaded
    /// before positions were recorded.
    #[serde(default)]
    pub log_position: Option<u64>,
}

/// The key of the manifest of backup `id` of `table`.
pub(crate) fn manifest_key(table: &str, id: &str) -> String {
    format!("{table}/{id}.manifest.json")
}

/// Read and check the manifest of backup `id` of `table`.
pub(crate) fn read_manifest(
    bucket: &Bucket,
    table: &str,
    id: &str,
) -> Result<RemoteManifest, RemoteVerifyError> {
    let bytes = match bucket.get(&manifest_key(table, id)) {
        Ok(bytes) => bytes,
        Err(RemoteError::NotFound { .. }) => {
            return Err(RemoteVerifyError::NotFound {
                table: table.to_string(),
                id: id.to_string(),
            });
        }
        Err(e) => return Err(RemoteVerifyError::Remote(e)),
    };
    let manifest: RemoteManifest =
        serde_json::from_slice(&bytes).map_err(RemoteVerifyError::ManifestParse)?;
    if manifest.format != REMOTE_MANIFEST_FORMAT {
        return Err(RemoteVerifyError::Manifest(format!(
            "format {} is not supported (this build reads format {REMOTE_MANIFEST_FORMAT})",
            manifest.format
        )));
    }
    let object_ok = manifest
        .object
        .strip_prefix(&format!("{table}/{id}."))
        .is_some_and(|rest| !rest.contains('/'));
    if manifest.table != table || manifest.id != id || !object_ok {
        return Err(RemoteVerifyError::Manifest(format!(
            "describes backup {} of table {} (object {})",
            manifest.id, manifest.table, manifest.object
        )));
    }
    Ok(manifest)
}

/// The objects under one table's prefix, sorted out.
#[derive(Debug, Default)]
pub(crate) struct TableListing {
    /// Ids with a manifest, newest first.
    pub(crate) ids: Vec<String>,
    /// Every object with its size (manifests included).
    pub(crate) objects: Vec<Listed>,
}

impl TableListing {
    /// Bytes of every object.
    pub(crate) fn bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.bytes).sum()
    }

    /// The backup id an object belongs to: its name up to `.manifest.json` or `.redb`
    /// (ids themselves hold dots: `20261125T230102.123Z`).
    pub(crate) fn id_of<'k>(table: &str, key: &'k str) -> Option<&'k str> {
        let name = key.strip_prefix(table)?.strip_prefix('/')?;
        let end = name.find(".manifest.json").or_else(|| name.find(".redb"))?;
        let id = &name[..end];
        is_valid_backup_id(id).then_some(id)
    }
}

/// List `table`'s objects in the bucket.
pub(crate) fn list_table(bucket: &Bucket, table: &str) -> Result<TableListing, RemoteError> {
    let objects = bucket.list(table)?;
    let mut ids: Vec<String> = objects
        .iter()
        .filter_map(|o| {
            let name = o.key.strip_prefix(table)?.strip_prefix('/')?;
            let id = name.strip_suffix(".manifest.json")?;
            is_valid_backup_id(id).then(|| id.to_string())
        })
        .collect();
    ids.sort();
    ids.reverse();
    Ok(TableListing { ids, objects })
}
