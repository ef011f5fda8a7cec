//! A real S3-compatible server for the off-site tests: `moto_server` (PyPI `moto[server]`),
//! started on a free port of 127.0.0.1 by the test itself and killed when the handle drops.
//! Shared by `compaction/tests/remote.rs` and `backup-daemon/tests/remote.rs`.

// Each test file uses its own subset of these.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Access key the tests use (moto accepts any unless authentication is turned on).
pub const ACCESS_KEY: &str = "AKIAOFFSITETEST00001";
/// Secret key the tests use.
pub const SECRET_KEY: &str = "offsite-test-secret";

/// An `Authorization` header moto takes as the owner's (it checks no signature unless
/// authentication is turned on); anonymous requests may not read objects.
const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=AKIAOFFSITETEST00001/20261202/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";

/// A running `moto_server`.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Start a server that accepts any credentials.
    pub fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// Start a server with extra environment variables (`INITIAL_NO_AUTH_ACTION_COUNT=0`
    /// makes it check credentials).
    pub fn start_with(env: &[(&str, &str)]) -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server runs (pip install 'moto[server]')");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while ureq::get(&format!("{}/moto-api/", moto.endpoint))
            .call()
            .is_err()
        {
            assert!(Instant::now() < deadline, "moto_server did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// Create `bucket` (an unsigned request: moto takes it).
    pub fn create_bucket(&self, bucket: &str) {
        ureq::put(&format!("{}/{bucket}", self.endpoint))
            .call()
            .expect("create bucket");
    }

    /// The raw bytes of `key` in `bucket`.
    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut ureq::get(&format!("{}/{bucket}/{key}", self.endpoint))
                .set("Authorization", AUTHORIZATION)
                .call()
                .expect("get object")
                .into_reader(),
            &mut bytes,
        )
        .expect("read object");
        bytes
    }

    /// Overwrite `key` in `bucket` with `bytes`.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        ureq::put(&format!("{}/{bucket}/{key}", self.endpoint))
            .set("Authorization", AUTHORIZATION)
            .send_bytes(bytes)
            .expect("put object");
    }

    /// Delete `key` in `bucket`.
    pub fn delete(&self, bucket: &str, key: &str) {
        ureq::delete(&format!("{}/{bucket}/{key}", self.endpoint))
            .set("Authorization", AUTHORIZATION)
            .call()
            .expect("delete object");
    }

    /// Every key in `bucket`.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let text = ureq::get(&format!("{}/{bucket}?list-type=2", self.endpoint))
            .call()
            .expect("list")
            .into_string()
            .expect("listing text");
        text.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect()
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub fn uploads_in_progress(&self, bucket: &str) -> usize {
        let text = ureq::get(&format!("{}/{bucket}?uploads", self.endpoint))
            .call()
            .expect("list multipart uploads")
            .into_string()
            .expect("listing text");
        text.matches("<UploadId>").count()
    }

    /// Freeze the server (SIGSTOP): connections are accepted, nothing is answered.
    pub fn freeze(&self) {
        signal(self.child.id(), "-STOP");
    }

    /// Let a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        signal(self.child.id(), "-CONT");
    }
}

fn signal(pid: u32, which: &str) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {which} {pid}");
}

impl Drop for Moto {
    fn drop(&mut self) {
        signal(self.child.id(), "-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
