//! One upload pass ([`Offsite::upload_pending`]): for every table, the local backups newer
//! than the newest one off-site (at most `keep` of them, oldest first) are uploaded, then
//! remote retention runs. Each upload publishes `upload_complete`; a table that fails
//! publishes `upload_failed` and is tried again by the next pass, which the next backup run
//! starts. A pass reads backup files only: it takes no maintenance lock and never touches a
//! table, so a remote that is down or slow holds up nothing but itself.

use std::collections::BTreeSet;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use store_owners::TABLE_NAMES;

use super::error::UploadError;
use super::manifest::list_table;
use super::offsite::Offsite;
use super::upload::upload_backup;
use crate::backup::BackupState;
use crate::events::Event;
use crate::operations::OperationKind;
use crate::report::{RemoteUpload, RemoteUploadFailure};

/// What one upload pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadPass {
    /// The backups uploaded, table by table.
    pub uploads: Vec<RemoteUpload>,
    /// The tables that failed.
    pub failures: Vec<RemoteUploadFailure>,
}

impl Offsite {
    /// Upload what is not off-site yet, for every table (see the module doc). One pass at a
    /// time: a second caller waits for the first.
    pub fn upload_pending(&self) -> UploadPass {
        let _pass = self.upload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut pass = UploadPass::default();
        for table in TABLE_NAMES {
            let mut uploads = Vec::new();
            let result = self.upload_table(table, &mut uploads);
            for upload in uploads {
                self.record_upload(&upload);
                self.maintainer.events().publish(Event::UploadComplete {
                    upload: upload.clone(),
                });
                pass.uploads.push(upload);
            }
            if let Err(failed) = result {
                let (id, e) = *failed;
                tracing::error!(table, id = ?id, error = %e, "upload failed");
                let failure = RemoteUploadFailure {
                    table: table.to_string(),
                    id,
                    error: e.to_string(),
                };
                self.record_failure(&failure);
                self.maintainer.events().publish(Event::UploadFailed {
                    failure: failure.clone(),
                });
                pass.failures.push(failure);
                if matches!(&e, UploadError::Remote(r) if r.is_bucket_wide()) {
                    // The bucket is down, refusing or missing: the other tables would only
                    // fail the same way, one timeout after the other. The next pass retries.
                    break;
                }
            }
        }
        if pass.failures.is_empty() {
            // A pass where every table is off-site clears the failure `/health` showed.
            let mut status = self.status();
            status.last_failure_at = None;
            status.last_error = None;
        }
        pass
    }

    /// Upload `table`'s pending backups into `done`; the error names the backup, if any.
    fn upload_table(
        &self,
        table: &str,
        done: &mut Vec<RemoteUpload>,
    ) -> Result<(), Box<(Option<String>, UploadError)>> {
        let local = self
            .maintainer
            .backups_of(table, false)
            .map_err(|e| Box::new((None, UploadError::ListLocal(e))))?;
        let listing = list_table(&self.bucket, table).map_err(|e| Box::new((None, e.into())))?;
        let remote: BTreeSet<&str> = listing.ids.iter().map(String::as_str).collect();
        let newest_remote = listing.ids.first().map(String::as_str);
        let mut pending: Vec<_> = local
            .into_iter()
            .filter(|b| b.state == BackupState::Unchecked)
            .filter(|b| !remote.contains(b.id.as_str()))
            .filter(|b| newest_remote.is_none_or(|newest| b.id.as_str() > newest))
            .filter_map(|b| b.manifest.map(|m| (b.path, m)))
            .take(self.config.keep.max(1))
            .collect();
        pending.reverse();
        if pending.is_empty() {
            self.record_listing(table, &listing);
            return Ok(());
        }
        for (path, manifest) in pending {
            let operation =
                self.maintainer
                    .operations
                    .begin(OperationKind::Upload, table, "upload");
            let uploaded = upload_backup(
                &self.bucket,
                &self.encoding,
                self.config.max_upload_rate,
                self.maintainer.stores().pacer(),
                operation.progress(),
                &path,
                &manifest,
            )
            .map_err(|e| Box::new((Some(manifest.id.clone()), e)))?;
            drop(operation);
            tracing::info!(table, id = %manifest.id, bytes = uploaded.manifest.object_bytes, "backup uploaded");
            done.push(RemoteUpload {
                table: table.to_string(),
                id: manifest.id.clone(),
                records: manifest.records,
                plain_bytes: uploaded.manifest.plain_bytes,
                object_bytes: uploaded.manifest.object_bytes,
                duration: uploaded.duration,
                removed: Vec::new(),
            });
        }
        let removed = self
            .apply_remote_retention(table)
            .map_err(|e| Box::new((None, e.into())))?;
        if let Some(last) = done.last_mut() {
            last.removed = removed;
        }
        Ok(())
    }

    fn record_upload(&self, upload: &RemoteUpload) {
        let mut status = self.status();
        status.last_upload_at = Some(SystemTime::now());
        status.last_upload_bytes = upload.object_bytes;
        status.last_upload_duration = upload.duration;
        status.uploads += 1;
    }

    fn record_failure(&self, failure: &RemoteUploadFailure) {
        let mut status = self.status();
        status.last_failure_at = Some(SystemTime::now());
        status.last_error = Some(format!("{}: {}", failure.table, failure.error));
        status.upload_failures += 1;
    }
}
