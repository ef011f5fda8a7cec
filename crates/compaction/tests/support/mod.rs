//! Helpers shared by the compaction crate's tests.

use std::path::Path;

/// XOR bytes at several offsets spread over the middle of the file, where the data pages are.
pub fn flip_bytes(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read file");
    let len = bytes.len();
    for k in 1..16 {
        let at = len / 4 + k * (len / 2) / 16;
        bytes[at] ^= 0xFF;
    }
    std::fs::write(path, bytes).expect("write file");
}
