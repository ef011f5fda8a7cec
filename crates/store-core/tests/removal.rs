//! Removing a large file without holding up the live tables (`fsutil::remove_file_gradually`,
//! `fsutil::unlink_for_release`): the name goes at once, a large file's blocks are given back
//! in paced steps, a small file is simply removed, and a file with a second name is never
//! truncated (that name keeps every byte).

use std::io::Write;
use std::path::Path;

use store_core::fsutil::{release_gradually, remove_file_gradually, unlink_for_release};
use store_core::{IoRate, Pacer};

const MIB: u64 = 1 << 20;

fn write_file(path: &Path, bytes: u64) {
    let mut file = std::fs::File::create(path).expect("create");
    let block = vec![0x5au8; MIB as usize];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(MIB);
        file.write_all(&block[..n as usize]).expect("write");
        left -= n;
    }
    file.sync_all().expect("sync");
}

fn unlimited() -> Pacer {
    Pacer::new(IoRate::Unlimited)
}

#[test]
fn a_large_file_goes_in_paced_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old-backup.redb");
    write_file(&path, 24 * MIB);
    let pacer = unlimited();
    remove_file_gradually(&path, &pacer).expect("removed");
    assert!(!path.exists());
    // 24 MiB in 2 MiB steps: twelve steps, each paid to the pacer.
    let moved = pacer.stats().bytes_moved;
    assert!(moved > 0, "no step was paced");
    assert_eq!(
        moved % 12,
        0,
        "{moved} bytes paced is not twelve equal steps"
    );
}

#[test]
fn a_small_file_is_simply_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("manifest.json");
    write_file(&path, MIB);
    let pacer = unlimited();
    remove_file_gradually(&path, &pacer).expect("removed");
    assert!(!path.exists());
    assert_eq!(pacer.stats().bytes_moved, 0);
}

#[test]
fn a_missing_file_is_not_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gone.redb");
    remove_file_gradually(&path, &unlimited()).expect("nothing to remove");
    assert!(
        unlink_for_release(&path)
            .expect("nothing to remove")
            .is_none()
    );
}

#[test]
fn a_file_with_a_second_name_is_never_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("work.redb");
    let other = dir.path().join("quarantined.redb");
    write_file(&path, 24 * MIB);
    std::fs::hard_link(&path, &other).expect("link");
    let pacer = unlimited();
    remove_file_gradually(&path, &pacer).expect("removed");
    assert!(!path.exists());
    assert_eq!(
        std::fs::metadata(&other).expect("other name").len(),
        24 * MIB
    );
    let bytes = std::fs::read(&other).expect("read");
    assert!(bytes.iter().all(|&b| b == 0x5a));
    assert_eq!(pacer.stats().bytes_moved, 0);
}

#[test]
fn the_handle_of_an_unlinked_file_gives_its_blocks_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fresh.redb.compact-1");
    write_file(&path, 16 * MIB);
    let file = unlink_for_release(&path)
        .expect("unlinked")
        .expect("a large file comes back as a handle");
    assert!(!path.exists());
    let handle = file.try_clone().expect("clone");
    release_gradually(file, &unlimited());
    assert_eq!(handle.metadata().expect("metadata").len(), 0);
}
