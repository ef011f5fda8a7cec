//! A hub lost whole at a random moment: the daemon embedded in a hub process (this test's own
//! executable, started again as a child) backs up, uploads, then writes at a fixed rate and
//! prints each acknowledged write with its time; it is killed (SIGKILL) at a random moment,
//! its data dir deleted, and the real binary's `recover --from remote` rebuilds it from the
//! bucket. Every write acknowledged more than `sync_interval` plus one upload (the request
//! timeout) before the kill must be there, and what was recovered is a prefix of what was
//! acknowledged. The loss window measured (kill time minus the acknowledgement time of the
//! oldest write lost) is printed. Against a real `moto_server`.

mod support;

#[path = "../../compaction/tests/support/moto.rs"]
mod moto;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backup_daemon::{Daemon, DaemonConfig};
use moto::{ACCESS_KEY, Moto, SECRET_KEY};
use store_owners::{Stores, StoresOptions};
use support::{BIN, write_config};

const BUCKET: &str = "hub-ship";
const TABLE: &str = "message_history";
/// `[remote] sync_interval` of the test.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// `[remote] timeout`: the longest one upload may take before it is retried.
const UPLOAD: Duration = Duration::from_secs(2);
/// Time between two writes of the child.
const WRITE_EVERY: Duration = Duration::from_millis(10);
/// Set in the child: the config file it runs with.
const CHILD_CONFIG: &str = "SHIP_TEST_CHILD_CONFIG";
/// Set in the child: its data dir.
const CHILD_DATA: &str = "SHIP_TEST_CHILD_DATA";

const ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
];

fn unix_micros(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

fn key(i: u64) -> Vec<u8> {
    format!("w{i:010}").into_bytes()
}

/// The hub: the daemon embedded, one backup uploaded, then a write every [`WRITE_EVERY`]
/// until it is killed, each acknowledgement printed as `ack <i> <unix micros>`.
fn run_child(config: &Path, data: &Path) {
    let mut config = DaemonConfig::load(config).expect("the child's config");
    config.data_dir = data.to_path_buf();
    let daemon = Daemon::start(&config).expect("the daemon starts");
    let run = daemon
        .maintainer()
        .backup_all(Default::default())
        .expect("a backup run");
    assert!(run.failures.is_empty(), "{:?}", run.failures);
    let pass = daemon.offsite().expect("[remote]").upload_pending();
    assert!(pass.failures.is_empty(), "{:?}", pass.failures);
    let mut out = std::io::stdout().lock();
    // On a line of its own: the test harness has just printed the test's name.
    writeln!(out, "\nready").unwrap();
    out.flush().unwrap();
    let owner = daemon.stores().owner(TABLE).expect("the table");
    for i in 0u64.. {
        owner
            .write(move |b| b.put(&key(i), format!("value {i}").as_bytes()))
            .expect("an acknowledged write");
        writeln!(out, "ack {i} {}", unix_micros(SystemTime::now())).unwrap();
        out.flush().unwrap();
        std::thread::sleep(WRITE_EVERY);
    }
}

/// What the child printed: whether it got ready, and its acknowledgements in order.
fn read_child(stdout: std::process::ChildStdout, ready: std::sync::mpsc::Sender<()>) -> Vec<u64> {
    let mut acks = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let mut words = line.split(' ');
        match (words.next(), words.next(), words.next()) {
            (Some("ready"), None, None) => {
                let _ = ready.send(());
            }
            (Some("ack"), Some(i), Some(at)) => {
                let (i, at): (u64, u64) = (i.parse().unwrap(), at.parse().unwrap());
                assert_eq!(i, acks.len() as u64);
                acks.push(at);
            }
            _ => {}
        }
    }
    acks
}

/// The keys of [`TABLE`] in `data`.
fn recovered_writes(data: &Path) -> BTreeSet<u64> {
    let stores = Stores::open(data, StoresOptions::default()).unwrap();
    let keys = stores
        .owner(TABLE)
        .unwrap()
        .scan(store_core::KeyRange::all(), usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| {
            let text = String::from_utf8(r.key).unwrap();
            text.strip_prefix('w').unwrap().parse().unwrap()
        })
        .collect();
    stores.close();
    keys
}

#[test]
fn a_hub_killed_at_a_random_moment_loses_at_most_one_sync_interval_and_one_upload() {
    if let (Some(config), Some(data)) =
        (std::env::var_os(CHILD_CONFIG), std::env::var_os(CHILD_DATA))
    {
        run_child(Path::new(&config), Path::new(&data));
        return;
    }
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = write_config(
        root.path(),
        &format!(
            "[remote]\nurl = \"s3://{BUCKET}/hub\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
             allow_http = true\ntimeout = \"{}s\"\nsync_interval = \"{}ms\"\n",
            moto.endpoint,
            UPLOAD.as_secs(),
            SYNC_INTERVAL.as_millis()
        ),
    );
    let stderr_path = root.path().join("child.stderr");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_hub_killed_at_a_random_moment_loses_at_most_one_sync_interval_and_one_upload",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_CONFIG, &config)
        .env(CHILD_DATA, &data)
        .envs(ENV)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start the hub");
    let stdout = child.stdout.take().unwrap();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || read_child(stdout, ready_tx));
    let child_log = |path: &PathBuf| std::fs::read_to_string(path).unwrap_or_default();
    ready
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("the hub did not start: {}", child_log(&stderr_path)));
    // A random moment past the first few seconds of writes.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let run_for = SYNC_INTERVAL + UPLOAD + Duration::from_millis(1000 + u64::from(nanos % 4000));
    std::thread::sleep(run_for);
    let killed_at = unix_micros(SystemTime::now());
    child.kill().unwrap();
    child.wait().unwrap();
    let acks = reader.join().unwrap();
    assert!(!acks.is_empty(), "no write: {}", child_log(&stderr_path));

    // The machine is gone.
    std::fs::remove_dir_all(&data).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["recover", "--from", "remote"])
        .envs(ENV)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let recovered = recovered_writes(&data);

    // What came back is what was written first: no hole.
    let n = recovered.len() as u64;
    assert!(recovered.iter().copied().eq(0..n), "holes in {recovered:?}");
    // At most the one write in flight at the kill was never acknowledged.
    assert!(
        n <= acks.len() as u64 + 1,
        "{n} of {} acknowledged",
        acks.len()
    );
    let bound = (SYNC_INTERVAL + UPLOAD).as_micros() as u64;
    let must_have = acks.iter().filter(|&&at| at + bound < killed_at).count() as u64;
    assert!(must_have > 0, "the kill came too early to check anything");
    let loss_window_ms = acks
        .get(n as usize)
        .map_or(0.0, |&at| (killed_at - at) as f64 / 1000.0);
    println!(
        "acknowledged {}, recovered {n}, required {must_have}: loss window {loss_window_ms:.0} ms (killed after {} ms of writes)",
        acks.len(),
        run_for.as_millis()
    );
    assert!(
        n >= must_have,
        "lost writes acknowledged more than {} ms before the kill: recovered {n}, needed {must_have}; {}",
        bound / 1000,
        String::from_utf8_lossy(&out.stdout)
    );
}
