//! Log output through `tracing`: readable lines by default, JSON lines on request. Logs go to
//! stderr so that verbs can print their results (and `--json` output) alone on stdout. Errors
//! are told in one line, [`error_line`], each cause once.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Install the global subscriber at `default_level` (`info` for the daemon, `warn` for verbs);
/// `RUST_LOG` overrides it.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// `e` and its causes on one line, `context: cause: cause`, leaving out a cause whose text
/// the line already holds: many errors put their source in their own message
/// (`cannot use data dir D: {source}`) and report it as their source too, which `{:#}`
/// would print twice (`File exists (os error 17): File exists (os error 17)`).
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::error_line;

    /// An error whose message holds its source, and that reports it as its source too.
    #[derive(Debug)]
    struct Repeats(io::Error);

    impl std::fmt::Display for Repeats {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot use data dir /srv/data: {}", self.0)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn each_cause_is_told_once() {
        let os = || io::Error::from_raw_os_error(17);
        let e = anyhow::Error::new(Repeats(os())).context("opening the tables");
        let line = error_line(&e);
        assert_eq!(
            line,
            format!(
                "opening the tables: cannot use data dir /srv/data: {}",
                os()
            )
        );
        assert_eq!(line.matches("os error 17").count(), 1, "{line}");
        // A cause not already in the message is still told.
        let e = anyhow::Error::new(os()).context("creating data dir /srv/data");
        assert_eq!(
            error_line(&e),
            format!("creating data dir /srv/data: {}", os())
        );
    }
}
