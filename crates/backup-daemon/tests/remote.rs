//! Off-site backups end to end, as an operator runs them: the daemon with a `[remote]`
//! section and credentials in its environment uploads after a backup; the admin API, the
//! metrics and `/health` show it; `recover --from remote` rebuilds a data dir on a "new
//! machine" from the bucket alone; `restore --from remote` works without a daemon; a bad
//! `[remote]` value is refused with file, line and key. Against a real `moto_server`.

mod support;

#[path = "../../compaction/tests/support/moto.rs"]
mod moto;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use moto::{ACCESS_KEY, Moto, SECRET_KEY};
use serde_json::Value;
use store_owners::{Stores, StoresOptions, TABLE_NAMES};
use support::{BIN, Daemon, write_config};

const BUCKET: &str = "hub-offsite";

const ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
];

fn remote_section(moto: &Moto) -> String {
    format!(
        "[remote]\nurl = \"s3://{BUCKET}/hub\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
         allow_http = true\ntimeout = \"5s\"\n",
        moto.endpoint
    )
}

/// Records in every table, each its own number of them.
fn fill(data: &Path) {
    let stores = Stores::open(data, StoresOptions::default()).unwrap();
    for (n, table) in TABLE_NAMES.iter().enumerate() {
        let n = if *table == "agentcom_config" { 4 } else { n };
        stores
            .owner(table)
            .unwrap()
            .write(move |b| {
                for i in 0..20 + 5 * n {
                    b.put(
                        format!("k{i:04}").as_bytes(),
                        format!("{table} {i}").as_bytes(),
                    )?;
                }
                Ok(())
            })
            .unwrap();
    }
    stores.close();
}

/// Every record of every table.
type Records = BTreeMap<&'static str, Vec<(Vec<u8>, Vec<u8>)>>;

fn records(data: &Path) -> Records {
    let stores = Stores::open(data, StoresOptions::default()).unwrap();
    let all = TABLE_NAMES
        .iter()
        .map(|t| {
            let rows = stores
                .owner(t)
                .unwrap()
                .scan(store_core::KeyRange::all(), usize::MAX)
                .unwrap()
                .into_iter()
                .map(|r| (r.key, r.value))
                .collect();
            (*t, rows)
        })
        .collect();
    stores.close();
    all
}

