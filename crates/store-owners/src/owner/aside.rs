//! The file steps of a replacement: keeping the current file aside in quarantine and putting
//! it back after a replacement that failed half-way.
//!
//! The steps are ordered so that the table path names a complete file at every instant: the
//! current file first gets a second name in quarantine (a hard link,
//! durable), then the replacement is renamed over the table path (atomic), then the directory
//! is fsynced. A kill between any two steps leaves the old file or the new one at the table
//! path, never nothing; a failed replacement renames the kept file back.

use std::io;
use std::path::{Path, PathBuf};

use store_core::fsutil;

/// Keep the file at `table` under the name `quarantine` (its directory created if needed)
/// without ever unlinking it from `table`. Returns `None` when there is nothing at `table`.
///
/// Something that is not a regular file (a directory where the table should be) cannot have
/// a second name: it is moved to quarantine, which leaves the table path empty until the
/// replacement is renamed in, as it was unusable before anyway.
pub(super) fn keep_aside(table: &Path, quarantine: &Path) -> io::Result<Option<PathBuf>> {
    let meta = match std::fs::symlink_metadata(table) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if let Some(dir) = quarantine.parent() {
        fsutil::create_dir_durably(dir)?;
    }
    if meta.is_file() {
        fsutil::link_or_copy(table, quarantine)?;
    } else {
        std::fs::rename(table, quarantine)?;
        fsutil::sync_parent_dir(quarantine)?;
        fsutil::sync_parent_dir(table)?;
    }
    Ok(Some(quarantine.to_path_buf()))
}

/// Put the file kept aside by [`keep_aside`] back at `table` after a replacement that failed
/// half-way: renamed over whatever was put there (a copy of a backup), atomically.
pub(super) fn put_back(table: &Path, quarantined: &Path) -> io::Result<()> {
    let kept_a_file = std::fs::symlink_metadata(quarantined).is_ok_and(|m| m.is_file());
    if !kept_a_file {
        // A directory stays in quarantine: it never was a table file.
        return Ok(());
    }
    fsutil::replace_file(quarantined, table)
}
