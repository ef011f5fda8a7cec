//! The daemon's TOML config: defaults, the commented default file, and parse errors that name
//! the file, the line and the key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use compaction::config::ByteSize;
use compaction::{
    BackupConfig, CompactionConfig, MaintenanceConfig, QuarantineConfig, RemoteConfig, ScrubConfig,
};
use serde::{Deserialize, Serialize};

pub use crate::notify::NotifyConfig;

/// Everything the daemon and the CLI verbs read from `--config FILE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Where the nine table files live (relative paths are relative to the working directory).
    pub data_dir: PathBuf,
    /// Compaction schedule and policy.
    pub compaction: CompactionConfig,
    /// Backup schedule and retention.
    pub backup: BackupConfig,
    /// Bounds of the quarantine of replaced table files.
    pub quarantine: QuarantineConfig,
    /// The background checksum walk of every table.
    pub scrub: ScrubConfig,
    /// Memory of the nine tables.
    pub tables: TablesConfig,
    /// The change log of each table.
    pub changelog: ChangeLogConfig,
    /// Off-site backups to S3-compatible object storage; absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteConfig>,
    /// Webhook notifications of failures and recoveries; absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifyConfig>,
    /// The admin HTTP API.
    pub admin: AdminConfig,
    /// Logging.
    pub log: LogConfig,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            data_dir: PathBuf::from("data"),
            compaction: CompactionConfig::default(),
            backup: BackupConfig::default(),
            quarantine: QuarantineConfig::default(),
            scrub: ScrubConfig::default(),
            tables: TablesConfig::default(),
            changelog: ChangeLogConfig::default(),
            remote: None,
            notify: None,
            admin: AdminConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// Memory of the nine tables: the redb page cache of each table file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TablesConfig {
    /// The budget of the nine caches together, split evenly among the tables not named in
    /// `cache_per_table`.
    pub cache: ByteSize,
    /// Tables given a cache of their own size, out of the budget.
    pub cache_per_table: BTreeMap<String, ByteSize>,
}

impl Default for TablesConfig {
    fn default() -> Self {
        TablesConfig {
            cache: ByteSize(9 * DEFAULT_TABLE_CACHE),
            cache_per_table: BTreeMap::new(),
        }
    }
}

/// Each table's change log (`<data_dir>/changelog/<table>/`): where a write becomes durable,
/// replayed by restores so that they lose no acknowledged write, and the history a
/// point-in-time restore reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChangeLogConfig {
    /// Keep the logs. Off: each write group is committed durably in its table file alone,
    /// and a restore brings the table back to its backup only.
    pub enabled: bool,
    /// A segment file is closed and a new one started past this size.
    pub segment_size: ByteSize,
}

impl Default for ChangeLogConfig {
    fn default() -> Self {
        ChangeLogConfig {
            enabled: true,
            segment_size: ByteSize(64 << 20),
        }
    }
}

/// The cache each table got before the budget was configurable.
const DEFAULT_TABLE_CACHE: u64 = 64 << 20;

impl TablesConfig {
    /// The cache of each of the nine tables, in [`store_owners::TABLE_NAMES`] order. Tables
    /// named in `cache_per_table` get their size; the rest of the budget is split evenly
    /// among the others.
    pub fn cache_of_each(&self) -> Vec<(&'static str, u64)> {
        let named: u64 = self.cache_per_table.values().map(|b| b.0).sum();
        let others = store_owners::TABLE_NAMES
            .iter()
            .filter(|t| !self.cache_per_table.contains_key(**t))
            .count() as u64;
        let share = self.cache.0.saturating_sub(named) / others.max(1);
        store_owners::TABLE_NAMES
            .iter()
            .map(|t| (*t, self.cache_per_table.get(*t).map_or(share, |b| b.0)))
            .collect()
    }

    /// How the tables are opened with this budget.
    pub fn stores_options(&self) -> store_owners::StoresOptions {
        store_owners::StoresOptions {
            cache_bytes_per_table: self
                .cache_of_each()
                .into_iter()
                .map(|(t, bytes)| (t.to_string(), bytes as usize))
                .collect(),
            ..Default::default()
        }
    }

    fn validate(&self) -> Result<(), (&'static str, &'static str, String)> {
        if let Some(unknown) = self
            .cache_per_table
            .keys()
            .find(|t| !store_owners::TABLE_NAMES.contains(&t.as_str()))
        {
            return Err((
                "tables",
                "cache_per_table",
                format!(
                    "unknown table {unknown:?} (one of: {})",
                    store_owners::TABLE_NAMES.join(", ")
                ),
            ));
        }
        let named: u64 = self.cache_per_table.values().map(|b| b.0).sum();
        if named > self.cache.0 {
            return Err((
                "tables",
                "cache_per_table",
                format!(
                    "the tables named take {named} bytes, over the budget of {} (tables.cache)",
                    self.cache.0
                ),
            ));
        }
        if let Some((table, bytes)) = self
            .cache_of_each()
            .into_iter()
            .find(|(_, b)| *b < MIN_TABLE_CACHE)
        {
            return Err((
                "tables",
                "cache",
                format!(
                    "{table} would get {bytes} bytes of cache; at least {MIN_TABLE_CACHE} (1MiB) each"
                ),
            ));
        }
        Ok(())
    }
}

/// The smallest cache a table is given.
const MIN_TABLE_CACHE: u64 = 1 << 20;

/// The admin HTTP API settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address the API listens on; port 0 picks a free port (printed at start).
    pub listen: SocketAddr,
    /// File holding the bearer token. Empty means `<data_dir>/admin.token`, generated on first
    /// start with mode 0600.
    pub token_file: PathBuf,
}