fn cli(config: &Path, data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .envs(ENV)
        .output()
        .expect("run the binary")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

#[test]
fn the_daemon_uploads_after_a_backup_and_recover_rebuilds_the_data_dir() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    fill(&data);
    let before = records(&data);
    assert_eq!(before["agentcom_config"].len(), 40);
    assert!(before.values().all(|rows| !rows.is_empty()));

    let mut daemon = Daemon::start_with(root.path(), &data, &remote_section(&moto), &ENV);
    let (status, run) = daemon.call("POST", "/backup", None);
    assert_eq!(status, 200, "{run}");
    // The upload thread runs after the backup run: wait until the bucket has all nine.
    let deadline = Instant::now() + Duration::from_secs(120);
    let listed = loop {
        let (status, listed) = daemon.call("GET", "/remote/backups", None);
        assert_eq!(status, 200, "{listed}");
        if listed.as_array().unwrap().len() == TABLE_NAMES.len() {
            break listed;
        }
        assert!(
            Instant::now() < deadline,
            "no upload: {}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for (info, backup) in listed
        .as_array()
        .unwrap()
        .iter()
        .zip(run["backups"].as_array().unwrap())
    {
        assert_eq!(info["id"], backup["id"]);
        assert_eq!(info["state"], "unchecked");
        assert_eq!(info["manifest"]["compression"], "zstd");
    }
    let (status, verified) = daemon.call("GET", "/remote/backups?verify=true", None);
    assert_eq!(status, 200);
    assert!(
        verified
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["state"] == "verified"),
        "{verified}"
    );
    let (_, health) = daemon.call("GET", "/health", None);
    assert_eq!(health["remote"]["uploads"], TABLE_NAMES.len());
    assert_eq!(health["remote"]["last_error"], Value::Null);
    let metrics = ureq::get(&daemon.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("agentcom_store_last_upload_success{table=\"agentcom_config\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("agentcom_store_remote_backups{table=\"task_queue\"} 1"));
    assert!(metrics.contains("agentcom_store_uploads_total 9"));
    // A table back from the bucket through the API; an unknown backup is a 404.
    let (status, restored) = daemon.call("POST", "/remote/restore/task_queue", None);
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["outcome"], "restored");
    let body = serde_json::json!({ "backup": "20200101T000000.000Z" });
    let (status, refused) = daemon.call("POST", "/remote/restore/task_queue", Some(body));
    assert_eq!(status, 404, "{refused}");
    daemon.terminate();

    // A new machine: only the config (and the credentials in the environment).
    let config = write_config(root.path(), &remote_section(&moto));
    let new_data = root.path().join("new-machine").join("data");
    let report = json_of(&cli(
        &config,
        &new_data,
        &["recover", "--from", "remote", "--json"],
    ));
    assert_eq!(
        report["restored"].as_array().unwrap().len(),
        TABLE_NAMES.len()
    );
    assert_eq!(report["failed"].as_array().unwrap().len(), 0);
    assert_eq!(records(&new_data), before);
    // Not into a data dir that holds anything.
    let again = cli(&config, &new_data, &["recover", "--from", "remote"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));

    // Without a daemon: a change, then the table back from the bucket.
    {
        let stores = Stores::open(&data, StoresOptions::default()).unwrap();
        stores
            .owner("agentcom_config")
            .unwrap()
            .write(|b| b.put(b"k0000", b"changed"))
            .unwrap();
        stores.close();
    }
    let restored = json_of(&cli(
        &config,
        &data,
        &[
            "restore",
            "--table",
            "agentcom_config",
            "--from",
            "remote",
            "--json",
        ],
    ));
    assert_eq!(restored["outcome"], "restored");
    assert_eq!(records(&data), before);
    let text = cli(&config, &data, &["backups", "--remote"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("agentcom_config"));
}

#[test]
fn a_remote_that_is_down_leaves_backups_alone_and_shows_in_health() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    fill(&data);
    // Nobody listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let section = format!(
        "[remote]\nurl = \"s3://{BUCKET}/hub\"\nendpoint = \"http://127.0.0.1:{port}\"\n\
         allow_http = true\ntimeout = \"1s\"\n"
    );
    let daemon = Daemon::start_with(root.path(), &data, &section, &ENV);
    let (status, run) = daemon.call("POST", "/backup", None);
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["failures"].as_array().unwrap().len(), 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    let health = loop {
        let (_, health) = daemon.call("GET", "/health", None);
        if health["remote"]["upload_failures"].as_u64() > Some(0) {
            break health;
        }
        assert!(
            Instant::now() < deadline,
            "no failure: {}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(health["remote"]["last_error"].is_string(), "{health}");
    // Local backups are all there and the tables serve.
    let (_, backups) = daemon.call("GET", "/backups?verify=true", None);
    assert_eq!(backups.as_array().unwrap().len(), TABLE_NAMES.len());
    assert!(
        backups
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["state"] == "verified")
    );
    let (status, _) = daemon.call("POST", "/compact?force=true", None);
    assert_eq!(status, 200);
}

#[test]
fn bad_remote_values_are_refused_with_file_line_and_key() {
    let root = tempfile::tempdir().unwrap();
    for (section, key, message) in [
        (
            "[remote]\nurl = \"http://bucket\"\n",
            "remote.url",
            "not an s3:// URL",
        ),
        (
            "[remote]\nurl = \"s3://bucket\"\ncompression_level = 40\n",
            "remote.compression_level",
            "between 1 and 19",
        ),
        (
            "[remote]\nurl = \"s3://bucket\"\nendpoint = \"http://127.0.0.1:9000\"\n",
            "remote.endpoint",
            "allow_http",
        ),
        (
            "[remote]\nurl = \"s3://bucket\"\ncompression = \"lz4\"\n",
            "remote.compression",
            "unknown variant",
        ),
        (
            "[remote]\nurl = \"s3://bucket\"\nencryption_recipients = \"/no/such/file\"\n",
            "remote.encryption_recipients",
            "cannot read",
        ),
        (
            "[remote]\nurl = \"s3://bucket\"\nsync_interval = \"10ms\"\n",
            "remote.sync_interval",
            "between 100ms and 1h",
        ),
        (
            "[remote]\nurl = \"s3://bucket\"\naccess_key = \"AKIA\"\n",
            "remote.access_key",
            "unknown field",
        ),
    ] {
        let config = write_config(root.path(), section);
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(["config", "show"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{section}: {stderr}");
        let text = std::fs::read_to_string(&config).unwrap();
        let line = text
            .lines()
            .position(|l| l.starts_with(key.trim_start_matches("remote.")))
            .map(|n| n + 1)
            .unwrap();
        assert!(
            stderr.contains(&format!("daemon.toml:{line}: key `{key}`")),
            "{section}: {stderr}"
        );
        assert!(stderr.contains(message), "{section}: {stderr}");
    }
}

/// No key in the environment: the verbs take them from the shared credentials file
/// (`AWS_SHARED_CREDENTIALS_FILE`, profile `AWS_PROFILE`), and without a daemon `backup`
/// uploads before it ends.
#[test]
fn credentials_come_from_the_shared_credentials_file_when_the_environment_has_none() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    fill(&data);
    let credentials = root.path().join("credentials");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = AKIAWRONGPROFILE\naws_secret_access_key = x\n\
             [offsite]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    )
    .unwrap();
    let config = write_config(root.path(), &remote_section(&moto));
    let verb = |args: &[&str]| {
        Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_PROFILE", "offsite")
            .output()
            .unwrap()
    };
    let backup = verb(&["backup"]);
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&backup.stderr).contains("upload of"),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    let listed = json_of(&verb(&["backups", "--remote", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), TABLE_NAMES.len());
}
