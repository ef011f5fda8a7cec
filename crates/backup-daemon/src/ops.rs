//! The operations a verb or an admin request asks for ([`Op`]), run against a [`Maintainer`].
//! Both the admin API and the CLI's direct mode go through [`execute`], so a verb gives the
//! same result whether a daemon runs or not.

use compaction::backup::{BackupRequestError, ListBackupsError};
use compaction::remote::{Offsite, RemoteRestoreError, RemoteVerifyError};
use compaction::{
    BackupOptions, BackupSelector, BackupTrigger, CompactOptions, CompactRequestError, Maintainer,
    RecoveryTrigger, RestoreError, Trigger,
};

use crate::protocol::{Op, OpError, OpResult};

/// Run `op`; the off-site operations need `offsite` (`[remote]` configured). Compactions,
/// backups and restores never wait for another maintenance operation (409 instead); only
/// automatic recovery, which does not come through here, waits for it.
pub fn execute(
    maintainer: &Maintainer,
    offsite: Option<&Offsite>,
    op: &Op,
) -> Result<OpResult, OpError> {
    match op {
        Op::Status => {
            let mut report = maintainer.health_metrics();
            report.remote = offsite.map(Offsite::health);
            Ok(OpResult::Health(Box::new(report)))
        }
        Op::History => Ok(OpResult::History(maintainer.history())),
        Op::Operations => Ok(OpResult::Operations(maintainer.operations())),
        Op::Backups { verify } => {
            let backups = maintainer.list_backups(*verify).map_err(|e| match e {
                ListBackupsError::UnknownTable(_) => OpError::new(404, e),
                _ => OpError::new(500, e),
            })?;
            Ok(OpResult::Backups(backups))
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
            Ok(OpResult::Compaction(run))
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
            Ok(OpResult::Backup(run))
        }
        Op::Restore { table, backup } => {
            let selector = match backup {
                Some(id) => BackupSelector::Id(id.clone()),
                None => BackupSelector::LatestVerified,
            };
            let report = maintainer
                .try_restore(table, selector, RecoveryTrigger::Manual)
                .map_err(|e| match e {
                    RestoreError::UnknownTable(_) => OpError::new(404, e),
                    RestoreError::InvalidBackupId(_) => OpError::new(400, e),
                    RestoreError::Busy => OpError::new(409, e),
                    RestoreError::BackupNotFound { .. } | RestoreError::NoVerifiedBackup { .. } => {
                        OpError::new(404, e)
                    }
                    _ => OpError::new(500, e),
                })?;
            Ok(OpResult::Restore(report))
        }
        Op::RemoteBackups { verify } => {
            let backups = configured(offsite)?
                .list(*verify)
                .map_err(|e| OpError::new(502, e))?;
            Ok(OpResult::RemoteBackups(backups))
        }
        Op::Upload => Ok(OpResult::Upload(configured(offsite)?.upload_pending())),
        Op::RestoreAt {
            table,
            at,
            remote: true,
        } => {
            let at = crate::protocol::parse_instant(at)?;
            let offsite = configured(offsite)?;
            let tables: Vec<&str> = match table {
                Some(t) => vec![t.as_str()],
                None => store_owners::TABLE_NAMES.to_vec(),
            };
            let mut reports = Vec::new();
            for table in tables {
                let report = offsite
                    .restore_at(table, at, RecoveryTrigger::Manual)
                    .map_err(|e| OpError::new(remote_restore_status(&e), e))?;
                reports.push(report);
            }
            Ok(OpResult::RestoreAt(reports))
        }
        Op::RestoreAt {
            table,
            at,
            remote: false,
        } => {
            let at = crate::protocol::parse_instant(at)?;
            let reports = match table {
                Some(table) => maintainer
                    .restore_at(table, at, RecoveryTrigger::Manual)
                    .map(|r| vec![r]),
                None => maintainer.restore_all_at(at, RecoveryTrigger::Manual),
            };
            let reports = reports.map_err(|e| match e {
                RestoreError::UnknownTable(_) => OpError::new(404, e),
                RestoreError::OutOfRange { .. } | RestoreError::NoChangeLog(_) => {
                    OpError::new(400, e)
                }
                RestoreError::NoVerifiedBackup { .. } => OpError::new(404, e),
                _ => OpError::new(500, e),
            })?;
            Ok(OpResult::RestoreAt(reports))
        }
        Op::RemoteRestore { table, backup } => {
            let selector = match backup {
                Some(id) => BackupSelector::Id(id.clone()),
                None => BackupSelector::LatestVerified,
            };
            let report = configured(offsite)?
                .restore(table, selector, RecoveryTrigger::Manual)
                .map_err(|e| OpError::new(remote_restore_status(&e), e))?;
            Ok(OpResult::Restore(report))
        }
    }
}

