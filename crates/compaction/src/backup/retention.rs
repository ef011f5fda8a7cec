//! Retention: after each successful backup of a table, its backups are sorted newest first
//! and each is checked against its manifest (size and checksum: since a manifest is written
//! only after its file passed the full verification, a matching checksum proves the bytes are
//! the verified ones). The newest [`crate::BackupConfig::keep`] good ones are kept (at least
//! one), older good ones are deleted. A bad backup (corrupt, or without a usable manifest) is
//! deleted only when it is older than the oldest kept good one, so only when a newer verified
//! backup exists; bad backups newer than that are left for an operator to inspect. When no
//! good backup exists nothing is deleted.

use store_core::fsutil;

use super::manifest::BackupFiles;
use crate::maintainer::Maintainer;

impl Maintainer {
    /// Apply retention to `table`'s backups (see the module doc); returns the ids deleted.
    pub(super) fn apply_retention(&self, table: &str) -> Vec<String> {
        let keep = self.config.backup.keep.max(1);
        let Ok(found) = self.found_backups(table) else {
            return Vec::new();
        };
        let checked: Vec<(BackupFiles, bool)> = found
            .into_iter()
            .map(|f| {
                let good = match self.checksum_check(table, &f) {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(table, id = %f.id, error = %e, "backup does not verify");
                        false
                    }
                };
                (f, good)
            })
            .collect();
        let n_good = checked.iter().filter(|(_, good)| *good).count();
        if n_good == 0 {
            return Vec::new();
        }
        let mut removed = Vec::new();
        let mut kept_good = 0;
        for (f, good) in checked {
            let delete = if good {
                kept_good += 1;
                kept_good > keep
            } else {
                // Older than the oldest kept good backup iff we already kept `keep` of them or
                // every good one is newer.
                kept_good >= keep.min(n_good)
            };
            if delete {
                let _ = fsutil::remove_file_gradually(&f.file, self.stores.pacer());
                let _ = std::fs::remove_file(&f.manifest);
                let _ = std::fs::remove_file(super::verify::verified_marker(
                    &self.table_backup_dir(table),
                    &f.id,
                ));
                tracing::info!(table, id = %f.id, verified = good, "backup removed by retention");
                removed.push(f.id);
            }
        }
        if !removed.is_empty() {
            let _ = fsutil::sync_parent_dir(&self.table_backup_dir(table).join("x"));
        }
        removed
    }
}
