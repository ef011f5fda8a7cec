//! What a new operator meets first (issue 12): `--json` on the config verbs, `HEAD /metrics`,
//! a busy admin port, and errors told once, in one line that names the path and the cause.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use support::{BIN, Daemon};

fn run(args: &[&str], data_dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run the binary")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// The stderr of a failed command: exit code 1 and exactly one line, which is returned.
fn one_error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    lines[0].to_string()
}

/// `text` holds `cause` exactly once.
fn once(text: &str, cause: &str) {
    assert_eq!(text.matches(cause).count(), 1, "`{cause}` once in: {text}");
}

#[test]
fn config_default_and_show_print_json_with_json() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("d");
    let default = json_of(
        &Command::new(BIN)
            .args(["config", "default", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(default["data_dir"], "data");
    assert_eq!(default["compaction"]["interval"], "6h");
    assert_eq!(default["compaction"]["threshold"], 0.1);
    assert_eq!(default["backup"]["keep"], 3);
    assert_eq!(default["admin"]["listen"], "127.0.0.1:7411");
    assert_eq!(default["log"]["format"], "text");
    // With no file and no flag, the effective config is the default one.
    let shown = json_of(
        &Command::new(BIN)
            .args(["config", "show", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(shown, default);
    // Flags are merged in.
    let shown = json_of(&run(&["config", "show", "--json"], &data));
    assert_eq!(shown["data_dir"], data.to_str().unwrap());
    assert_eq!(shown["compaction"], default["compaction"]);
    // Without --json, still TOML.
    let toml = run(&["config", "show"], &data);
    assert!(String::from_utf8_lossy(&toml.stdout).contains("[compaction]"));
}

#[test]
fn head_metrics_answers_200_without_a_body_and_without_a_token() {
    let dir = TempDir::new().unwrap();
    let daemon = Daemon::start(dir.path(), &dir.path().join("data"));
    let response = ureq::head(&daemon.url("/metrics"))
        .call()
        .expect("HEAD /metrics");
    assert_eq!(response.status(), 200);
    assert!(
        response
            .header("Content-Type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text; version=1.0.0")),
        "{:?}",
        response.header("Content-Type")
    );
    assert_eq!(response.into_string().unwrap(), "");
    let (status, body) = support::call("GET", &daemon.url("/metrics"), None, None);
    assert_eq!(status, 200);
    assert!(body.as_str().unwrap().contains("agentcom_store_"), "{body}");
    // Every other route still needs the token, HEAD or not.
    let (status, _) = support::call("GET", &daemon.url("/health"), None, None);
    assert_eq!(status, 401);
}

#[test]
fn a_busy_admin_port_fails_at_once_and_creates_nothing() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let started = Instant::now();
    let out = run(&["run", "--listen", &addr], &data);
    assert!(started.elapsed() < Duration::from_secs(10));
    let line = one_error_line(&out);
    assert!(line.starts_with("error: "), "{line}");
    assert!(line.contains(&addr), "{line}");
    assert!(line.contains("in use"), "{line}");
    // Neither the data dir, nor a table, nor a token was created.
    assert!(!data.exists(), "{line}");
}

#[test]
fn a_failing_run_tells_its_error_once_naming_the_path_and_the_cause_once() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let line = one_error_line(&run(&["run", "--listen", "127.0.0.1:0"], &file));
    assert!(line.starts_with("error: "), "{line}");
    assert!(line.contains(file.to_str().unwrap()), "{line}");
    once(&line, "(os error ");
    once(&line, "File exists");
    // The same for a verb, whose cause the store's error holds in its message and as its
    // source.
    let below = file.join("data");
    let line = one_error_line(&run(&["status"], &below));
    assert!(line.contains(below.to_str().unwrap()), "{line}");
    once(&line, "(os error ");
}

/// A data dir where creating an entry is refused: a directory without write permission, or,
/// for root (who may write anyway), a path in sysfs; `None` when neither refuses.
fn refused_data_dir(root: &Path) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let locked = root.join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
    let refused = |dir: &Path| {
        std::fs::create_dir(dir.join("probe"))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    };
    if refused(&locked) {
        return Some(locked.join("data"));
    }
    let _ = std::fs::remove_dir(locked.join("probe"));
    let sys = Path::new("/sys/kernel");
    (sys.is_dir() && refused(sys)).then(|| sys.join("backup-daemon-test-data"))
}

#[test]
fn a_permission_error_names_the_path_and_the_cause_once() {
    let dir = TempDir::new().unwrap();
    let Some(data) = refused_data_dir(dir.path()) else {
        eprintln!("no directory refuses entries here; nothing to check");
        return;
    };
    for args in [&["run", "--listen", "127.0.0.1:0"][..], &["status"]] {
        let line = one_error_line(&run(args, &data));
        assert!(line.contains(data.to_str().unwrap()), "{args:?}: {line}");
        let cause = line.rsplit(": ").next().unwrap();
        assert!(cause.contains("os error"), "{args:?}: {line}");
        once(&line, cause);
    }
}
