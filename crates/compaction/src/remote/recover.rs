//! `recover --from remote` ([`recover_data_dir`]): a whole data dir rebuilt on an empty
//! machine from the bucket alone. Each table gets its newest verified off-site backup (as
//! `restore --from remote` fetches it) and then every shipped change-log group after the
//! backup's log position, applied in order to the fetched file before it is swapped in, so
//! the data dir opens complete: it holds every write acknowledged before the last shipment.
//!
//! The chunks are fetched and decoded into segments in `<data_dir>/.remote-log-<table>.tmp/`
//! and replayed into the fetched backup with [`store_core::changelog::replay`]. The groups
//! are applied up to the first one missing (a chunk not in the bucket, or one that does not
//! decode); the report says which range could not be recovered, and the table's log
//! position is moved past it (as an owner does at open), so the new history is numbered
//! after everything in the bucket. A failure of the bucket or the disk stops the table
//! instead: it never settles for less because the network hiccuped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use store_core::changelog::{Replay, ReplayLimit, encode_groups, replay, segment_name};
use store_core::{RedbStore, StoreOptions, TableStore, WriteBatch};
use store_owners::{LogGap, Stores, StoresOptions, TABLE_NAMES};

use super::bucket::Credentials;
use super::chunks::{Chunk, fetch_chunk, list_chunks, run_after};
use super::error::{ChunkError, RecoverError, RemoteRestoreError, RemoteVerifyError};
use super::manifest::list_table;
use super::offsite::Offsite;
use super::restore::Fetched;
use crate::config::{MaintenanceConfig, RemoteConfig};
use crate::maintainer::Maintainer;
use crate::recovery::BackupSelector;
use crate::report::{RecoveryReport, RecoveryTrigger, RejectedBackup};

/// A table `recover` could not restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverFailure {
    /// The table.
    pub table: String,
    /// Why.
    pub error: String,
}

/// What `recover --from remote` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoverReport {
    /// The rebuilt data dir.
    pub data_dir: PathBuf,
    /// The tables restored, in [`TABLE_NAMES`] order.
    pub restored: Vec<RecoveryReport>,
    /// The tables that could not be (they are empty in the new data dir).
    pub failed: Vec<RecoverFailure>,
}

/// Rebuild all nine tables in `data_dir`, which must be missing or empty, from the newest
/// verified off-site backup of each and the change log shipped after it: an empty machine
/// with only the config (and the identity file, if the backups are encrypted) gets its data
/// back as of the last shipment. Each backup is verified before it is put in place; a table
/// whose backups all fail is reported and left empty; a table whose shipped log has a hole
/// is recovered up to it and its report names the groups missing
/// ([`RecoveryReport::log_unrecovered`]).
pub fn recover_data_dir(
    remote: &RemoteConfig,
    credentials: &Credentials,
    data_dir: &Path,
    maintenance: MaintenanceConfig,
) -> Result<RecoverReport, RecoverError> {
    recover_data_dir_at(remote, credentials, data_dir, maintenance, None)
}

/// [`recover_data_dir`] as of the instant `at` (`None`: as of the last shipment): each table
/// from its newest verified off-site backup made at or before `at`, and the shipped groups
/// committed at or before it. A table with no such backup is reported failed. The recovered
/// tables' logs go on after the last group in the bucket, so a daemon on them ships its new
/// history after the old one.
pub fn recover_data_dir_at(
    remote: &RemoteConfig,
    credentials: &Credentials,
    data_dir: &Path,
    maintenance: MaintenanceConfig,
    at: Option<SystemTime>,
) -> Result<RecoverReport, RecoverError> {
    match std::fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(RecoverError::NotEmpty(data_dir.to_path_buf()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(RecoverError::Io {
                path: data_dir.to_path_buf(),
                source,
            });
        }
    }
    let stores = Stores::open(data_dir, StoresOptions::default()).map_err(RecoverError::Open)?;
    let maintainer = Arc::new(Maintainer::new(Arc::new(stores), maintenance));
    let offsite =
        Offsite::open_with(maintainer, remote, credentials).map_err(RecoverError::Remote)?;
    let mut report = RecoverReport {
        data_dir: data_dir.to_path_buf(),
        restored: Vec::new(),
        failed: Vec::new(),
    };
    for table in TABLE_NAMES {
        match offsite.restore_with_log(table, at, RecoveryTrigger::Manual) {
            Ok(mut restored) => {
                // What went to quarantine is the empty table opened above, not user data.
                if let Some(empty) = restored.quarantined.take() {
                    let _ = std::fs::remove_file(empty);
                }
                report.restored.push(restored);
            }
            Err(e) => {
                tracing::error!(table, error = %e, "table not recovered");
                report.failed.push(RecoverFailure {
                    table: table.to_string(),
                    error: e.to_string(),
                });
            }
        }
    }
    let _ = std::fs::remove_dir(data_dir.join("quarantine"));
    Ok(report)
}

