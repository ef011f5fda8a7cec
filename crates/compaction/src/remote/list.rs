//! Listing off-site backups ([`Offsite::list`], `backups --remote`) and verifying them
//! ([`Offsite::verify`], `verify --remote`). Without `verify` a listing checks each manifest
//! and that its object is there with the recorded size; with it, each backup is fetched and
//! fully verified (see `fetch.rs`), through a work file in the data dir that is removed after.

use serde::{Deserialize, Serialize};
use store_owners::TABLE_NAMES;

use super::error::{RemoteError, RemoteVerifyError};
use super::fetch::fetch_verified;
use super::manifest::{TableListing, list_table, read_manifest};
use super::offsite::Offsite;
use crate::backup::BackupState;
use crate::operations::OperationKind;
use crate::report::RemoteTableStats;

/// One off-site backup as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteBackupInfo {
    /// The table.
    pub table: String,
    /// The backup id.
    pub id: String,
    /// Its manifest, when readable.
    pub manifest: Option<super::RemoteManifest>,
    /// Verified, unchecked (manifest and object size) or corrupt.
    #[serde(flatten)]
    pub state: BackupState,
}

impl Offsite {
    /// The off-site backups of every table, table by table, newest first. With `verify`,
    /// each is fetched and fully verified (slow: downloads everything).
    pub fn list(&self, verify: bool) -> Result<Vec<RemoteBackupInfo>, RemoteError> {
        let mut all = Vec::new();
        for table in TABLE_NAMES {
            all.extend(self.backups_of(table, verify)?);
        }
        Ok(all)
    }

    /// The off-site backups of `table`, newest first (see [`Offsite::list`]).
    pub fn backups_of(
        &self,
        table: &str,
        verify: bool,
    ) -> Result<Vec<RemoteBackupInfo>, RemoteError> {
        let listing = list_table(&self.bucket, table)?;
        self.record_listing(table, &listing);
        let mut found = Vec::new();
        for id in &listing.ids {
            let manifest = match read_manifest(&self.bucket, table, id) {
                Err(RemoteVerifyError::Remote(e)) => return Err(e),
                other => other,
            };
            let state = match (&manifest, verify) {
                (Err(e), _) => BackupState::Corrupt(e.to_string()),
                (Ok(_), true) => match self.verify(table, id) {
                    Ok(_) => BackupState::Verified,
                    Err(e) => BackupState::Corrupt(e.to_string()),
                },
                (Ok(m), false) => {
                    let object = listing.objects.iter().find(|o| o.key == m.object);
                    match object {
                        None => BackupState::Corrupt(format!("object {} missing", m.object)),
                        Some(o) if o.bytes != m.object_bytes => BackupState::Corrupt(format!(
                            "object size is {} bytes, manifest says {}",
                            o.bytes, m.object_bytes
                        )),
                        Some(_) => BackupState::Unchecked,
                    }
                }
            };
            found.push(RemoteBackupInfo {
                table: table.to_string(),
                id: id.clone(),
                manifest: manifest.ok(),
                state,
            });
        }
        Ok(found)
    }

    /// Fetch backup `id` of `table` and verify it fully: object checksum, decryption,
    /// decompression, backup checksum, redb's integrity check, record count.
    pub fn verify(
        &self,
        table: &str,
        id: &str,
    ) -> Result<super::RemoteManifest, RemoteVerifyError> {
        if !TABLE_NAMES.contains(&table) {
            return Err(RemoteVerifyError::UnknownTable(table.to_string()));
        }
        let _reading = self.reading(table, id);
        let operation = self
            .maintainer
            .operations
            .begin(OperationKind::Verify, table, "download");
        let work = self
            .maintainer
            .data_dir()
            .join(format!(".remote-verify-{table}.tmp"));
        let result = fetch_verified(
            &self.bucket,
            table,
            id,
            &self.identities,
            &work,
            self.maintainer.stores().pacer(),
            operation.progress(),
        );
        let _ = store_core::fsutil::remove_file_gradually(&work, self.maintainer.stores().pacer());
        result
    }

    /// Keep what a listing of `table` found for `/health` and the metrics.
    pub(crate) fn record_listing(&self, table: &str, listing: &TableListing) {
        let stats = RemoteTableStats {
            table: table.to_string(),
            backups: listing.ids.len() as u64,
            objects: listing.objects.len() as u64,
            bytes: listing.bytes(),
            newest: listing.ids.first().cloned(),
        };
        let mut status = self.status();
        match status.tables.iter_mut().find(|t| t.table == table) {
            Some(entry) => *entry = stats,
            None => {
                status.tables.push(stats);
                status.tables.sort_by_key(|t| {
                    TABLE_NAMES
                        .iter()
                        .position(|n| *n == t.table)
                        .unwrap_or(usize::MAX)
                });
            }
        }
    }
}
