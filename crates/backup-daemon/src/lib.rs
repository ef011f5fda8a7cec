//! `backup-daemon`: storage maintenance for the hub's nine tables, as a binary (the daemon and
//! the operator verbs) and as a library a hub embeds, so that the hub and its maintenance run
//! in one process.
//!
//! # Embedding in your hub
//!
//! [`Daemon::start`] does everything `backup-daemon run` does around the hub's tables:
//! it opens the nine tables, runs automatic recovery, the compaction, backup and scrub
//! schedules, the admin API (token, SSE events, Prometheus metrics) and writes `daemon.json`
//! so that the CLI verbs (`backup-daemon status`, `compact`, `restore`...) reach it. The hub
//! writes through the typed handles of [`Daemon::stores`]; [`Daemon::shutdown`] stops it all.
//!
//! ```
//! use backup_daemon::{Daemon, DaemonConfig};
//! use store_owners::MailboxMessage;
//!
//! let dir = tempfile::tempdir()?;
//! let mut config = DaemonConfig {
//!     data_dir: dir.path().join("data"),
//!     ..DaemonConfig::default()
//! };
//! config.admin.listen = "127.0.0.1:0".parse()?; // any free port
//! config.tables.cache = backup_daemon::config::ByteSize(64 << 20); // 64 MiB for the nine
//!
//! let daemon = Daemon::start(&config)?;
//! let mailbox = &daemon.stores().agent_mailbox;
//! let seq = mailbox.enqueue(
//!     "agent-7",
//!     MailboxMessage {
//!         from: "agent-1".into(),
//!         body: "hello".into(),
//!         sent_at_ms: 1,
//!     },
//! )?;
//! assert_eq!(mailbox.poll("agent-7", 0, 10)?.len(), 1);
//! mailbox.ack("agent-7", seq)?;
//!
//! // The maintenance the daemon schedules can also be asked for in code.
//! let health = daemon.maintainer().health_metrics();
//! assert_eq!(health.tables.len(), 9);
//! println!("admin API on http://{}", daemon.admin_addr());
//!
//! daemon.shutdown(); // admin API, schedules, recovery stopped; tables closed
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! - [`embed`]: [`Daemon`], the running daemon as a value.
//! - [`config`]: the TOML config, its defaults and its errors (file, line, key).
//! - [`cli`]: the command line; `daemon` (the `run` verb: banner, signals), `client` (the
//!   verbs, through the running daemon's API or directly on the data dir), `render` (their
//!   human-readable output), `logging`, [`progress`] (the progress bars of a long verb, from
//!   the running operations; [`progress::draws`] decides whether to draw them).
//! - `protocol`: the one typed protocol of the verbs and the admin API; `ops`: `execute`,
//!   running an operation, behind both; `admin`: the admin HTTP API (bearer token, JSON
//!   errors, SSE, metrics); `metrics`: the OpenMetrics exposition (prometheus-client); `files`:
//!   `admin.token` and `daemon.json`; `remote`: opening the off-site backups of `[remote]`,
//!   and `recover --from remote`.
//! - `dashboard`: the operator's page at `/` (assets compiled in) and its samples.
//! - [`notify`]: the webhook notifier of `[notify]` (its own thread, retries with backoff).

mod admin;
pub mod cli;
mod client;
pub mod config;
mod daemon;
mod dashboard;
pub mod embed;
mod files;
mod logging;
mod metrics;
pub mod notify;
mod ops;
pub mod progress;
mod protocol;
mod remote;
mod render;

pub use config::DaemonConfig;
pub use embed::Daemon;
