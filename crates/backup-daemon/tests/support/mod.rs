//! Shared by the end-to-end tests: start the real daemon on a temporary data dir and a free
//! port, and make requests to its admin API.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_backup-daemon");

pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("daemon.toml");
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[compaction]\ninterval = \"1day\"\nthreshold = 0.0\n\
         [backup]\ninterval = \"1day\"\n{extra}"
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// A daemon child process; SIGTERMed (then killed) on drop.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub token: String,
    /// Where its stderr (the log) goes.
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(root: &Path, data_dir: &Path) -> Daemon {
        Daemon::start_with(root, data_dir, "", &[])
    }

    /// [`Daemon::start`] with `extra` config text and `env` variables.
    pub fn start_with(root: &Path, data_dir: &Path, extra: &str, env: &[(&str, &str)]) -> Daemon {
        let config = write_config(root, extra);
        let log = root.join("daemon.log");
        let stderr = std::fs::File::create(&log).expect("create the log file");
        let child = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(data_dir)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the daemon");
        let mut daemon = Daemon {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            token: String::new(),
            log,
        };
        // The banner is printed once daemon.json is written and the API listens.
        let stdout = daemon.child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = String::new();
        for line in lines.by_ref() {
            let line = line.expect("read the banner");
            banner.push_str(&line);
            banner.push('\n');
            if line.trim_start().starts_with("metrics:") {
                break;
            }
        }
        assert!(banner.contains("data dir:"), "banner: {banner}");
        assert!(banner.contains("backup dir:"), "banner: {banner}");
        assert!(banner.contains("next compaction:"), "banner: {banner}");
        assert!(banner.contains("next backup:"), "banner: {banner}");
        // Keep draining stdout so the daemon never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let info: Value = serde_json::from_slice(
            &std::fs::read(data_dir.join("daemon.json")).expect("daemon.json"),
        )
        .unwrap();
        daemon.addr = info["admin"].as_str().unwrap().parse().unwrap();
        assert!(
            banner.contains(&format!("http://{}", daemon.addr)),
            "banner: {banner}"
        );
        daemon.token = std::fs::read_to_string(data_dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        daemon
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A request with the right token; returns status and JSON body.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        call(method, &self.url(path), Some(&self.token), body)
    }

    /// What the daemon logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal_term(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The exit status, once the process has ended within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal_term();
        self.wait_exit(Duration::from_secs(30))
            .expect("the daemon did not stop after SIGTERM")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut request = ureq::request(method, url);
    if let Some(token) = token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    let result = match body {
        Some(body) => request.send_json(body),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Run the CLI binary with `args` on `data_dir`.
pub fn cli(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run the CLI")
}

/// Run the CLI binary with `args --json` on `data_dir`; it must succeed and print JSON.
pub fn cli_json(data_dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = cli(data_dir, &all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}"))
}

/// Submit tasks `doc-<i>` for every `i` of `range` to `task_queue` (through the daemon's own
/// stores, so each is an acknowledged durable write).
pub fn submit_tasks(daemon: &backup_daemon::Daemon, range: std::ops::Range<u64>) {
    for i in range {
        daemon
            .stores()
            .task_queue
            .submit(store_owners::NewTask {
                kind: "index".into(),
                payload: format!("doc-{i}").into_bytes(),
                max_retries: 3,
                submitted_at_ms: i,
            })
            .unwrap();
    }
}
