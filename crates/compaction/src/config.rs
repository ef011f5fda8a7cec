//! Maintenance settings: compaction and backups. Parsed from the daemon's TOML config
//! (unknown keys rejected), with human durations ("6h", "30m").

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    pub quarantine: crate::quarantine::QuarantineConfig,
}
