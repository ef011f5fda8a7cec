//! The durable file-system steps every swap relies on: fsync a file, fsync its directory,
//! replace a file atomically.

use std::fs::File;
use std::io;
use std::path::Path;

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

/// Bytes freed per step by [`release_gradually`]: 2.5 GB take about 13 s in the background
/// (8 MiB steps still left a 90-120 ms stall at 4M records; 2 MiB steps, none over 25 ms).
const RELEASE_STEP: u64 = 2 << 20;
/// Pause between two steps of [`release_gradually`].
const RELEASE_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// Give back the blocks of an unlinked file in small steps (truncating it from the end)
/// before its last handle closes, so that no single step holds the file system journal for
/// long. Only for files nobody reads or writes any more.
pub fn release_gradually(file: File) {
    let Ok(mut len) = file.metadata().map(|m| m.len()) else {
        return;
    };
    while len > 0 {
        len = len.saturating_sub(RELEASE_STEP);
        if file.set_len(len).is_err() {
            return;
        }
        std::thread::sleep(RELEASE_PAUSE);
    }
}
