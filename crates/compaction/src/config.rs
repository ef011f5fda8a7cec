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

/// Scrub settings: the background walk that verifies every page checksum of every table
/// while they serve (the tables open without verifying, so start-up does not grow with the
/// data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubConfig {
    /// Time from the start to the first scrub.
    #[serde(with = "humantime_serde")]
    pub after_start: Duration,
    /// Time between scrubs (from the end of one to the start of the next).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The most the scrub reads per second, in bytes (a number or `"64MiB"`); 0: no cap of
    /// its own. A cap on top of the maintenance I/O pace (`[maintenance] io_rate`), which
    /// the scrub shares with compactions, backups and uploads. The scrub has a day; the hub's
    /// own reads have the disk first.
    #[serde(with = "byte_size")]
    pub max_rate: u64,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig {
            after_start: Duration::from_secs(60),
            interval: Duration::from_secs(24 * 3600),
            max_rate: 64 << 20,
        }
    }
}

/// How off-site objects are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd at [`RemoteConfig::compression_level`].
    #[default]
    Zstd,
    /// Stored as is.
    None,
}

impl Compression {
    /// `zstd` or `none`, as in the config and the remote manifest.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }
}

/// Shortest [`RemoteConfig::sync_interval`]: one request per table and interval is the
/// cost, and a bucket billed per request should not pay more than ten a second.
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// Longest [`RemoteConfig::sync_interval`]: past an hour, a lost machine loses more than
/// an operator expects from "continuous".
pub const MAX_SYNC_INTERVAL: Duration = Duration::from_secs(3600);

/// Off-site backups to S3-compatible object storage (`[remote]`). Credentials are never
/// here: they come from the standard AWS environment variables (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), the shared credentials file
/// (`~/.aws/credentials`, profile `AWS_PROFILE`), or the instance's or container's role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteConfig {
    /// `s3://bucket/prefix` (the prefix may be empty).
    pub url: String,
    /// The server for non-AWS stores (MinIO, Ceph, R2...), `https://host:port`; empty: AWS.
    pub endpoint: String,
    /// The region; empty: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: String,
    /// Allow a plain-HTTP endpoint (a local test server).
    pub allow_http: bool,
    /// Verified off-site backups kept per table (separate from [`BackupConfig::keep`]).
    pub keep: usize,
    /// `zstd` (default) or `none`.
    pub compression: Compression,
    /// zstd level, 1 to 19.
    pub compression_level: i32,
    /// A file of age X25519 recipients (`age1...`, one a line, `#` comments); empty: objects
    /// are not encrypted.
    pub encryption_recipients: PathBuf,
    /// The age identity file that decrypts them (`AGE-SECRET-KEY-1...`), read only by
    /// `verify`, `restore` and `recover`; uploads never need it. Empty: none.
    pub identity_file: PathBuf,
    /// Longest time one request to the server may take before it is retried.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Upload rate limit in bytes per second (a number or `"20MB"`); 0: unlimited.
    #[serde(with = "byte_size")]
    pub max_upload_rate: u64,
    /// How often each table's change log is shipped off-site: the recovery point of a
    /// machine lost whole is about this (plus one upload).
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            url: String::new(),
            endpoint: String::new(),
            region: String::new(),
            allow_http: false,
            keep: 7,
            compression: Compression::Zstd,
            compression_level: 3,
            encryption_recipients: PathBuf::new(),
            identity_file: PathBuf::new(),
            timeout: Duration::from_secs(60),
            max_upload_rate: 0,
            sync_interval: Duration::from_secs(1),
        }
    }
}

impl RemoteConfig {
    /// The bucket and the prefix (no leading or trailing `/`) of [`RemoteConfig::url`].
    pub fn bucket_and_prefix(&self) -> Result<(String, String), String> {
        let rest = self.url.strip_prefix("s3://").ok_or_else(|| {
            format!(
                "{:?} is not an s3:// URL (like \"s3://bucket/prefix\")",
                self.url
            )
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'));
        if !valid {
            return Err(format!(
                "{bucket:?} is not a bucket name (3 to 63 of a-z, 0-9, '.' and '-')"
            ));
        }
        Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
    }

    /// Checks serde cannot express; the error names the key at fault. The recipients file
    /// is read later, when the remote is opened.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        self.bucket_and_prefix().map_err(|m| ("url", m))?;
        if !self.endpoint.is_empty() {
            match self.endpoint.split_once("://") {
                Some(("https", host)) | Some(("http", host)) if !host.is_empty() => {}
                _ => {
                    return Err((
                        "endpoint",
                        format!("{:?} is not an http:// or https:// URL", self.endpoint),
                    ));
                }
            }
            if self.endpoint.starts_with("http://") && !self.allow_http {
                return Err((
                    "endpoint",
                    "a plain http:// endpoint needs allow_http = true".into(),
                ));
            }
        }
        if self.keep == 0 {
            return Err(("keep", "must keep at least one backup".into()));
        }
        if self.timeout.is_zero() {
            return Err(("timeout", "must be more than zero".into()));
        }
        if !(MIN_SYNC_INTERVAL..=MAX_SYNC_INTERVAL).contains(&self.sync_interval) {
            return Err((
                "sync_interval",
                format!(
                    "{} is not between {} and {}",
                    humantime::format_duration(self.sync_interval),
                    humantime::format_duration(MIN_SYNC_INTERVAL),
                    humantime::format_duration(MAX_SYNC_INTERVAL)
                ),
            ));
        }
        if !(1..=19).contains(&self.compression_level) {
            return Err((
                "compression_level",
                format!("{} is not between 1 and 19", self.compression_level),
            ));
        }
        Ok(())
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
    /// The background checksum walk.
    pub scrub: ScrubConfig,
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
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ByteSize;

    pub fn serialize<S: Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
        ByteSize(*bytes).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        ByteSize::deserialize(d).map(|b| b.0)
    }
}

/// A size in bytes, written as a number or a size with a unit (`"4GiB"`, `"500MB"`); written
/// back in the largest binary unit that divides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_bytes(self.0))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => parse_bytes(&t)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
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
