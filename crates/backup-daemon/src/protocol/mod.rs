//! The admin protocol, one typed definition that the CLI and the admin API both speak: the
//! operations ([`Op`]), the request each one is ([`Op::route`]) and the parser back
//! ([`Op::from_request`]), written side by side as one table, and the replies ([`OpResult`]
//! on success, [`OpError`] otherwise).
//!
//! | operation                               | request                                        |
//! |-----------------------------------------|------------------------------------------------|
//! | `Op::Status`                            | `GET /health`                                  |
//! | `Op::History`                           | `GET /history`                                 |
//! | `Op::Operations`                        | `GET /operations`                              |
//! | `Op::Backups { verify }`                | `GET /backups?verify={verify}`                 |
//! | `Op::Compact { table: None, force }`    | `POST /compact?force={force}`                  |
//! | `Op::Compact { table: Some(t), force }` | `POST /compact/{t}?force={force}`              |
//! | `Op::Backup { table: None }`            | `POST /backup`                                 |
//! | `Op::Backup { table: Some(t) }`         | `POST /backup?table={t}`                       |
//! | `Op::Restore { table, backup }`         | `POST /restore/{table}`, body `{"backup": id}` |
//! | `Op::RemoteBackups { verify }`          | `GET /remote/backups?verify={verify}`          |
//! | `Op::Upload`                            | `POST /remote/upload`                          |
//! | `Op::RemoteRestore { table, backup }`   | `POST /remote/restore/{table}`, body as above  |
//! | `Op::RestoreAt { table, at, remote }`   | `POST /restore-at`, body `{"table": t, "at": time, "remote": bool}` |
//!
//! The parser also takes what operators send by hand: flags without a value or as `1`/`0`,
//! `POST /compact?table=T`, `POST /backup/{table}`, `?backup=id` on a restore and a restore
//! without a body. `GET /events` and `GET /metrics` are not operations: the admin API serves
//! them itself ([`Special`]). Every operation's reply is its result as JSON, the
//! same JSON `--json` prints; an error is `{"error": message}` with the status of [`OpError`].

mod reply;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use self::reply::{OpError, OpResult};

/// The HTTP methods of the operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Reads.
    Get,
    /// Everything that changes something.
    Post,
}

impl Method {
    /// `GET` or `POST`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// The request of one operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path, `/compact/task_queue`.
    pub path: String,
    /// The query string without its `?`, `force=true`; may be empty.
    pub query: String,
    /// The JSON body, if the request has one.
    pub body: Option<Value>,
}

impl Route {
    /// Path and query, as they go after the host in a URL.
    pub fn path_and_query(&self) -> String {
        match self.query.as_str() {
            "" => self.path.clone(),
            query => format!("{}?{query}", self.path),
        }
    }
}

/// The routes the admin API serves itself, outside the operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// `GET /metrics`: the Prometheus text (the only route without a token); `HEAD /metrics`
    /// answers the same status and headers without the body.
    Metrics,
    /// `GET /events`: the "backups" topic as server-sent events.
    Events,
    /// `GET /livez`: 200 while the admin API answers (no token).
    Livez,
    /// `GET /readyz`: 200 once the daemon has started and every table serves, else 503 (no
    /// token).
    Readyz,
    /// `GET /dashboard/samples`: the dashboard's plots, tables' size and fragmentation over
    /// the last hours.
    Samples,
}

impl Special {
    /// The special route `method` and `path` ask for, if any.
    pub fn from_request(method: &str, path: &str) -> Option<Special> {
        match (method, segments(path).as_slice()) {
            ("GET" | "HEAD", ["metrics"]) => Some(Special::Metrics),
            ("GET", ["events"]) => Some(Special::Events),
            ("GET" | "HEAD", ["livez"]) => Some(Special::Livez),
            ("GET" | "HEAD", ["readyz"]) => Some(Special::Readyz),
            ("GET", ["dashboard", "samples"]) => Some(Special::Samples),
            _ => None,
        }
    }
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Health metrics of the nine tables.
    Status,
    /// The last compaction runs.
    History,
    /// The compactions, backups, verifications, restores and uploads running now, with the
    /// bytes each has moved (what the CLI's progress bars poll).
    Operations,
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
    /// The off-site backups; with `verify`, each fetched and fully verified.
    RemoteBackups {
        /// Download and check every backup.
        verify: bool,
    },
    /// Upload now what is not off-site yet.
    Upload,
    /// Restore a table from an off-site backup.
    RemoteRestore {
        /// The table.
        table: String,
        /// `None`: the newest verified off-site backup.
        backup: Option<String>,
    },
    /// Bring a table, or all nine, back to their state at one instant (backup + change log).
    RestoreAt {
        /// `None`: all nine tables, to the same instant.
        table: Option<String>,
        /// The instant, RFC 3339 (`2026-12-02T10:15:00Z`).
        at: String,
        /// From the off-site backups and the shipped change log instead of the local ones.
        remote: bool,
    },
}

