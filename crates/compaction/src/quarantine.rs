//! The quarantine, `<data_dir>/quarantine/`: every table file a restore replaced (a corrupt
//! file, or the good file an operator restored over), named `<table>.<UTC stamp>[-n].redb`.
//! It is bounded by [`QuarantineConfig`]: past its age or its total size the oldest copies
//! are pruned, but the newest copy of each table is always kept. Every prune is logged and
//! counted ([`Maintainer::quarantine_pruned`]).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use crate::config::QuarantineConfig;
use crate::maintainer::Maintainer;

/// One entry of the quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedFile {
    /// The table it was the file of.
    pub table: String,
    /// Its path.
    pub path: PathBuf,
    /// Its size (a directory: the size of the files in it).
    pub bytes: u64,
    /// When it was quarantined (the inode's change time: set by the link into quarantine).
    #[serde(with = "humantime_serde")]
    pub quarantined_at: SystemTime,
}

/// The entries of `dir`, oldest first.
pub fn list(dir: &Path) -> std::io::Result<Vec<QuarantinedFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((table, _)) = name.split_once('.') else {
            continue;
        };
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        let changed = SystemTime::UNIX_EPOCH
            + Duration::new(meta.ctime().max(0) as u64, meta.ctime_nsec().max(0) as u32);
        files.push(QuarantinedFile {
            table: table.to_string(),
            bytes: size_of(&entry.path()),
            path: entry.path(),
            quarantined_at: changed,
        });
    }
    files.sort_by(|a, b| (a.quarantined_at, &a.path).cmp(&(b.quarantined_at, &b.path)));
    Ok(files)
}

fn size_of(path: &Path) -> u64 {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|entries| entries.flatten().map(|e| size_of(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Which of `files` (oldest first) to prune under `config` at `now`: too old, or beyond the
/// size budget counting from the newest; never the newest copy of a table.
pub fn to_prune(
    files: &[QuarantinedFile],
    config: &QuarantineConfig,
    now: SystemTime,
) -> Vec<QuarantinedFile> {
    let mut newest_seen = std::collections::BTreeSet::new();
    let mut kept_bytes = 0u64;
    let mut prune = Vec::new();
    for file in files.iter().rev() {
        if newest_seen.insert(file.table.clone()) {
            kept_bytes += file.bytes;
            continue;
        }
        let age = now
            .duration_since(file.quarantined_at)
            .unwrap_or(Duration::ZERO);
        if age > config.max_age || kept_bytes + file.bytes > config.max_bytes {
            prune.push(file.clone());
        } else {
            kept_bytes += file.bytes;
        }
    }
    prune
}

impl Maintainer {
    /// The quarantine dir.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.data_dir().join("quarantine")
    }

    /// What the quarantine holds, oldest first.
    pub fn quarantine(&self) -> std::io::Result<Vec<QuarantinedFile>> {
        list(&self.quarantine_dir())
    }

    /// Copies pruned from the quarantine since this maintainer was created.
    pub fn quarantine_pruned(&self) -> u64 {
        self.quarantine_pruned.load(Ordering::Relaxed)
    }

    /// Prune the quarantine down to its bounds (see the module doc); returns what was removed.
    pub fn prune_quarantine(&self) -> Vec<QuarantinedFile> {
        let files = match self.quarantine() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the quarantine");
                return Vec::new();
            }
        };
        let mut removed = Vec::new();
        for file in to_prune(&files, &self.config.quarantine, SystemTime::now()) {
            let result = if file.path.is_dir() {
                std::fs::remove_dir_all(&file.path)
            } else {
                std::fs::remove_file(&file.path)
            };
            match result {
                Ok(()) => {
                    tracing::info!(table = %file.table, file = %file.path.display(), bytes = file.bytes, "pruned from quarantine");
                    self.quarantine_pruned.fetch_add(1, Ordering::Relaxed);
                    removed.push(file);
                }
                Err(e) => {
                    tracing::warn!(file = %file.path.display(), error = %e, "cannot prune from quarantine")
                }
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(table: &str, age_days: u64, bytes: u64, now: SystemTime) -> QuarantinedFile {
        QuarantinedFile {
            table: table.into(),
            path: PathBuf::from(format!("{table}.{age_days}.redb")),
            bytes,
            quarantined_at: now - Duration::from_secs(age_days * 86_400),
        }
    }

    #[test]
    fn prunes_old_and_oversized_copies_but_never_a_tables_newest() {
        let now = SystemTime::now();
        let config = QuarantineConfig {
            max_age: Duration::from_secs(10 * 86_400),
            max_bytes: 300,
        };
        // Oldest first.
        let files = vec![
            file("a", 40, 100, now), // too old
            file("b", 30, 100, now), // b's newest: kept although too old
            file("a", 5, 100, now),  // over the budget once a's newest is counted
            file("a", 3, 150, now),
            file("a", 1, 100, now), // a's newest
        ];
        let pruned: Vec<_> = to_prune(&files, &config, now)
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(
            pruned,
            vec![PathBuf::from("a.5.redb"), PathBuf::from("a.40.redb")]
        );
    }
}
