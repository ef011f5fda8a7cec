//! The last [`HISTORY_LEN`] compaction runs, kept in memory and persisted as JSON in the data
//! dir (`compaction_history.json`, written through a temporary file, an fsync, a rename and a
//! directory fsync). Loaded when the [`crate::Maintainer`] is created. The run types live in
//! [`crate::report`] (events carry them too) and are re-exported here.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use crate::report::{CompactionRun, TableOutcome, TableResult};

/// How many runs are kept.
pub const HISTORY_LEN: usize = 20;

/// The history file's name inside the data dir.
pub const HISTORY_FILE: &str = "compaction_history.json";

/// What the history file holds.
#[derive(Debug, Serialize, Deserialize)]
struct HistoryFile {
    /// Oldest first.
    runs: Vec<CompactionRun>,
}

/// Writing the history file failed (the run stays in memory).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SaveHistoryError {
    /// The runs did not serialize.
    #[error("cannot encode the compaction history: {0}")]
    Encode(#[from] serde_json::Error),
    /// A file-system step failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// The last [`HISTORY_LEN`] runs, oldest first, and the file they are kept in.
#[derive(Debug)]
pub struct History {
    /// `<data_dir>/compaction_history.json`.
    path: PathBuf,
    /// Oldest first, at most [`HISTORY_LEN`].
    runs: Mutex<VecDeque<CompactionRun>>,
    /// Held while the file is written, so that writers never interleave (and readers of
    /// `runs` never wait for an fsync).
    writing: Mutex<()>,
}

impl History {
    /// Load the history of `data_dir`. A missing file is an empty history; a file that does
    /// not parse is moved aside (`compaction_history.json.corrupt-<unix nanos>`), never
    /// deleted, and the history starts empty.
    pub fn load(data_dir: &Path) -> History {
        let path = data_dir.join(HISTORY_FILE);
        let runs = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<HistoryFile>(&bytes) {
                Ok(file) => file.runs,
                Err(e) => {
                    let aside = aside_path(&path);
                    match std::fs::rename(&path, &aside) {
                        Ok(()) => tracing::warn!(
                            file = %path.display(), moved_to = %aside.display(), error = %e,
                            "compaction history does not parse; moved aside, starting empty"
                        ),
                        Err(rename) => tracing::warn!(
                            file = %path.display(), error = %e, rename_error = %rename,
                            "compaction history does not parse and cannot be moved aside; starting empty"
                        ),
                    }
                    Vec::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "compaction history unreadable; starting empty");
                Vec::new()
            }
        };
        let mut runs: VecDeque<CompactionRun> = runs.into();
        while runs.len() > HISTORY_LEN {
            runs.pop_front();
        }
        History {
            path,
            runs: Mutex::new(runs),
            writing: Mutex::new(()),
        }
    }

    /// The file the history is kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every kept run, oldest first.
    pub fn runs(&self) -> Vec<CompactionRun> {
        self.lock().iter().cloned().collect()
    }

    /// The newest run.
    pub fn last(&self) -> Option<CompactionRun> {
        self.lock().back().cloned()
    }

    /// Append `run` (dropping the oldest past [`HISTORY_LEN`]) and write the file durably:
    /// temporary file, fsync, rename, directory fsync. On error the run is kept in memory.
    pub fn record(&self, run: CompactionRun) -> Result<(), SaveHistoryError> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let file = {
            let mut runs = self.lock();
            runs.push_back(run);
            while runs.len() > HISTORY_LEN {
                runs.pop_front();
            }
            HistoryFile {
                runs: runs.iter().cloned().collect(),
            }
        };
        let bytes = serde_json::to_vec_pretty(&file)?;
        store_core::fsutil::write_file_atomically(&self.path, &bytes).map_err(|source| {
            SaveHistoryError::Io {
                path: self.path.clone(),
                source,
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<CompactionRun>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn aside_path(path: &Path) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".corrupt-{nanos}"));
    path.with_file_name(name)
}
