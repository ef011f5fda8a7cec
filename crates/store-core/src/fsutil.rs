//! The durable file-system steps every swap relies on: fsync a file, fsync its directory,
//! replace a file atomically, create a directory durably, keep a second name for a file.
//!
//! Everything holding user data is private: files [`FILE_MODE`] (0600), directories
//! [`DIR_MODE`] (0700).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every file holding user data (tables, backups, manifests, quarantined files).
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory holding user data.
pub const DIR_MODE: u32 = 0o700;

/// fsync the directory holding `path`, so that a rename or a create inside it survives a crash.
pub fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// fsync a file's data and metadata.
pub fn sync_file(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Atomically replace `dest` with `src` (both in the same directory) and make the rename durable.
pub fn replace_file(src: &Path, dest: &Path) -> io::Result<()> {
    std::fs::rename(src, dest)?;
    sync_parent_dir(dest)
}

/// Create `dir` and any missing parent with mode [`DIR_MODE`], fsyncing the parent of each
/// directory created so that it survives a power loss; an existing `dir` is made private
/// too. Returns whether anything was created.
pub fn create_dir_durably(dir: &Path) -> io::Result<bool> {
    if dir.is_dir() {
        make_private(dir, DIR_MODE)?;
        return Ok(false);
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durably(parent)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        // Created meanwhile by someone else: it still needs its entry made durable.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(e),
    }
    make_private(dir, DIR_MODE)?;
    sync_parent_dir(dir)?;
    Ok(true)
}

/// Take group and other permissions away from `path` if it has any (`mode` is the wanted
/// mode). Returns whether the mode was changed.
pub fn make_private(path: &Path, mode: u32) -> io::Result<bool> {
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & 0o077 == 0 {
        return Ok(false);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(true)
}

/// Give the file at `src` a second name `dest` (a new file, in a directory on the same file
/// system, else a full copy), make it private and durable (file and directory fsync). `src`
/// keeps its name throughout: nothing is ever missing.
pub fn link_or_copy(src: &Path, dest: &Path) -> io::Result<()> {
    if std::fs::hard_link(src, dest).is_err() {
        let mut input = File::open(src)?;
        let mut output = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(dest)?;
        io::copy(&mut input, &mut output)?;
        output.sync_all()?;
    }
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(FILE_MODE))?;
    sync_parent_dir(dest)
}

/// Write `bytes` to `path` atomically: a temporary file beside it (mode [`FILE_MODE`]),
/// fsync, rename, directory fsync. A crash leaves the old content or the new, never a mix.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        replace_file(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Bytes freed per step by [`release_gradually`]: 2.5 GB take about 13 s in the background
/// (8 MiB steps still left a 90-120 ms stall at 4M records; 2 MiB steps, none over 25 ms).
const RELEASE_STEP: u64 = 2 << 20;
/// Pause between two steps of [`release_gradually`].
const RELEASE_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);
/// What one step of [`release_gradually`] is charged to the pacer. Freeing blocks writes a
/// little file-system metadata, not the 2 MiB it frees: charged in full, the 2.5 GB file a
/// 4M-record compaction of the bench replaces would hold 74 s of a 32 MiB/s pace, which the
/// next table's copy (or a backup) shares.
const RELEASE_COST: u64 = 64 << 10;

/// Files smaller than this are removed at once by [`remove_file_gradually`].
const GRADUAL_FROM: u64 = 8 << 20;

/// Remove the file at `path` without holding up the live tables: a large file's name goes
/// first, then its blocks are given back in small paced steps ([`release_gradually`]) on the
/// calling thread. (One `unlink` of a 600 MB file held every fsync of the file system for
/// 150-210 ms on the bench machine: the journal commit frees, and with the `discard` mount
/// option trims, every block at once.) A missing file is not an error.
pub fn remove_file_gradually(path: &Path, pacer: &crate::pace::Pacer) -> io::Result<()> {
    if let Some(file) = unlink_for_release(path)? {
        release_gradually(file, pacer);
    }
    Ok(())
}

/// Remove the name `path` now and, if it was a large file with no other name, return a handle
/// on it whose blocks the caller gives back with [`release_gradually`] (on another thread if
/// it must not wait). A missing file is not an error.
pub fn unlink_for_release(path: &Path) -> io::Result<Option<File>> {
    let file = match OpenOptions::new().write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // Not writable (or not a file): removing the name is all that can be done.
        Err(_) => return remove_if_present(path).map(|()| None),
    };
    let large = file
        .metadata()
        .map(|m| m.len() >= GRADUAL_FROM)
        .unwrap_or(false);
    remove_if_present(path)?;
    // Truncating a file that still has another name would destroy what that name holds.
    let unlinked = file.metadata().map(|m| m.nlink() == 0).unwrap_or(false);
    Ok((large && unlinked).then_some(file))
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Give back the blocks of an unlinked file in small steps (truncating it from the end)
/// before its last handle closes, so that no single step holds the file system journal for
/// long; each step is also paced by `pacer`, as `RELEASE_COST` bytes moved. Only for files
/// nobody reads or writes any more.
pub fn release_gradually(file: File, pacer: &crate::pace::Pacer) {
    let Ok(mut len) = file.metadata().map(|m| m.len()) else {
        return;
    };
    while len > 0 {
        len = len.saturating_sub(RELEASE_STEP);
        if file.set_len(len).is_err() {
            return;
        }
        std::thread::sleep(RELEASE_PAUSE);
        pacer.pace(RELEASE_COST);
    }
}
