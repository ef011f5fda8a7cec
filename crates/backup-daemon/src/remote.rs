//! The daemon's side of off-site backups: opening them from `[remote]` (credentials from the
//! environment only), and `recover --from remote`, which rebuilds a data dir on an empty
//! machine without a daemon.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use compaction::Maintainer;
use compaction::remote::{Credentials, Offsite, RecoverReport, recover_data_dir_at};

use crate::config::DaemonConfig;

/// The off-site backups `config` asks for, if any. The error names the `[remote]` key.
pub fn open_offsite(
    config: &DaemonConfig,
    maintainer: &Arc<Maintainer>,
) -> Result<Option<Arc<Offsite>>> {
    let Some(remote) = &config.remote else {
        return Ok(None);
    };
    let offsite = Offsite::open(maintainer.clone(), remote).context("config [remote]")?;
    Ok(Some(Arc::new(offsite)))
}

/// `recover --from remote [--at TIME]`: rebuild the nine tables of `config.data_dir` (missing
/// or empty) from the newest verified off-site backups and the change log shipped after them
/// (as of `at`, if given), and print what was done.
pub fn recover(config: &DaemonConfig, at: Option<std::time::SystemTime>, json: bool) -> ExitCode {
    let Some(remote) = &config.remote else {
        eprintln!("error: recover --from remote needs a [remote] section in the config");
        return ExitCode::from(2);
    };
    let mut maintenance = config.maintenance();
    maintenance.backup.dir = config.backup_dir();
    let result = {
        let _spinner = crate::progress::draws_here(json)
            .then(|| crate::progress::Bars::spinner("recovering from the bucket"));
        recover_data_dir_at(
            remote,
            &Credentials::Environment,
            &config.data_dir,
            maintenance,
            at,
        )
    };
    match result {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", render(&report));
            }
            if report.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            let line = crate::logging::error_line(&anyhow::Error::new(e));
            if json {
                println!("{}", serde_json::json!({ "error": line }));
            } else {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

fn render(report: &RecoverReport) -> String {
    let mut out = format!("recovered into {}\n", display(&report.data_dir));
    for r in &report.restored {
        out.push_str(&format!(
            "  {:<18} restored  backup {}  {} records\n",
            r.table,
            r.backup_id.as_deref().unwrap_or("-"),
            r.records
        ));
        if r.log_replayed > 0 {
            out.push_str(&format!(
                "  {:<18}   + {} change-log groups shipped after it\n",
                "", r.log_replayed
            ));
        }
        if let Some(gap) = &r.log_unrecovered {
            out.push_str(&format!("  {:<18}   MISSING {gap}\n", ""));
        }
        for rejected in &r.rejected {
            out.push_str(&format!(
                "  {:<18}   skipped {}: {}\n",
                "", rejected.id, rejected.reason
            ));
        }
    }
    for f in &report.failed {
        out.push_str(&format!("  {:<18} FAILED    {}\n", f.table, f.error));
    }
    out
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
