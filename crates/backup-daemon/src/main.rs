//! The `backup-daemon` binary: the daemon (`run`, the default) and the operator verbs. All of
//! it is the library's (`backup_daemon::cli`); a hub embeds the same daemon through
//! `backup_daemon::Daemon`.

fn main() -> std::process::ExitCode {
    backup_daemon::cli::main()
}
