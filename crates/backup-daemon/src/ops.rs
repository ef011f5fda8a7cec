//! The operations a verb or an admin request asks for, run against a [`Maintainer`]. Both the
//! admin API and the CLI's direct mode go through [`execute`], so a verb gives the same JSON
//! whether a daemon runs or not.

use compaction::Maintainer;
use compaction::backup::{BackupOptions, BackupRequestError, BackupTrigger, ListBackupsError};
use compaction::compact::{CompactOptions, CompactRequestError, Trigger};
use compaction::recovery::{BackupSelector, RecoveryTrigger, RestoreError};
use serde::Serialize;
use serde_json::Value;

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Health metrics of the nine tables.
    Status,
    /// The last compaction runs.
    History,
    /// The backups; with `verify`, each fully verified.
    Backups {
        /// Read and check every backup file.
        verify: bool,
    },
    /// Compact one table or all.
    Compact {
        /// `None`: every table.
        table: Option<String>,
        /// Ignore the fragmentation threshold.
        force: bool,
    },
    /// Back up one table or all.
    Backup {
        /// `None`: every table.
        table: Option<String>,
    },
    /// Restore a table from a backup.
    Restore {
        /// The table.
        table: String,
        /// `None`: the newest verified backup.
        backup: Option<String>,
    },
}

impl Op {
    /// The admin API request for this operation: method, path with query, JSON body.
    pub fn http(&self) -> (&'static str, String, Option<Value>) {
        match self {
            Op::Status => ("GET", "/health".into(), None),
            Op::History => ("GET", "/history".into(), None),
            Op::Backups { verify } => ("GET", format!("/backups?verify={verify}"), None),
            Op::Compact { table: None, force } => ("POST", format!("/compact?force={force}"), None),
            Op::Compact {
                table: Some(t),
                force,
            } => ("POST", format!("/compact/{t}?force={force}"), None),
            Op::Backup { table: None } => ("POST", "/backup".into(), None),
            Op::Backup { table: Some(t) } => ("POST", format!("/backup?table={t}"), None),
            Op::Restore { table, backup } => (
                "POST",
                format!("/restore/{table}"),
                Some(serde_json::json!({ "backup": backup })),
            ),
        }
    }

    /// What a spinner says while the operation runs; `None` for quick operations.
    pub fn progress_label(&self) -> Option<&'static str> {
        match self {
            Op::Status | Op::History | Op::Backups { verify: false } => None,
            Op::Backups { verify: true } => Some("verifying backups"),
            Op::Compact { .. } => Some("compacting"),
            Op::Backup { .. } => Some("backing up"),
            Op::Restore { .. } => Some("restoring"),
        }
    }
}

/// An operation that did not run, with the HTTP status that says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    /// 400 bad input, 404 unknown table or backup, 409 busy, 500 anything else.
    pub status: u16,
    /// What went wrong.
    pub message: String,
}

impl OpError {
    fn new(status: u16, message: impl std::fmt::Display) -> OpError {
        OpError {
            status,
            message: message.to_string(),
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OpError {}

fn to_json<T: Serialize>(value: &T) -> Result<Value, OpError> {
    serde_json::to_value(value)
        .map_err(|e| OpError::new(500, format!("cannot encode the result: {e}")))
}

/// Run `op`. Compactions and backups never wait for another maintenance operation (409
/// instead); a restore waits for it (the library always does).
pub fn execute(maintainer: &Maintainer, op: &Op) -> Result<Value, OpError> {
    match op {
        Op::Status => to_json(&maintainer.health_metrics()),
        Op::History => to_json(&maintainer.history()),
        Op::Backups { verify } => {
            let backups = maintainer.list_backups(*verify).map_err(|e| match e {
                ListBackupsError::UnknownTable(_) => OpError::new(404, e),
                _ => OpError::new(500, e),
            })?;
            to_json(&backups)
        }
        Op::Compact { table, force } => {
            let options = CompactOptions {
                force: *force,
                trigger: Trigger::Manual,
                wait: false,
            };
            let run = match table {
                Some(t) => maintainer.compact_one(t, options),
                None => maintainer.compact_all(options),
            };
            let run = run.map_err(|e| match e {
                CompactRequestError::UnknownTable(_) => OpError::new(404, e),
                CompactRequestError::Busy => OpError::new(409, e),
                _ => OpError::new(500, e),
            })?;
            to_json(&run)
        }
        Op::Backup { table } => {
            let options = BackupOptions {
                trigger: BackupTrigger::Manual,
                wait: false,
            };
            let run = match table {
                Some(t) => maintainer.backup_one(t, options),
                None => maintainer.backup_all(options),
            };
            let run = run.map_err(|e| match e {
                BackupRequestError::UnknownTable(_) => OpError::new(404, e),
                BackupRequestError::Busy => OpError::new(409, e),
                _ => OpError::new(500, e),
            })?;
            to_json(&run)
        }
        Op::Restore { table, backup } => {
            let selector = match backup {
                Some(id) => BackupSelector::Id(id.clone()),
                None => BackupSelector::LatestVerified,
            };
            let report = maintainer
                .restore(table, selector, RecoveryTrigger::Manual)
                .map_err(|e| match e {
                    RestoreError::UnknownTable(_) => OpError::new(404, e),
                    RestoreError::InvalidBackupId(_) => OpError::new(400, e),
                    RestoreError::BackupNotFound { .. } | RestoreError::NoVerifiedBackup { .. } => {
                        OpError::new(404, e)
                    }
                    _ => OpError::new(500, e),
                })?;
            to_json(&report)
        }
    }
}
