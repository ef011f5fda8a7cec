//! Restoring from the bucket: one table ([`Offsite::restore`], `restore --from remote`) and a
//! whole data dir on an empty machine ([`recover_data_dir`], `recover --from remote`).
//!
//! A restore fetches the chosen backup (the newest that verifies, or the one asked for) into
//! `<data_dir>/.remote-restore-<table>.tmp` and verifies it fully before anything else
//! happens; only then does it take the maintenance lock and hand the file to the table's
//! owner, exactly as a local restore does (the replaced file goes to quarantine). A backup
//! that is damaged is skipped for an older one; a failure of the bucket or the disk stops the
//! restore, so it never settles for an older backup because the network hiccuped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use store_owners::{Stores, StoresOptions, TABLE_NAMES};

use super::bucket::Credentials;
use super::error::{RecoverError, RemoteRestoreError, RemoteVerifyError};
use super::fetch::fetch_verified;
use super::manifest::list_table;
use super::offsite::Offsite;
use crate::config::{MaintenanceConfig, RemoteConfig};
use crate::maintainer::Maintainer;
use crate::recovery::BackupSelector;
use crate::report::{RecoveryReport, RecoveryTrigger, RejectedBackup};

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
        if !TABLE_NAMES.contains(&table) {
            return Err(RemoteRestoreError::UnknownTable(table.to_string()));
        }
        let candidates = match &which {
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
        for id in candidates {
            let reading = self.reading(table, &id);
            match fetch_verified(
                &self.bucket,
                table,
                &id,
                &self.identities,
                &staged,
                self.maintainer.stores().pacer(),
            ) {
                Ok(manifest) => {
                    let result = self.maintainer.restore_verified_file(
                        table,
                        &id,
                        &staged,
                        manifest.records,
                        rejected,
                        trigger,
                    );
                    drop(reading);
                    let _ = std::fs::remove_file(&staged);
                    tracing::info!(table, id = %id, ok = result.is_ok(), "restore from the bucket");
                    return result.map_err(RemoteRestoreError::Restore);
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

/// A table `recover` could not restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverFailure {
    /// The table.
    pub table: String,
    /// Why.
    pub error: String,
}

/// What `recover --from remote` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoverReport {
    /// The rebuilt data dir.
    pub data_dir: PathBuf,
    /// The tables restored, in [`TABLE_NAMES`] order.
    pub restored: Vec<RecoveryReport>,
    /// The tables that could not be (they are empty in the new data dir).
    pub failed: Vec<RecoverFailure>,
}

/// Rebuild all nine tables in `data_dir`, which must be missing or empty, from the newest
/// verified off-site backup of each: an empty machine with only the config (and the identity
/// file, if the backups are encrypted) gets its data back. Each backup is verified before it
/// is put in place; a table whose backups all fail is reported and left empty.
pub fn recover_data_dir(
    remote: &RemoteConfig,
    credentials: &Credentials,
    data_dir: &Path,
    maintenance: MaintenanceConfig,
) -> Result<RecoverReport, RecoverError> {
    match std::fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(RecoverError::NotEmpty(data_dir.to_path_buf()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(RecoverError::Io {
                path: data_dir.to_path_buf(),
                source,
            });
        }
    }
    let stores = Stores::open(data_dir, StoresOptions::default()).map_err(RecoverError::Open)?;
    let maintainer = Arc::new(Maintainer::new(Arc::new(stores), maintenance));
    let offsite =
        Offsite::open_with(maintainer, remote, credentials).map_err(RecoverError::Remote)?;
    let mut report = RecoverReport {
        data_dir: data_dir.to_path_buf(),
        restored: Vec::new(),
        failed: Vec::new(),
    };
    for table in TABLE_NAMES {
        match offsite.restore(
            table,
            BackupSelector::LatestVerified,
            RecoveryTrigger::Manual,
        ) {
            Ok(mut restored) => {
                // What went to quarantine is the empty table opened above, not user data.
                if let Some(empty) = restored.quarantined.take() {
                    let _ = std::fs::remove_file(empty);
                }
                report.restored.push(restored);
            }
            Err(e) => {
                tracing::error!(table, error = %e, "table not recovered");
                report.failed.push(RecoverFailure {
                    table: table.to_string(),
                    error: e.to_string(),
                });
            }
        }
    }
    let _ = std::fs::remove_dir(data_dir.join("quarantine"));
    Ok(report)
}