/// What applying the shipped log to a fetched backup did.
#[derive(Debug)]
struct Applied {
    /// Groups applied.
    groups: u64,
    /// Records in the file after.
    records: u64,
    /// The groups shipped that could not be applied, if any.
    gap: Option<LogGap>,
}

impl Offsite {
    /// Bring `table` of this live data dir back to its state at `at` from the bucket: its
    /// newest verified off-site backup made at or before `at`, the shipped change log
    /// applied up to `at`, swapped in as the state wanted (the owner logs the difference, as
    /// for a local point-in-time restore). A hole in the shipped log before `at` is reported
    /// in [`RecoveryReport::log_unrecovered`].
    pub fn restore_at(
        &self,
        table: &str,
        at: SystemTime,
        trigger: RecoveryTrigger,
    ) -> Result<RecoveryReport, RemoteRestoreError> {
        self.restore_with_log(table, Some(at), trigger)
    }

    /// Restore `table` from its newest verified off-site backup (made at or before `at`, if
    /// given) and the shipped change log after it (up to `at`): what [`recover_data_dir`]
    /// does for each table, and [`Offsite::restore_at`] for one.
    fn restore_with_log(
        &self,
        table: &str,
        at: Option<SystemTime>,
        trigger: RecoveryTrigger,
    ) -> Result<RecoveryReport, RemoteRestoreError> {
        let mut fetched = match at {
            None => self.fetch_for_restore(table, &BackupSelector::LatestVerified)?,
            Some(at) => self.fetch_made_before(table, at)?,
        };
        let until_micros = at.map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64)
        });
        let applied = list_chunks(&self.bucket, table)
            .map_err(|e| RemoteRestoreError::Log(e.into()))
            .and_then(|chunks| self.apply_shipped_log(table, &fetched, &chunks, until_micros));
        let applied = match applied {
            Ok(applied) => applied,
            Err(e) => {
                let _ = std::fs::remove_file(&fetched.staged);
                return Err(e);
            }
        };
        let result = self.maintainer.restore_verified_file(
            table,
            crate::recovery::VerifiedFile {
                id: &fetched.id,
                staged: &fetched.staged,
                records: applied.records,
                rejected: std::mem::take(&mut fetched.rejected),
            },
            trigger,
            at,
        );
        let _ = std::fs::remove_file(&fetched.staged);
        let mut report = result.map_err(RemoteRestoreError::Restore)?;
        report.log_replayed += applied.groups;
        if let Some(gap) = applied.gap {
            tracing::error!(table, %gap, "shipped change log incomplete");
            report.log_unrecovered = Some(gap);
        }
        tracing::info!(table, id = %fetched.id, groups = applied.groups, "restored from the bucket");
        Ok(report)
    }

    /// The newest off-site backup of `table` made at or before `at` that verifies (ids are
    /// their UTC creation times, so they compare as instants).
    fn fetch_made_before(
        &self,
        table: &str,
        at: SystemTime,
    ) -> Result<Fetched<'_>, RemoteRestoreError> {
        let newest = crate::backup::backup_id_at(at);
        let listing = list_table(&self.bucket, table).map_err(RemoteRestoreError::List)?;
        let mut rejected = Vec::new();
        for id in listing.ids.into_iter().filter(|id| *id <= newest) {
            match self.fetch_for_restore(table, &BackupSelector::Id(id.clone())) {
                Ok(mut fetched) => {
                    fetched.rejected.append(&mut rejected);
                    return Ok(fetched);
                }
                Err(RemoteRestoreError::Verify { id, source })
                    if source.is_corruption()
                        || matches!(source, RemoteVerifyError::NotFound { .. }) =>
                {
                    rejected.push(RejectedBackup {
                        id,
                        reason: source.to_string(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Err(RemoteRestoreError::NoVerifiedBackup {
            table: table.to_string(),
            rejected,
        })
    }

    /// Apply the shipped groups after the fetched backup's log position to its file (those
    /// committed at or before `until_micros`, if given).
    fn apply_shipped_log(
        &self,
        table: &str,
        fetched: &Fetched<'_>,
        chunks: &[Chunk],
        until_micros: Option<u64>,
    ) -> Result<Applied, RemoteRestoreError> {
        let through = chunks.iter().map(|c| c.last).max();
        let Some(position) = fetched.manifest.log_position else {
            // A backup taken without a change log (or uploaded before positions were
            // recorded): where the shipped groups start from it is unknown.
            return Ok(Applied {
                groups: 0,
                records: fetched.manifest.records,
                gap: through.map(|through| LogGap {
                    from: chunks.first().map_or(1, |c| c.first),
                    through,
                    detail: format!(
                        "backup {} records no log position: the shipped log cannot be applied",
                        fetched.id
                    ),
                }),
            });
        };
        let (run, missing) = run_after(chunks, position);
        let mut gap = missing.map(|(from, through)| LogGap {
            from,
            through,
            detail: format!("no chunk in the bucket holds group {from}"),
        });
        let dir = self
            .maintainer
            .data_dir()
            .join(format!(".remote-log-{table}.tmp"));
        let result = (|| {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|source| ChunkError::Io {
                path: dir.clone(),
                source,
            })?;
            let mut next = position + 1;
            for chunk in &run {
                match fetch_chunk(&self.bucket, &self.identities, chunk) {
                    Ok(groups) => {
                        let path = dir.join(segment_name(chunk.first));
                        std::fs::write(&path, encode_groups(&groups))
                            .map_err(|source| ChunkError::Io { path, source })?;
                        next = chunk.last + 1;
                    }
                    Err(e @ (ChunkError::Damaged { .. } | ChunkError::Codec { .. })) => {
                        gap = Some(LogGap {
                            from: next,
                            through: through.unwrap_or(chunk.last),
                            // A report's text (LogGap is shown, not matched on).
                            detail: format!("{e}; nothing after it is applied"),
                        });
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })();
        let applied = result
            .map_err(RemoteRestoreError::Log)
            .and_then(|()| replay_into(&fetched.staged, &dir, until_micros));
        let _ = std::fs::remove_dir_all(&dir);
        let (outcome, records) = applied?;
        if let Some(stopped) = &outcome.stopped
            && gap.is_none()
        {
            let from = outcome.position + 1;
            gap = Some(LogGap {
                from,
                through: through.unwrap_or(from),
                detail: stopped.to_string(),
            });
        }
        let past = gap.as_ref().map(|g| g.through).or_else(|| {
            // Brought back to an instant: the groups after it stay in the bucket.
            through.filter(|&t| until_micros.is_some() && outcome.position < t)
        });
        if let Some(past) = past {
            // Past the hole (or the instant), as an owner's replay does: the recovered table's log goes on
            // after the last group in the bucket, so a daemon on it ships after them and a
            // later recovery never applies the old groups beyond the hole to the new history.
            move_past(&fetched.staged, past)?;
        }
        Ok(Applied {
            groups: outcome.groups,
            records,
            gap,
        })
    }
}

/// Set the log position of the backup file `path` to `through`.
fn move_past(path: &Path, through: u64) -> Result<(), RemoteRestoreError> {
    let apply = |source| RemoteRestoreError::Apply {
        path: path.to_path_buf(),
        source,
    };
    let mut store = RedbStore::open(path, &StoreOptions::default()).map_err(|source| {
        RemoteRestoreError::OpenFetched {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let mut batch = store.begin_batch().map_err(apply)?;
    batch.set_log_position(through);
    batch.commit().map_err(apply)
}

/// Replay the segments in `dir` into the backup file `path`: what the replay did, and the
/// records in the file after.
fn replay_into(
    path: &Path,
    dir: &Path,
    until_micros: Option<u64>,
) -> Result<(Replay, u64), RemoteRestoreError> {
    let mut store = RedbStore::open(path, &StoreOptions::default()).map_err(|source| {
        RemoteRestoreError::OpenFetched {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let limit = ReplayLimit {
        until_micros,
        ..ReplayLimit::default()
    };
    let outcome = replay(&mut store, dir, limit).map_err(|source| RemoteRestoreError::Apply {
        path: path.to_path_buf(),
        source,
    })?;
    let records = store.counters().records;
    drop(store);
    Ok((outcome, records))
}
