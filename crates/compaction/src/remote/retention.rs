//! Remote retention, after each upload of a table: its off-site backups are sorted newest
//! first and each counts as good when its manifest reads and its object is there with the
//! recorded size (every object was hashed against the verified local file while it was
//! uploaded). The newest [`RemoteConfig::keep`](crate::RemoteConfig::keep) good ones are
//! kept; older good ones, bad ones older than the oldest kept good one, and leftovers of
//! interrupted uploads that old go. A backup a verify or a restore is reading is never
//! deleted. A manifest is deleted before its object, so no manifest is ever left without
//! its data. Shipped change-log chunks whose last group is at or before the oldest kept
//! backup's log position go too (no recovery can use them); while any kept backup has no
//! position, all chunks stay.

use std::collections::BTreeMap;

use super::chunks::list_chunks;
use super::error::RemoteError;
use super::manifest::{TableListing, list_table, manifest_key, read_manifest};
use super::offsite::Offsite;

impl Offsite {
    /// Apply remote retention to `table` (see the module doc); returns the ids deleted.
    pub(crate) fn apply_remote_retention(&self, table: &str) -> Result<Vec<String>, RemoteError> {
        let keep = self.config.keep.max(1);
        let listing = list_table(&self.bucket, table)?;
        let mut checked = Vec::new();
        let mut positions = BTreeMap::new();
        for id in &listing.ids {
            let good = match read_manifest(&self.bucket, table, id) {
                Ok(m) => {
                    positions.insert(id.clone(), m.log_position);
                    listing
                        .objects
                        .iter()
                        .any(|o| o.key == m.object && o.bytes == m.object_bytes)
                }
                Err(super::error::RemoteVerifyError::Remote(e)) => return Err(e),
                Err(_) => false,
            };
            checked.push((id.clone(), good));
        }
        let n_good = checked.iter().filter(|(_, good)| *good).count();
        if n_good == 0 {
            return Ok(Vec::new());
        }
        let mut removed = Vec::new();
        let mut kept_good = 0;
        let mut oldest_kept = None;
        let mut log_needed_after = u64::MAX;
        for (id, good) in checked {
            let delete = if good {
                kept_good += 1;
                kept_good > keep
            } else {
                kept_good >= keep.min(n_good)
            };
            if !delete {
                if good {
                    // The oldest kept backup needs the log after its position; a backup
                    // without one needs none, but keeps it all (nothing is known).
                    let position = positions.get(&id).copied().flatten().unwrap_or(0);
                    log_needed_after = log_needed_after.min(position);
                    oldest_kept = Some(id);
                }
                continue;
            }
            if self.is_being_read(table, &id) {
                tracing::info!(table, id = %id, "off-site backup kept: being read");
                continue;
            }
            self.delete_backup(table, &id, &listing)?;
            tracing::info!(table, id = %id, verified = good, "off-site backup removed by retention");
            removed.push(id);
        }
        // Objects of interrupted uploads (no manifest) older than the oldest kept backup.
        if let Some(oldest) = oldest_kept {
            for object in &listing.objects {
                let Some(id) = TableListing::id_of(table, &object.key) else {
                    continue;
                };
                if id < oldest.as_str() && !listing.ids.iter().any(|i| i == id) {
                    self.bucket.delete(&object.key)?;
                    tracing::info!(table, object = %object.key, "leftover of an interrupted upload removed");
                }
            }
        }
        // Change-log chunks no kept backup needs: every group in them is at or before the
        // oldest kept backup's position.
        if log_needed_after > 0 && log_needed_after < u64::MAX {
            for chunk in list_chunks(&self.bucket, table)? {
                if chunk.last <= log_needed_after {
                    self.bucket.delete(&chunk.key)?;
                    tracing::info!(
                        table,
                        first = chunk.first,
                        last = chunk.last,
                        "shipped change-log chunk removed by retention"
                    );
                }
            }
        }
        if let Ok(after) = list_table(&self.bucket, table) {
            self.record_listing(table, &after);
        }
        Ok(removed)
    }

    /// Delete backup `id` of `table`: its manifest first, then its objects.
    fn delete_backup(
        &self,
        table: &str,
        id: &str,
        listing: &TableListing,
    ) -> Result<(), RemoteError> {
        let manifest = manifest_key(table, id);
        self.bucket.delete(&manifest)?;
        for object in &listing.objects {
            if object.key != manifest && TableListing::id_of(table, &object.key) == Some(id) {
                self.bucket.delete(&object.key)?;
            }
        }
        Ok(())
    }
}
