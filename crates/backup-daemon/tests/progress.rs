//! Progress of long operations, end to end: a paced backup through the real daemon, watched
//! through `GET /operations` from another thread while its `POST /backup` waits, is listed
//! with its bytes growing and then no longer; the route needs the token like every
//! operation; `status --json` carries the running operations; the CLI draws no bars into a
//! pipe (`progress::draws` decides, stderr not being a terminal here).

mod support;

use std::path::Path;
use std::thread;
use std::time::Duration;

use backup_daemon::progress::draws;
use serde_json::Value;
use store_owners::{Stores, StoresOptions};
use support::{Daemon, call, cli};

const TABLE: &str = "message_history";

/// `n` records of about 60 bytes in `table`, written before any daemon runs.
fn fill(data: &Path, n: usize) {
    let stores = Stores::open(data, StoresOptions::default()).unwrap();
    let owner = stores.owner(TABLE).unwrap();
    for start in (0..n).step_by(10_000) {
        owner
            .write(move |batch| {
                for i in start..(start + 10_000).min(n) {
                    batch.put(
                        format!("k{i:08}").as_bytes(),
                        format!("{i:08}-a-value-long-enough-to-weigh-something").as_bytes(),
                    )?;
                }
                Ok(())
            })
            .unwrap();
    }
}

fn operations(daemon: &Daemon) -> Vec<Value> {
    let (status, body) = daemon.call("GET", "/operations", None);
    assert_eq!(status, 200, "{body}");
    body.as_array().expect("a list").clone()
}

#[test]
fn a_paced_backup_is_listed_by_get_operations_while_it_runs_then_no_longer() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    fill(&data, 200_000);
    let daemon = Daemon::start_with(
        root.path(),
        &data,
        "[maintenance]\nio_rate = \"8MiB/s\"\n",
        &[],
    );
    assert!(operations(&daemon).is_empty());
    let (status, _) = call("GET", &daemon.url("/operations"), None, None);
    assert_eq!(status, 401, "no token, no operations");

    let (url, token) = (
        daemon.url("/backup?table=message_history"),
        daemon.token.clone(),
    );
    let backup = thread::spawn(move || call("POST", &url, Some(&token), None));
    let mut seen: Vec<Value> = Vec::new();
    let mut status_listed = false;
    while !backup.is_finished() {
        let running = operations(&daemon);
        seen.extend(running.into_iter().filter(|op| op["kind"] == "backup"));
        if !status_listed {
            let (_, health) = daemon.call("GET", "/health", None);
            status_listed = health["operations"]
                .as_array()
                .is_some_and(|ops| ops.iter().any(|op| op["table"] == TABLE));
        }
        thread::sleep(Duration::from_millis(50));
    }
    let (status, run) = backup.join().unwrap();
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["failures"], Value::Array(Vec::new()), "{run}");

    assert!(seen.len() >= 2, "the backup was seen running: {seen:?}");
    let done: Vec<u64> = seen
        .iter()
        .map(|op| op["bytes_done"].as_u64().unwrap())
        .collect();
    for (op, done) in seen.iter().zip(&done) {
        assert_eq!(op["table"], TABLE);
        assert_eq!(op["id"], seen[0]["id"], "one operation: {seen:?}");
        let total = op["bytes_total"].as_u64().unwrap();
        assert!(total > 0 && *done <= total, "{op}");
    }
    assert!(done.windows(2).all(|w| w[1] >= w[0]), "{done:?}");
    assert!(done.last() > done.first(), "bytes done grew: {done:?}");
    assert!(status_listed, "GET /health listed the running backup");
    assert!(
        operations(&daemon).is_empty(),
        "listed exactly while it runs"
    );
}

#[test]
fn the_cli_draws_bars_only_on_a_terminal_and_never_with_json() {
    assert!(draws(false, true));
    assert!(!draws(false, false), "not into a pipe or a file");
    assert!(!draws(true, true), "not with --json");
    assert!(!draws(true, false));

    // The real CLI, stderr a pipe, through the real daemon: the result, and no bar.
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    fill(&data, 20_000);
    let _daemon = Daemon::start(root.path(), &data);
    let out = cli(&data, &["backup", "--table", TABLE]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains('\r') && !stderr.contains("eta"),
        "{stderr:?}"
    );
    let out = cli(&data, &["operations"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no operation running\n"
    );
}
