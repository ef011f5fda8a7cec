//! Restoring one table from the bucket ([`Offsite::restore`], `restore --from remote`); the
//! fetch it starts with is also the first step of `recover --from remote` (`recover.rs`).
//!
//! A restore fetches the chosen backup (the newest that verifies, or the one asked for) into
//! `<data_dir>/.remote-restore-<table>.tmp` and verifies it fully before anything else
//! happens; only then does it take the maintenance lock and hand the file to the table's
//! owner, exactly as a local restore does (the replaced file goes to quarantine). A backup
//! that is damaged is skipped for an older one; a failure of the bucket or the disk stops the
//! restore, so it never settles for an older backup because the network hiccuped.

use std::path::PathBuf;

use store_owners::TABLE_NAMES;

use super::error::{RemoteRestoreError, RemoteVerifyError};
use super::fetch::fetch_verified;
use super::manifest::{RemoteManifest, list_table};
use super::offsite::{Offsite, ReadingGuard};
use crate::operations::{OperationGuard, OperationKind};
use crate::recovery::BackupSelector;
use crate::report::{RecoveryReport, RecoveryTrigger, RejectedBackup};

/// A verified off-site backup fetched into the data dir, not swapped in yet. The backup
/// stays marked as being read (remote retention leaves it) until this drops.
pub(crate) struct Fetched<'a> {
    /// The backup.
    pub(crate) id: String,
    /// Its manifest.
    pub(crate) manifest: RemoteManifest,
    /// The work file holding exactly the verified bytes.
    pub(crate) staged: PathBuf,
    /// The newer backups refused on the way.
    pub(crate) rejected: Vec<RejectedBackup>,
    _reading: ReadingGuard<'a>,
    /// The restore, listed among the running operations until this is dropped.
    _operation: OperationGuard,
}

impl Offsite {
    /// Restore `table` from an off-site backup (see the module doc). Refused with
    /// [`crate::RestoreError::Busy`] inside [`RemoteRestoreError::Restore`] when another
    /// maintenance operation runs at the moment of the swap.
    pub fn restore(
        &self,
        table: &str,
        which: BackupSelector,
        trigger: RecoveryTrigger,
    ) -> Result<RecoveryReport, RemoteRestoreError> {
        let mut fetched = self.fetch_for_restore(table, &which)?;
        let result = self.maintainer.restore_verified_file(
            table,
            crate::recovery::VerifiedFile {
                id: &fetched.id,
                staged: &fetched.staged,
                records: fetched.manifest.records,
                rejected: std::mem::take(&mut fetched.rejected),
            },
            trigger,
            None,
        );
        let _ = std::fs::remove_file(&fetched.staged);
        tracing::info!(table, id = %fetched.id, ok = result.is_ok(), "restore from the bucket");
        result.map_err(RemoteRestoreError::Restore)
    }

    /// Fetch and verify the backup of `table` that `which` picks (the newest that verifies,
    /// or the one asked for) into `<data_dir>/.remote-restore-<table>.tmp`.
    pub(crate) fn fetch_for_restore(
        &self,
        table: &str,
        which: &BackupSelector,
    ) -> Result<Fetched<'_>, RemoteRestoreError> {
        if !TABLE_NAMES.contains(&table) {
            return Err(RemoteRestoreError::UnknownTable(table.to_string()));
        }
        let candidates = match which {
            BackupSelector::Id(id) => vec![id.clone()],
            BackupSelector::LatestVerified => {
                let listing = list_table(&self.bucket, table).map_err(RemoteRestoreError::List)?;
                self.record_listing(table, &listing);
                listing.ids
            }
        };
        let staged = self
            .maintainer
            .data_dir()
            .join(format!(".remote-restore-{table}.tmp"));
        let mut rejected = Vec::new();
        let operation = self
            .maintainer
            .operations
            .begin(OperationKind::Restore, table, "download");
        for id in candidates {
            let reading = self.reading(table, &id);
            match fetch_verified(
                &self.bucket,
                table,
                &id,
                &self.identities,
                &staged,
                self.maintainer.stores().pacer(),
                operation.progress(),
            ) {
                Ok(manifest) => {
                    return Ok(Fetched {
                        id,
                        manifest,
                        staged,
                        rejected,
                        _reading: reading,
                        _operation: operation,
                    });
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&staged);
                    tracing::warn!(table, id = %id, error = %e, "off-site backup refused for restore");
                    rejected.push(RejectedBackup {
                        id: id.clone(),
                        reason: e.to_string(),
                    });
                    let skip = e.is_corruption() || matches!(e, RemoteVerifyError::NotFound { .. });
                    if matches!(which, BackupSelector::Id(_)) || !skip {
                        return Err(RemoteRestoreError::Verify { id, source: e });
                    }
                }
            }
        }
        Err(RemoteRestoreError::NoVerifiedBackup {
            table: table.to_string(),
            rejected,
        })
    }
}
