//! Dropping a file the maintenance read or wrote once from the page cache
//! (`posix_fadvise(POSIX_FADV_DONTNEED)`), so that a backup's pages go before the tables'.
//! Linux only; elsewhere, and whenever the kernel refuses, it does nothing: it is a hint.

use std::fs::File;

/// Tell the kernel the pages `file` has in the page cache will not be read again soon (a
/// backup once written and checked, a backup verified or uploaded), so that they go before
/// the tables' own pages. Dirty pages are not dropped: call it after the file is synced.
/// Never for a live table file or a compaction's fresh file, whose pages are the tables'.
pub fn drop_cached(file: &File) {
    #[cfg(target_os = "linux")]
    let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}