impl Op {
    /// The request for this operation; [`Op::from_request`] reads it back.
    pub fn route(&self) -> Route {
        let (method, path, query, body) = match self {
            Op::Status => (Method::Get, "/health".into(), String::new(), None),
            Op::History => (Method::Get, "/history".into(), String::new(), None),
            Op::Operations => (Method::Get, "/operations".into(), String::new(), None),
            Op::Backups { verify } => (
                Method::Get,
                "/backups".into(),
                format!("verify={verify}"),
                None,
            ),
            Op::Compact { table: None, force } => (
                Method::Post,
                "/compact".into(),
                format!("force={force}"),
                None,
            ),
            Op::Compact {
                table: Some(t),
                force,
            } => (
                Method::Post,
                format!("/compact/{t}"),
                format!("force={force}"),
                None,
            ),
            Op::Backup { table: None } => (Method::Post, "/backup".into(), String::new(), None),
            Op::Backup { table: Some(t) } => {
                (Method::Post, "/backup".into(), format!("table={t}"), None)
            }
            Op::Restore { table, backup } => {
                let body = RestoreBody {
                    backup: backup.clone(),
                };
                (
                    Method::Post,
                    format!("/restore/{table}"),
                    String::new(),
                    Some(serde_json::json!(body)),
                )
            }
            Op::RemoteBackups { verify } => (
                Method::Get,
                "/remote/backups".into(),
                format!("verify={verify}"),
                None,
            ),
            Op::Upload => (Method::Post, "/remote/upload".into(), String::new(), None),
            Op::RestoreAt { table, at, remote } => {
                let body = RestoreAtBody {
                    table: table.clone(),
                    at: at.clone(),
                    remote: *remote,
                };
                (
                    Method::Post,
                    "/restore-at".into(),
                    String::new(),
                    Some(serde_json::json!(body)),
                )
            }
            Op::RemoteRestore { table, backup } => {
                let body = RestoreBody {
                    backup: backup.clone(),
                };
                (
                    Method::Post,
                    format!("/remote/restore/{table}"),
                    String::new(),
                    Some(serde_json::json!(body)),
                )
            }
        };
        Route {
            method,
            path,
            query,
            body,
        }
    }

    /// The operation a request asks for: `method` as sent, `path` without the query, `query`
    /// without its `?`, `body` as read. 404 for no route, 405 for a route without that
    /// method, 400 for bad parameters or a bad body.
    pub fn from_request(method: &str, path: &str, query: &str, body: &[u8]) -> Result<Op, OpError> {
        let params = Params::parse(query);
        let segments = segments(path);
        match (method, segments.as_slice()) {
            ("GET", ["health"]) => Ok(Op::Status),
            ("GET", ["history"]) => Ok(Op::History),
            ("GET", ["operations"]) => Ok(Op::Operations),
            ("GET", ["backups"]) => Ok(Op::Backups {
                verify: params.flag("verify")?,
            }),
            ("POST", ["compact"]) => Ok(Op::Compact {
                table: params.get("table").map(str::to_string),
                force: params.flag("force")?,
            }),
            ("POST", ["compact", table]) => Ok(Op::Compact {
                table: Some(table.to_string()),
                force: params.flag("force")?,
            }),
            ("POST", ["backup"]) => Ok(Op::Backup {
                table: params.get("table").map(str::to_string),
            }),
            ("POST", ["backup", table]) => Ok(Op::Backup {
                table: Some(table.to_string()),
            }),
            ("POST", ["restore", table]) => Ok(Op::Restore {
                table: table.to_string(),
                backup: restore_backup(body, &params)?,
            }),
            ("GET", ["remote", "backups"]) => Ok(Op::RemoteBackups {
                verify: params.flag("verify")?,
            }),
            ("POST", ["remote", "upload"]) => Ok(Op::Upload),
            ("POST", ["remote", "restore", table]) => Ok(Op::RemoteRestore {
                table: table.to_string(),
                backup: restore_backup(body, &params)?,
            }),
            ("POST", ["restore-at"]) => {
                let body: RestoreAtBody = serde_json::from_slice(body)
                    .map_err(|e| OpError::new(400, format!("bad JSON body: {e}")))?;
                parse_instant(&body.at)?;
                Ok(Op::RestoreAt {
                    table: body.table,
                    at: body.at,
                    remote: body.remote,
                })
            }
            // The special routes are here for the methods they do not take.
            (_, ["health" | "history" | "operations" | "backups" | "events" | "metrics"])
            | (_, ["compact" | "backup"] | ["compact" | "backup", _])
            | (_, ["restore", _] | ["restore-at"])
            | (_, ["remote", "backups" | "upload"])
            | (_, ["remote", "restore", _]) => Err(OpError::new(
                405,
                format!("method {method} not allowed here"),
            )),
            _ => Err(OpError::new(
                404,
                format!("no route /{}", segments.join("/")),
            )),
        }
    }

