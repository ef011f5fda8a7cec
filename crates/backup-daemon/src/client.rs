//! The operator verbs. When `<data_dir>/daemon.json` names a live daemon whose admin API
//! answers, a verb is a request to that API (token from the daemon's token file); otherwise it
//! opens the data dir itself and runs the operation directly.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use compaction::Maintainer;
use serde_json::Value;
use store_owners::{OpenStoresError, Stores, StoresOptions};

use crate::config::DaemonConfig;
use crate::files::{self, DaemonFile};
use crate::ops;
use crate::progress::{self, Bars};
use crate::protocol::{Op, OpError, OpResult};

/// How long a quick request may take before the daemon is considered unresponsive.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a verb failed.
#[derive(Debug)]
enum VerbError {
    /// The operation was refused or failed (status as in the admin API).
    Op(OpError),
    /// Anything else: cannot open the data dir, cannot reach the daemon...
    Other(anyhow::Error),
}

impl From<OpError> for VerbError {
    fn from(e: OpError) -> Self {
        VerbError::Op(e)
    }
}

impl From<anyhow::Error> for VerbError {
    fn from(e: anyhow::Error) -> Self {
        VerbError::Other(e)
    }
}

/// Run `op` and print its result; the exit code says whether it went well.
pub fn run_verb(config: &DaemonConfig, op: &Op, json: bool) -> ExitCode {
    let result = execute(config, op, progress::draws_here(json));
    // With `--json`, the result is the JSON the admin API answers; one that cannot be
    // encoded is an error, as the API's 500 is.
    let result = result.and_then(|result| {
        let encoded = if json { Some(result.to_json()?) } else { None };
        Ok((result, encoded))
    });
    match result {
        Ok((result, encoded)) => {
            match encoded {
                Some(json) => println!(
                    "{}",
                    serde_json::to_string_pretty(&json).unwrap_or_default()
                ),
                None => print!("{}", crate::render::render(&result)),
            }
            if crate::render::has_failures(op, &result) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            let (status, message) = match e {
                VerbError::Op(e) => (Some(e.status), e.message),
                VerbError::Other(e) => (None, crate::logging::error_line(&e)),
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "error": message, "status": status })
                );
            } else {
                eprintln!("error: {message}");
            }
            // Bad input is a usage error.
            if status == Some(400) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Run `op` through the daemon or directly; with `draw`, progress bars while it runs.
fn execute(config: &DaemonConfig, op: &Op, draw: bool) -> Result<OpResult, VerbError> {
    let data_dir = &config.data_dir;
    let daemon = DaemonFile::read(data_dir).filter(DaemonFile::pid_alive);
    if let Some(daemon) = &daemon {
        match via_daemon(daemon, op, draw) {
            Ok(result) => return Ok(result),
            Err(Remote::Unreachable(e)) => {
                tracing::warn!(admin = %daemon.admin, error = %e, "daemon.json names a daemon that does not answer");
            }
            Err(Remote::Failed(e)) => return Err(e),
        }
    }
    direct(config, op, daemon.as_ref(), draw)
}

/// A request to the daemon did not work.
enum Remote {
    /// Nobody answers: fall back to the data dir.
    Unreachable(String),
    /// The daemon answered with an error, or broke off.
    Failed(VerbError),
}

fn via_daemon(daemon: &DaemonFile, op: &Op, draw: bool) -> Result<OpResult, Remote> {
    let token = files::read_token(&daemon.token_file).map_err(|e| Remote::Failed(e.into()))?;
    // The bars poll the daemon on a connection of their own while this request waits (the
    // admin API answers on several workers).
    let _bars = op
        .progress_label()
        .filter(|_| draw)
        .map(|label| Bars::start(label, poll_operations(daemon, &token)));
    let route = op.route();
    let method = route.method.as_str();
    let url = format!("http://{}{}", daemon.admin, route.path_and_query());
    tracing::debug!(%method, %url, "admin API request");
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .build();
    let request = agent
        .request(method, &url)
        .set("Authorization", &format!("Bearer {token}"));
    let response = match route.body {
        Some(body) => request.send_json(body),
        None => request.call(),
    };
    match response {
        Ok(response) => response
            .into_json::<Value>()
            .map_err(anyhow::Error::new)
            .and_then(|json| op.read_result(json).map_err(anyhow::Error::new))
            .map_err(|e| {
                Remote::Failed(VerbError::Other(anyhow::anyhow!(
                    "bad reply from the daemon at {}: {e}",
                    daemon.admin
                )))
            }),
        Err(ureq::Error::Status(status, response)) => {
            let body = response.into_string().unwrap_or_default();
            Err(Remote::Failed(VerbError::Op(OpError::from_reply(
                status, &body,
            ))))
        }
        Err(ureq::Error::Transport(t)) if t.kind() == ureq::ErrorKind::ConnectionFailed => {
            Err(Remote::Unreachable(t.to_string()))
        }
        Err(ureq::Error::Transport(t)) => Err(Remote::Failed(VerbError::Other(anyhow::anyhow!(
            "talking to the daemon at {}: {t}",
            daemon.admin
        )))),
    }
}

