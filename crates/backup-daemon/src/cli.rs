//! The command line: `backup-daemon [run]` (the daemon) and the operator verbs, parsed with
//! clap and dispatched: `run` to `daemon::run`, the verbs to `client` (through the daemon or directly).
//!
//! # Exit codes
//!
//! 0 success; 1 the operation failed (or finished with failed tables); 2 bad usage or config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, DaemonConfig, LogFormat};
use crate::protocol::Op;
use crate::{client, daemon, logging, remote};

/// Storage maintenance for the agent-communication hub: compaction, backups, recovery.
#[derive(Debug, Parser)]
#[command(name = "backup-daemon", version, about)]
struct Cli {
    /// Config file (TOML); see `backup-daemon config default`.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data dir (overrides `data_dir` of the config file).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log format (overrides `[log] format`).
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// What to do; `run` when omitted.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon until SIGINT or SIGTERM (the default).
    Run {
        /// Admin API address (overrides `[admin] listen`); port 0 picks a free port.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Health of the nine tables: size, records, fragmentation, last compaction and backup.
    Status,
    /// The compactions, backups, verifications, restores and uploads running now, with the
    /// bytes each has moved.
    Operations,
    /// Compact every table over the threshold, or one table.
    Compact {
        /// Only this table.
        #[arg(long, value_name = "TABLE", value_parser = table_names())]
        table: Option<String>,
        /// Compact even under the fragmentation threshold.
        #[arg(long)]
        force: bool,
    },
    /// Back up every table, or one.
    Backup {
        /// Only this table.
        #[arg(long, value_name = "TABLE", value_parser = table_names())]
        table: Option<String>,
    },
    /// List the backups with their state (manifest and size checked).
    Backups {
        /// The off-site backups, in the bucket of `[remote]`.
        #[arg(long)]
        remote: bool,
    },
    /// Fully verify every backup (checksum, integrity, record count).
    Verify {
        /// The off-site backups: each is downloaded, decrypted, decompressed and checked.
        #[arg(long)]
        remote: bool,
    },
    /// Restore a table from a backup (the newest verified one unless `--backup` is given),
    /// replaying the change log after it: no acknowledged write is lost. With `--at TIME`,
    /// bring the table (or `--all`) back to its state at that instant instead.
    Restore {
        /// The table.
        #[arg(long, value_name = "TABLE", value_parser = table_names(), required_unless_present = "all", conflicts_with = "all")]
        table: Option<String>,
        /// All nine tables, to the one instant of `--at`.
        #[arg(long, requires = "at")]
        all: bool,
        /// The instant to restore to, RFC 3339 (`2026-12-02T10:15:00Z`); refused outside the
        /// range the backups and the change log keep, which the error names.
        #[arg(long, value_name = "TIME", conflicts_with = "backup")]
        at: Option<String>,
        /// The backup id (see `backups`).
        #[arg(long, value_name = "ID")]
        backup: Option<String>,
        /// Where the backup is: `local` (the backup dir) or `remote` (the bucket).
        #[arg(long, value_name = "WHERE", default_value = "local")]
        from: Source,
    },
    /// Upload now the backups that are not off-site yet (the daemon does it after each run).
    Upload,
    /// Rebuild all nine tables in an empty data dir (`--data-dir`) from the newest verified
    /// off-site backups: disaster recovery on a new machine. Needs no daemon.
    Recover {
        /// Where the backups are: only `remote`.
        #[arg(long, value_name = "WHERE")]
        from: Source,
        /// Rebuild the tables as they were at this instant, RFC 3339
        /// (`2026-12-02T10:15:00Z`): each from its newest off-site backup made before it and
        /// the change log shipped up to it. Default: as of the last shipment.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// The last compaction runs.
    History,
    /// Config file helpers.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

/// Where a restore takes its backup from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Source {
    /// The local backup dir.
    Local,
    /// The bucket of `[remote]`.
    Remote,
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Print the complete, commented default config file (with `--json`: the defaults as
    /// JSON).
    Default,
    /// Print the effective config (file, defaults and flags merged), as TOML or with
    /// `--json` as JSON.
    Show,
}

/// Parse the command line and do what it says.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match &cli.config {
        Some(path) => match DaemonConfig::load(path) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("error: config {e}");
                return ExitCode::from(2);
            }
        },
        None => DaemonConfig::default(),
    };
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(format) = cli.log_format {
        config.log.format = format;
    }
    let command = cli.command.unwrap_or(Command::Run { listen: None });
    let op = match command {
        Command::Run { listen } => {
            if let Some(listen) = listen {
                config.admin.listen = listen;
            }
            logging::init(config.log.format, "info");
            return match daemon::run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // Once: as a log line when the log is JSON lines, else as `error:`.
                    let line = logging::error_line(&e);
                    match config.log.format {
                        LogFormat::Json => tracing::error!(error = %line, "the daemon failed"),
                        LogFormat::Text => eprintln!("error: {line}"),
                    }
                    ExitCode::FAILURE
                }
            };
        }
        Command::Config {
            action: ConfigAction::Default,
        } => {
            if !cli.json {
                print!("{}", config::DEFAULT_FILE);
                return ExitCode::SUCCESS;
            }
            return print_config(&DaemonConfig::default(), true);
        }
        Command::Config {
            action: ConfigAction::Show,
        } => return print_config(&config, cli.json),
        Command::Status => Op::Status,
        Command::Operations => Op::Operations,
        Command::Compact { table, force } => Op::Compact { table, force },
        Command::Backup { table } => Op::Backup { table },
        Command::Backups { remote: false } => Op::Backups { verify: false },
        Command::Backups { remote: true } => Op::RemoteBackups { verify: false },
        Command::Verify { remote: false } => Op::Backups { verify: true },
        Command::Verify { remote: true } => Op::RemoteBackups { verify: true },
        Command::Restore {
            table,
            at: Some(at),
            from,
            ..
        } => Op::RestoreAt {
            table,
            at,
            remote: from == Source::Remote,
        },
        Command::Restore {
            table: Some(table),
            backup,
            from: Source::Local,
            ..
        } => Op::Restore { table, backup },
        Command::Restore {
            table: Some(table),
            backup,
            from: Source::Remote,
            ..
        } => Op::RemoteRestore { table, backup },
        Command::Restore { table: None, .. } => {
            eprintln!("error: --all restores to a point in time only: give --at TIME");
            return ExitCode::from(2);
        }
        Command::Upload => Op::Upload,
        Command::Recover { from, at } => {
            if from != Source::Remote {
                eprintln!("error: recover takes its backups from the bucket: --from remote");
                return ExitCode::from(2);
            }
            let at = match at
                .as_deref()
                .map(crate::protocol::parse_instant)
                .transpose()
            {
                Ok(at) => at,
                Err(e) => {
                    eprintln!("error: --at: {}", e.message);
                    return ExitCode::from(2);
                }
            };
            logging::init(config.log.format, "warn");
            return remote::recover(&config, at, cli.json);
        }
        Command::History => Op::History,
    };
    logging::init(config.log.format, "warn");
    client::run_verb(&config, &op, cli.json)
}

/// Print `config` as TOML, or as JSON with `json`.
fn print_config(config: &DaemonConfig, json: bool) -> ExitCode {
    let text = if json {
        serde_json::to_string_pretty(config)
            .map(|text| text + "\n")
            .map_err(anyhow::Error::new)
    } else {
        toml::to_string(config).map_err(anyhow::Error::new)
    };
    match text {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", logging::error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The nine table names, the only values `--table` takes (a wrong one is bad usage, exit 2,
/// and `--help` lists them).
fn table_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(store_owners::TABLE_NAMES)
}