/// The default admin address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7411";

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("the default listen address parses"),
            token_file: PathBuf::new(),
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (readable) or `json` (one JSON object per line).
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Text,
    /// JSON lines.
    Json,
}

impl DaemonConfig {
    /// What the maintenance library needs.
    pub fn maintenance(&self) -> MaintenanceConfig {
        MaintenanceConfig {
            compaction: self.compaction.clone(),
            backup: self.backup.clone(),
            quarantine: self.quarantine.clone(),
            scrub: self.scrub.clone(),
        }
    }

    /// How the daemon and the direct verbs open the tables: the cache budget and the change
    /// log (integrity check and reports are the caller's).
    pub fn stores_options(&self) -> store_owners::StoresOptions {
        store_owners::StoresOptions {
            change_log: self
                .changelog
                .enabled
                .then_some(store_core::changelog::LogOptions {
                    segment_bytes: self.changelog.segment_size.0,
                }),
            ..self.tables.stores_options()
        }
    }

    /// The token file actually used.
    pub fn token_file(&self) -> PathBuf {
        if self.admin.token_file.as_os_str().is_empty() {
            self.data_dir.join("admin.token")
        } else {
            self.admin.token_file.clone()
        }
    }

    /// The backup dir actually used.
    pub fn backup_dir(&self) -> PathBuf {
        if self.backup.dir.as_os_str().is_empty() {
            self.data_dir.join("backups")
        } else {
            self.backup.dir.clone()
        }
    }

    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        DaemonConfig::parse(path, &text)
    }

    /// Parse and validate config text; `file` is only used in error messages.
    pub fn parse(file: &Path, text: &str) -> Result<DaemonConfig, ConfigError> {
        let config: DaemonConfig = toml::from_str(text).map_err(|e| {
            let (line, key) = match e.span() {
                Some(span) => locate(text, span),
                None => (None, None),
            };
            ConfigError {
                file: file.to_path_buf(),
                line,
                key,
                message: e.message().trim().to_string(),
            }
        })?;
        config.validate().map_err(|(section, key, message)| {
            let line = find_key_line(text, section, key);
            let key = if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            };
            ConfigError {
                file: file.to_path_buf(),
                line,
                key: Some(key),
                message,
            }
        })?;
        Ok(config)
    }

    /// Checks serde cannot express: ranges and non-zero durations. Errors name the section and
    /// key at fault.
    fn validate(&self) -> Result<(), (&'static str, &'static str, String)> {
        let c = &self.compaction;
        if c.interval.is_zero() {
            return Err(("compaction", "interval", "must be more than zero".into()));
        }
        if !(0.0..=1.0).contains(&c.threshold) {
            return Err((
                "compaction",
                "threshold",
                format!("{} is not between 0 and 1", c.threshold),
            ));
        }
        if c.pause_limit.is_zero() {
            return Err(("compaction", "pause_limit", "must be more than zero".into()));
        }
        if self.backup.interval.is_zero() {
            return Err(("backup", "interval", "must be more than zero".into()));
        }
        if self.backup.keep == 0 {
            return Err(("backup", "keep", "must keep at least one backup".into()));
        }
        self.tables.validate()?;
        if self.changelog.segment_size.0 < 4096 {
            return Err((
                "changelog",
                "segment_size",
                format!(
                    "{} bytes is too small (at least 4KiB)",
                    self.changelog.segment_size.0
                ),
            ));
        }
        if self.scrub.interval.is_zero() {
            return Err(("scrub", "interval", "must be more than zero".into()));
        }
        if self.quarantine.max_age.is_zero() {
            return Err(("quarantine", "max_age", "must be more than zero".into()));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(("", "data_dir", "must not be empty".into()));
        }
        if let Some(notify) = &self.notify {
            notify
                .check()
                .map_err(|(key, message)| ("notify", key, message))?;
        }
        if let Some(remote) = &self.remote {
            remote
                .check()
                .map_err(|(key, message)| ("remote", key, message))?;
            for (key, path) in [
                ("encryption_recipients", &remote.encryption_recipients),
                ("identity_file", &remote.identity_file),
            ] {
                if !path.as_os_str().is_empty()
                    && let Err(e) = std::fs::File::open(path)
                {
                    return Err((
                        "remote",
                        key,
                        format!("cannot read {}: {e}", path.display()),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A config file that cannot be used.
#[derive(Debug)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line of the fault, when known.
    pub line: Option<usize>,
    /// The dotted key at fault (`compaction.interval`), when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The line (1-based) and dotted key of a byte span in the config text.
fn locate(text: &str, span: std::ops::Range<usize>) -> (Option<usize>, Option<String>) {
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    let section = current_section(text, line_no);
    let trimmed = line.trim();
    let key = if trimmed.starts_with('[') {
        // The span is on a table header: the section itself is at fault.
        Some(
            trimmed
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string(),
        )
    } else {
        trimmed
            .split_once('=')
            .map(|(k, _)| k.trim().to_string())
            .map(|k| match &section {
                Some(s) => format!("{s}.{k}"),
                None => k,
            })
    };
    (Some(line_no), key)
}

/// The `[section]` in force at `line_no` (1-based), if any.
fn current_section(text: &str, line_no: usize) -> Option<String> {
    text.lines()
        .take(line_no)
        .filter_map(|l| {
            let l = l.trim();
            (l.starts_with('[') && l.ends_with(']'))
                .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
        })
        .last()
}

/// The line (1-based) where `key` is set inside `[section]` (or at top level for "").
fn find_key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') && l.ends_with(']') {
            current = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        } else if current == section
            && let Some((k, _)) = l.split_once('=')
            && k.trim() == key
        {
            return Some(i + 1);
        }
    }
    None
}

/// The complete default config file, commented; it parses back to [`DaemonConfig::default`].
pub const DEFAULT_FILE: &str = include_str!("default_config.toml");
