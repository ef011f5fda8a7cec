//! Maintenance settings: compaction, backups and the quarantine's bounds. Parsed from the
//! daemon's TOML config (unknown keys rejected), with human durations ("6h", "30m") and sizes
//! ("4GiB"). A leaf: every other module may read it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
pub use store_core::pace::parse_bytes;
use store_core::pace::{IoRate, format_bytes};

/// How a table is compacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Copy live records into a fresh file while the table keeps serving; brief final pause.
    #[default]
    Online,
    /// redb's own `compact()`: exclusive, the table serves nothing until it ends.
    InPlace,
}

/// Compaction settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Time between scheduled runs.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Tables whose fragmentation ratio is under this are skipped (unless forced).
    pub threshold: f64,
    /// Online (default) or in-place.
    pub strategy: Strategy,
    /// Longest final pause of an online compaction; past it the attempt is abandoned safely.
    #[serde(with = "humantime_serde")]
    pub pause_limit: Duration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            interval: Duration::from_secs(6 * 3600),
            threshold: 0.10,
            strategy: Strategy::Online,
            pause_limit: Duration::from_secs(1),
        }
    }
}

/// Backup settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Where backups go: `<dir>/<table>/<UTC timestamp>.redb` plus a manifest beside each.
    /// Empty means `<data_dir>/backups`.
    pub dir: PathBuf,
    /// Time between scheduled backups.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Verified backups kept per table.
    pub keep: usize,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: PathBuf::new(),
            interval: Duration::from_secs(24 * 3600),
            keep: 3,
        }
    }
}

/// Everything the [`crate::Maintainer`] needs to know.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MaintenanceConfig {
    /// Compaction settings.
    pub compaction: CompactionConfig,
    /// Backup settings.
    pub backup: BackupConfig,
    /// Bounds of the quarantine.
    pub quarantine: QuarantineConfig,
    /// How fast maintenance may move bytes (the daemon's `[maintenance]` section).
    pub pacing: PacingConfig,
}

/// How the maintenance jobs' I/O is paced (see [`store_core::pace`]): every job that moves
/// many bytes (compaction copies, backups, verification, freeing replaced files) shares one
/// pacer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PacingConfig {
    /// `"auto"` (by the owners' commit latency), a fixed rate (`"64MiB/s"`) or
    /// `"unlimited"`.
    pub io_rate: IoRate,
}

/// How much the quarantine may keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineConfig {
    /// Copies older than this are pruned (the newest of each table excepted).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Past this many bytes in total, the oldest copies are pruned (the newest of each table
    /// excepted). A number of bytes or a size with a unit: `"4GiB"`, `"500MB"`.
    #[serde(with = "byte_size")]
    pub max_bytes: u64,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        QuarantineConfig {
            max_age: Duration::from_secs(30 * 24 * 3600),
            max_bytes: 4 << 30,
        }
    }
}

/// Serde for a byte count written as a number or a size with a unit (`"4GiB"`).
mod byte_size {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_bytes(*bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(n),
            Raw::Text(t) => super::parse_bytes(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_and_without_units() {
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert!(parse_bytes("4 parsecs").is_err());
        assert!(parse_bytes("").is_err());
    }
}
