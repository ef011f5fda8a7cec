//! The operations kit in `deploy/` against the real tools and the real daemon: the alert rules
//! pass `promtool check rules` and their unit tests (`promtool test rules`, one test firing
//! each alert), the systemd unit passes `systemd-analyze verify`, every metric the rules and
//! the Grafana dashboard name is exported by a running daemon, and the probes answer without a
//! token. A test whose tool is not installed says so and passes; `.ci/run` installs them, so
//! CI always runs them.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{BIN, Daemon, call};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Whether `tool` can be run; if not, the reason is printed for the test log.
fn installed(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        eprintln!("skipped: `{tool}` is not installed (.ci/run installs it)");
    }
    found
}

fn run(command: &mut Command) {
    let out = command.output().expect("run the tool");
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    if !installed("promtool") {
        return;
    }
    let dir = deploy_dir().join("prometheus");
    run(Command::new("promtool")
        .args(["check", "rules", "alerts.yml"])
        .current_dir(&dir));
    run(Command::new("promtool")
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(&dir));
    // Every alert has a unit test that fires it.
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("alerts_test.yml")).unwrap();
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        let fired = tests
            .split("alertname: ")
            .skip(1)
            .any(|t| t.starts_with(alert) && t.contains("exp_labels"));
        assert!(fired, "no promtool test fires {alert}");
    }
}

#[test]
fn systemd_unit_is_hardened_and_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(deploy_dir().join("backup-daemon.service")).unwrap();
    for setting in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/backup-daemon",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(unit.contains(setting), "the unit lacks {setting:?}");
    }
    // The config it ships keeps the data dir where the unit lets the daemon write.
    let config_path = deploy_dir().join("daemon.toml");
    let text = std::fs::read_to_string(&config_path).unwrap();
    let config = backup_daemon::DaemonConfig::parse(&config_path, &text).unwrap();
    assert!(config.data_dir.starts_with("/var/lib/backup-daemon"));
    assert!(config.backup_dir().starts_with("/var/lib/backup-daemon"));
    if !installed("systemd-analyze") {
        return;
    }
    // verify checks that ExecStart's binary exists: point it at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("backup-daemon.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/backup-daemon", BIN)).unwrap();
    run(Command::new("systemd-analyze").arg("verify").arg(&copy));
}

/// `agentcom_store_*` names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("agentcom_store_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if end > "agentcom_store_".len() {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// The series names an OpenMetrics exposition offers a query, read from its `# TYPE` lines
/// (so that a family with no sample yet counts): a gauge's own name, a counter's with
/// `_total`, a histogram's `_bucket`, `_count` and `_sum`.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(described) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = described.split_once(' ').expect("# TYPE <name> <type>");
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_count", "_sum"],
            "gauge" => &[""],
            other => panic!("a metric type the daemon does not export: {other}"),
        };
        names.extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
    }
    names
}

#[test]
fn every_metric_of_the_rules_and_the_dashboard_is_exported_by_a_running_daemon() {
    let root = tempfile::tempdir().unwrap();
    // With [remote] (a bucket nobody needs to answer: nothing is uploaded) and [notify] (a
    // webhook never called: nothing fails), so that their families are exported too.
    let remote = "[remote]\nurl = \"s3://bucket/hub\"\nendpoint = \"http://127.0.0.1:9\"\n\
                  allow_http = true\n[notify]\nwebhook = \"http://127.0.0.1:9/hook\"\n";
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let daemon = Daemon::start_with(root.path(), &root.path().join("data"), remote, &env);
    let (status, body) = call("GET", &daemon.url("/metrics"), None, None);
    assert_eq!(status, 200);
    let exposition = body.as_str().expect("metrics are text").to_string();
    let exported = exported_names(&exposition);
    let dir = deploy_dir();
    for file in ["prometheus/alerts.yml", "grafana/backup-daemon.json"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let used = metric_names(&text);
        assert!(!used.is_empty(), "{file} names no metric");
        let missing: Vec<_> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics the daemon does not export: {missing:?}"
        );
    }
    // The dashboard is JSON Grafana can import.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("grafana/backup-daemon.json")).unwrap(),
    )
    .unwrap();
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() > 5));
}

#[test]
fn livez_and_readyz_answer_without_a_token_once_the_tables_serve() {
    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(root.path(), &root.path().join("data"));
    let (status, body) = call("GET", &daemon.url("/livez"), None, None);
    assert_eq!((status, body["status"].as_str()), (200, Some("live")));
    // The banner (printed once `Daemon::start` returned) came before this request.
    let (status, body) = call("GET", &daemon.url("/readyz"), None, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["tables_not_serving"], serde_json::json!([]));
    // They say nothing of the data, and the rest still needs the token.
    let (status, _) = call("GET", &daemon.url("/health"), None, None);
    assert_eq!(status, 401);
}