    /// This operation's result read back from its JSON (the daemon's reply).
    pub fn read_result(&self, json: Value) -> Result<OpResult, serde_json::Error> {
        Ok(match self {
            Op::Status => OpResult::Health(Box::new(serde_json::from_value(json)?)),
            Op::History => OpResult::History(serde_json::from_value(json)?),
            Op::Operations => OpResult::Operations(serde_json::from_value(json)?),
            Op::Backups { .. } => OpResult::Backups(serde_json::from_value(json)?),
            Op::Compact { .. } => OpResult::Compaction(serde_json::from_value(json)?),
            Op::Backup { .. } => OpResult::Backup(serde_json::from_value(json)?),
            Op::Restore { .. } | Op::RemoteRestore { .. } => {
                OpResult::Restore(serde_json::from_value(json)?)
            }
            Op::RemoteBackups { .. } => OpResult::RemoteBackups(serde_json::from_value(json)?),
            Op::Upload => OpResult::Upload(serde_json::from_value(json)?),
            Op::RestoreAt { .. } => OpResult::RestoreAt(serde_json::from_value(json)?),
        })
    }

    /// What the progress display says while the operation runs and no byte-moving step of it
    /// is listed; `None` for quick operations, which draw nothing.
    pub fn progress_label(&self) -> Option<&'static str> {
        match self {
            Op::Status | Op::History | Op::Operations | Op::Backups { verify: false } => None,
            Op::Backups { verify: true } => Some("verifying backups"),
            Op::Compact { .. } => Some("compacting"),
            Op::Backup { .. } => Some("backing up"),
            Op::Restore { .. } => Some("restoring"),
            Op::RemoteBackups { verify: false } => Some("listing off-site backups"),
            Op::RemoteBackups { verify: true } => Some("verifying off-site backups"),
            Op::Upload => Some("uploading"),
            Op::RemoteRestore { .. } => Some("restoring from the bucket"),
            Op::RestoreAt { .. } => Some("restoring to a point in time"),
        }
    }
}

/// The body of a restore request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    /// The backup id; absent or null for the newest verified backup.
    backup: Option<String>,
}

/// The body of a point-in-time restore.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreAtBody {
    /// The table; absent or null for all nine.
    #[serde(default)]
    table: Option<String>,
    /// The instant, RFC 3339.
    at: String,
    /// From the bucket; absent: false (the local backups and change log).
    #[serde(default)]
    remote: bool,
}

/// An instant as operators write it: RFC 3339, `2026-12-02T10:15:00Z` (fractions of a
/// second and a `+00:00` offset taken too).
pub fn parse_instant(text: &str) -> Result<std::time::SystemTime, OpError> {
    humantime::parse_rfc3339_weak(text.trim()).map_err(|e| {
        OpError::new(
            400,
            format!("bad instant {text:?}: {e} (RFC 3339, like 2026-12-02T10:15:00Z)"),
        )
    })
}

/// The backup of a restore request: from its JSON body (`{"backup": id}`, may be empty), else
/// from `?backup=id`.
fn restore_backup(body: &[u8], params: &Params<'_>) -> Result<Option<String>, OpError> {
    let text = std::str::from_utf8(body).map_err(|_| {
        OpError::new(
            400,
            "cannot read the request body: stream did not contain valid UTF-8",
        )
    })?;
    let from_body = match text.trim() {
        "" => None,
        text => {
            let parsed: RestoreBody = serde_json::from_str(text)
                .map_err(|e| OpError::new(400, format!("bad JSON body: {e}")))?;
            parsed.backup
        }
    };
    Ok(from_body.or_else(|| params.get("backup").map(str::to_string)))
}

/// The non-empty segments of `path`: `/compact//t/` is `["compact", "t"]`.
fn segments(path: &str) -> Vec<&str> {
    path.trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

/// Query-string parameters (no percent-decoding needed: table names and ids are plain).
struct Params<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Params<'a> {
    fn parse(query: &'a str) -> Params<'a> {
        let pairs = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")));
        Params(pairs.collect())
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn flag(&self, key: &str) -> Result<bool, OpError> {
        match self.get(key) {
            None | Some("false" | "0") => Ok(false),
            Some("" | "true" | "1") => Ok(true),
            Some(other) => Err(OpError::new(
                400,
                format!("{key}={other}: expected true or false"),
            )),
        }
    }
}

#[cfg(test)]
mod tests;
