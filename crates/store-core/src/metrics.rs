//! Size and fragmentation metrics of one table, computed from exact counters the store keeps
//! in each commit and the file size; never from a walk of the file.
//!
//! # Formulas
//!
//! Let `R` be the live records, `L` the live bytes (keys plus values), `D` the dead bytes
//! (keys plus values deleted or overwritten since the file was last rewritten, with `Dr` the
//! number of such records) and `F` the file size.
//!
//! - Packed size, what a compaction by copy produces:
//!   `P = (L + R * ENTRY_OVERHEAD) / PACKED_FILL + FILE_FLOOR`.
//!   A redb leaf stores two 4-byte offsets per entry; copied in key order, leaves end up about
//!   90 % full (measured: 20.8 MB of records in 23.1 MB of pages).
//! - Healthy size: a table filled by random inserts has leaves about 65 % full, and redb grows
//!   its file by doubling, so an un-compacted but unfragmented file can reach
//!   `H = P * HEALTHY_FILE_FACTOR`. Space up to `H` is growth slack, not fragmentation.
//! - Dead share: the part of the data written since the last rewrite that is now dead,
//!   `s = (D + Dr * ENTRY_OVERHEAD) / (L + R * ENTRY_OVERHEAD + D + Dr * ENTRY_OVERHEAD)`.
//! - Dead space: holes left by deletes and overwrites, `Ds = s * F`. Dead records occupied the
//!   file at the same density as live ones (same fill, same share of the growth slack), so
//!   they account for the same share of it.
//! - Reclaimable: `max(F - H, min(F - P, Ds))`, never negative. The first term is free space
//!   beyond any plausible growth slack (freed pages piling up); the second, holes made by
//!   deletes, bounded by what the file can actually give back.
//! - `fragmentation_ratio = reclaimable / F`, in `[0, 1]`.
//!
//! Why `Ds` is a share of the file and not `(D + Dr * ENTRY_OVERHEAD) / PACKED_FILL` (dead
//! bytes counted as if packed), measured with `tests/fragmentation.rs` (30 000 records of
//! 200 bytes, random insertion order): loaded, `F` = 17.8 MB for `L` = 6.0 MB (`P` = 8.0 MB);
//! after deleting half at random `F` stays 17.8 MB, `P` = 4.5 MB, and a compaction by copy
//! gives a 4.5 MB file: 13.4 MB (0.75 of the file) is reclaimable. Counting dead bytes as
//! packed gave `Ds` = 3.5 MB and, with the `F - H` term at 4.3 MB, a ratio of 0.24; the share
//! gives 0.50 (still conservative, never above what a copy gives back). A
//! delete does not shrink the leaf or the file it was in: its bytes stay as inflated by the
//! fill factor and growth slack as the live ones, hence the share. A freshly loaded or
//! freshly compacted file has `D = 0`, so the term is 0 and growth slack is never counted.

use serde::{Deserialize, Serialize};

/// Bytes of per-entry bookkeeping in a redb leaf (a key offset and a value offset).
pub const ENTRY_OVERHEAD: u64 = 8;
/// Fraction of a page a copy in key order fills.
pub const PACKED_FILL: f64 = 0.9;
/// Header, region bitmaps and the table tree of an almost empty file.
pub const FILE_FLOOR: u64 = 1 << 20;
/// How much bigger than packed a healthy, never-compacted file may be (fill and growth slack).
pub const HEALTHY_FILE_FACTOR: f64 = 3.0;

/// Exact counters a store maintains transactionally with its data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCounters {
    /// Live records.
    pub records: u64,
    /// Key plus value bytes of the live records.
    pub live_bytes: u64,
    /// Records deleted or overwritten since the file was last rewritten.
    pub dead_records: u64,
    /// Key plus value bytes of those records.
    pub dead_bytes: u64,
}

/// What a table reports about its size and fragmentation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TableMetrics {
    /// Size of the table file on disk.
    pub file_bytes: u64,
    /// Live records.
    pub live_records: u64,
    /// Key plus value bytes of the live records.
    pub live_bytes: u64,
    /// Estimated size of the file after a compaction by copy.
    pub packed_bytes_estimate: u64,
    /// Estimated bytes a compaction would give back.
    pub reclaimable_bytes: u64,
    /// `reclaimable_bytes / file_bytes`, in `[0, 1]`.
    pub fragmentation_ratio: f64,
}

impl TableMetrics {
    /// Applies the formulas of this module.
    pub fn compute(file_bytes: u64, counters: TableCounters) -> TableMetrics {
        let packed = ((counters.live_bytes + counters.records * ENTRY_OVERHEAD) as f64
            / PACKED_FILL) as u64
            + FILE_FLOOR;
        let healthy = (packed as f64 * HEALTHY_FILE_FACTOR) as u64;
        let live = (counters.live_bytes + counters.records * ENTRY_OVERHEAD) as f64;
        let dead = (counters.dead_bytes + counters.dead_records * ENTRY_OVERHEAD) as f64;
        let dead_share = if dead > 0.0 {
            dead / (live + dead)
        } else {
            0.0
        };
        let dead_space = (dead_share * file_bytes as f64) as u64;
        let beyond_slack = file_bytes.saturating_sub(healthy);
        let holes = file_bytes.saturating_sub(packed).min(dead_space);
        let reclaimable = beyond_slack.max(holes);
        let fragmentation_ratio = if file_bytes == 0 {
            0.0
        } else {
            (reclaimable as f64 / file_bytes as f64).clamp(0.0, 1.0)
        };
        TableMetrics {
            file_bytes,
            live_records: counters.records,
            live_bytes: counters.live_bytes,
            packed_bytes_estimate: packed,
            reclaimable_bytes: reclaimable,
            fragmentation_ratio,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_not_fragmented() {
        let m = TableMetrics::compute(0, TableCounters::default());
        assert_eq!(m.fragmentation_ratio, 0.0);
    }

    #[test]
    fn ratio_stays_in_unit_interval() {
        let counters = TableCounters {
            records: 0,
            live_bytes: 0,
            dead_records: 10,
            dead_bytes: u64::MAX / 4,
        };
        let m = TableMetrics::compute(u64::MAX / 2, counters);
        assert!((0.0..=1.0).contains(&m.fragmentation_ratio));
    }
}