/// The off-site backups, or 400 when `[remote]` is not configured.
fn configured(offsite: Option<&Offsite>) -> Result<&Offsite, OpError> {
    offsite.ok_or_else(|| {
        OpError::new(
            400,
            "no off-site backups: the config has no [remote] section",
        )
    })
}

/// The status of a failed restore from the bucket: 502 when the bucket failed us.
fn remote_restore_status(e: &RemoteRestoreError) -> u16 {
    match e {
        RemoteRestoreError::UnknownTable(_) | RemoteRestoreError::NoVerifiedBackup { .. } => 404,
        RemoteRestoreError::Verify { source, .. } => match source {
            RemoteVerifyError::NotFound { .. } => 404,
            RemoteVerifyError::InvalidBackupId(_) => 400,
            RemoteVerifyError::Remote(_) => 502,
            _ => 500,
        },
        RemoteRestoreError::List(_) => 502,
        RemoteRestoreError::Restore(RestoreError::Busy) => 409,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use compaction::Maintainer;
    use store_owners::{Stores, StoresOptions};

    use super::execute;
    use crate::config::DaemonConfig;
    use crate::protocol::{Op, OpResult};

    /// What the CLI reads from the daemon's reply is what the daemon had: every kind of result,
    /// taken from real operations, reads back from its JSON.
    #[test]
    fn every_result_reads_back_from_its_json() {
        let dir = tempfile::tempdir().unwrap();
        let stores = Stores::open(&dir.path().join("data"), StoresOptions::default()).unwrap();
        let mut config = DaemonConfig::default().maintenance();
        config.backup.dir = dir.path().join("backups");
        let maintainer = Maintainer::new(Arc::new(stores), config);
        let table = || "task_queue".to_string();
        let mut ops = vec![
            Op::Compact {
                table: None,
                force: true,
            },
            Op::Compact {
                table: Some(table()),
                force: false,
            },
            Op::Backup { table: None },
            Op::Backups { verify: false },
            Op::Backups { verify: true },
            Op::Restore {
                table: table(),
                backup: None,
            },
            Op::History,
            Op::Operations,
            Op::Status,
        ];
        let Ok(OpResult::Backup(run)) = execute(
            &maintainer,
            None,
            &Op::Backup {
                table: Some(table()),
            },
        ) else {
            panic!("a backup of {}", table());
        };
        ops.push(Op::Restore {
            table: table(),
            backup: Some(run.backups[0].id.clone()),
        });
        for op in &ops {
            let result = execute(&maintainer, None, op).unwrap_or_else(|e| panic!("{op:?}: {e}"));
            let json = result.to_json().unwrap();
            let read_back = op.read_result(json.clone());
            assert_eq!(read_back.as_ref().ok(), Some(&result), "{op:?}: {json}");
        }
        let Ok(OpResult::Health(report)) = execute(&maintainer, None, &Op::Status) else {
            panic!("a health report");
        };
        // The report above had the history and a backup to carry.
        assert!(!report.history.is_empty());
        assert!(report.tables.iter().all(|t| t.last_backup.is_some()));
        let unknown = Op::Restore {
            table: "no_such_table".into(),
            backup: None,
        };
        assert_eq!(
            execute(&maintainer, None, &unknown).map_err(|e| e.status),
            Err(404)
        );
    }
}
