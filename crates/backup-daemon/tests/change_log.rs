//! The change log as an operator meets it: on by default; `restore` loses none of the writes
//! acknowledged after the backup; `restore --at TIME` brings one table or all nine back to an
//! instant; an instant outside what is kept is refused, naming the range; `status` shows the
//! logs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

mod support;

use backup_daemon::config::ByteSize;
use backup_daemon::{Daemon, DaemonConfig};
use store_core::KeyRange;
use support::{cli, cli_json, submit_tasks};

fn config(data_dir: &Path) -> DaemonConfig {
    let mut config = DaemonConfig {
        data_dir: data_dir.to_path_buf(),
        ..DaemonConfig::default()
    };
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.tables.cache = ByteSize(36 << 20);
    config
}

fn contents(daemon: &Daemon, table: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    daemon
        .maintainer()
        .stores()
        .owner(table)
        .unwrap()
        .scan(KeyRange::all(), usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

#[test]
fn restores_lose_no_acknowledged_write_and_go_back_to_any_instant_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let daemon = Daemon::start(&config(&data)).unwrap();
    let before_backups = SystemTime::now();
    std::thread::sleep(Duration::from_millis(5));
    let backed_up = cli_json(&data, &["backup"]);
    assert_eq!(backed_up["backups"].as_array().unwrap().len(), 9);

    submit_tasks(&daemon, 0..30);
    let at_30 = contents(&daemon, "task_queue");
    let instant = SystemTime::now();
    submit_tasks(&daemon, 30..50);
    let at_50 = contents(&daemon, "task_queue");

    // A plain restore replays the log after the backup: nothing acknowledged is lost.
    let report = cli_json(&data, &["restore", "--table", "task_queue"]);
    assert_eq!(report["outcome"], "restored");
    assert!(report["log_replayed"].as_u64().unwrap() >= 50, "{report}");
    assert_eq!(contents(&daemon, "task_queue"), at_50);

    // Back to the instant between the two bursts.
    let reports = cli_json(
        &data,
        &[
            "restore",
            "--table",
            "task_queue",
            "--at",
            &rfc3339(instant),
        ],
    );
    assert_eq!(reports[0]["outcome"], "restored");
    assert_eq!(contents(&daemon, "task_queue"), at_30);

    // All nine to one instant (the later one brings the 50 back: the restore above was
    // logged as writes after it).
    let now = SystemTime::now();
    let all = cli_json(&data, &["restore", "--all", "--at", &rfc3339(now)]);
    assert_eq!(all.as_array().unwrap().len(), 9);
    assert_eq!(contents(&daemon, "task_queue"), at_30);

    // Before the oldest backup: refused, naming the range, nothing touched.
    let out = cli(
        &data,
        &["restore", "--all", "--at", &rfc3339(before_backups)],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("restorable from"), "{stderr}");
    let out = cli(
        &data,
        &["restore", "--table", "task_queue", "--at", "yesterday"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
    assert_eq!(contents(&daemon, "task_queue"), at_30);

    let status = cli_json(&data, &["status"]);
    for table in status["tables"].as_array().unwrap() {
        let log = &table["change_log"];
        assert!(log["head"].is_u64(), "{table}");
        assert!(log["unrecovered"].is_null());
    }
    let text = String::from_utf8_lossy(&cli(&data, &["status"]).stdout).to_string();
    assert!(text.contains("change logs:"), "{text}");
    daemon.shutdown();
}