/// The running operations of the daemon, read with `GET /operations`.
fn poll_operations(daemon: &DaemonFile, token: &str) -> progress::Source {
    let op = Op::Operations;
    let url = format!("http://{}{}", daemon.admin, op.route().path_and_query());
    let auth = format!("Bearer {token}");
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout(CONNECT_TIMEOUT)
        .build();
    Box::new(move || {
        let json = agent
            .get(&url)
            .set("Authorization", &auth)
            .call()
            .ok()?
            .into_json::<Value>()
            .ok()?;
        match op.read_result(json).ok()? {
            OpResult::Operations(running) => Some(running),
            _ => None,
        }
    })
}

/// The running operations of this process's `maintainer`.
fn in_process(maintainer: &Arc<Maintainer>) -> progress::Source {
    let maintainer = Arc::clone(maintainer);
    Box::new(move || Some(maintainer.operations()))
}

fn direct(
    config: &DaemonConfig,
    op: &Op,
    stale: Option<&DaemonFile>,
    draw: bool,
) -> Result<OpResult, VerbError> {
    // Verbs that only read files open no table (and so take no lock).
    match op {
        Op::History => {
            return Ok(OpResult::History(
                compaction::History::load(&config.data_dir).runs(),
            ));
        }
        Op::Backups { verify: false } => {
            let backups = compaction::backup::list_all_backups(&config.backup_dir())
                .map_err(|e| VerbError::Other(anyhow::Error::new(e)))?;
            return Ok(OpResult::Backups(backups));
        }
        _ => {}
    }
    let stores = open_stores(config, stale)?;
    let maintainer = Arc::new(Maintainer::new(Arc::new(stores), config.maintenance()));
    let offsite = crate::remote::open_offsite(config, &maintainer)?;
    let result = {
        let _bars = op
            .progress_label()
            .filter(|_| draw)
            .map(|label| Bars::start(label, in_process(&maintainer)));
        ops::execute(&maintainer, offsite.as_deref(), op)?
    };
    // Without a daemon there is no upload thread nor shipper: a backup goes off-site before
    // the verb ends, with the change logs up to now. A failure is reported, never the
    // backup's: the local backups are made (and the local logs keep what is not shipped).
    if let (Op::Backup { .. }, Some(offsite)) = (op, &offsite) {
        let _bars = draw.then(|| Bars::start("uploading", in_process(&maintainer)));
        for failure in offsite.ship_logs().failures {
            eprintln!(
                "warning: change log of {} not shipped (shipped by the daemon when it runs): {}",
                failure.table, failure.error
            );
        }
        for failure in offsite.upload_pending().failures {
            eprintln!(
                "warning: upload of {} failed (tried again after the next backup): {}",
                failure.table, failure.error
            );
        }
    }
    Ok(result)
}

fn open_stores(config: &DaemonConfig, daemon: Option<&DaemonFile>) -> Result<Stores> {
    // Opened as the daemon opens them: without reading every page (the scrub verifies), with
    // the same change logs and caches.
    let options = StoresOptions {
        check_integrity_on_open: false,
        ..config.stores_options()
    };
    match Stores::open(&config.data_dir, options) {
        Ok(stores) => Ok(stores),
        Err(OpenStoresError::Locked(dir)) => {
            let who = match daemon {
                Some(d) => format!(
                    "daemon.json names pid {} with its admin API at {}, which does not answer",
                    d.pid, d.admin
                ),
                None => "no daemon.json: another CLI command is probably running".to_string(),
            };
            Err(anyhow::anyhow!(
                "data dir {} is in use by another process ({who}); try again later",
                dir.display()
            ))
        }
        Err(e) => Err(e).context("opening the tables"),
    }
}
