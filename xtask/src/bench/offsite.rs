//! Section 5, off-site backups, against a `moto_server` (S3-compatible, Python) started on a
//! free port of 127.0.0.1 for the section: the upload of one table's backup (zstd level 3,
//! streamed in parts, manifest last) against a plain HTTP PUT of the same backup file to the
//! same server; the compression ratio on hub-like records (JSON messages between agents); the
//! latency of an open-loop client on the table during the upload against a window after it;
//! and the time `recover_data_dir` takes to rebuild nine tables from the bucket.
//!
//! The server is the floor of every figure: moto keeps objects in Python memory, so the plain
//! PUT row says what the server itself takes.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use compaction::remote::{Credentials, Offsite, recover_data_dir};
use compaction::{BackupConfig, BackupOptions, Maintainer, MaintenanceConfig, RemoteConfig};
use serde::Serialize;
use store_owners::{OwnerHandle, TABLE_NAMES};

use super::Profile;
use super::stall::{CAUGHT_UP, MAX_WARMUP, N_CLIENT_WORKERS, busy_then_baseline, client_op};
use crate::loadgen::{LatencyStats, bench_key};

/// The table uploaded.
const TABLE: &str = "message_history";
/// The bucket.
pub(crate) const BUCKET: &str = "bench-offsite";

/// The section's figures.
#[derive(Debug, Clone, Serialize)]
pub struct OffsiteResult {
    /// Records in the uploaded table.
    pub n_records: u64,
    /// Size of its backup file.
    pub backup_bytes: u64,
    /// Size of the object in the bucket.
    pub object_bytes: u64,
    /// backup bytes / object bytes.
    pub compression_ratio: f64,
    /// Wall time of the upload (object and manifest).
    pub upload_s: f64,
    /// Backup-file bytes per second of upload.
    pub upload_mb_per_s: f64,
    /// Wall time of a plain PUT of the backup file.
    pub plain_put_s: f64,
    /// Bytes per second of that PUT.
    pub plain_put_mb_per_s: f64,
    /// Client latency during the upload (and settling).
    pub during: LatencyStats,
    /// Client latency over a window of the same length after it.
    pub baseline: LatencyStats,
    /// Records per table of the recovery.
    pub recover_records_per_table: u64,
    /// Bytes of the nine objects recovered.
    pub recover_object_bytes: u64,
    /// Wall time of `recover_data_dir` for the nine tables.
    pub recover_s: f64,
}

/// A `moto_server` child, killed on drop.
pub(crate) struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; the body is streamed from `body`. Returns the
/// status code. (moto takes any `Authorization` as the owner's unless told to check.)
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<(&mut dyn Read, u64)>,
) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    let length = body.as_ref().map_or(0, |(_, n)| *n);
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {length}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=AKIABENCH/20260101/us-east-1/s3/aws4_request, \
         SignedHeaders=host, Signature=00\r\nConnection: close\r\n\r\n"
    )?;
    if let Some((reader, _)) = body {
        std::io::copy(reader, &mut stream)?;
    }
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status in the answer")?;
    Ok(status)
}

/// Start `moto_server` on a free port, with [`BUCKET`] created.
pub(crate) fn start_moto() -> anyhow::Result<Moto> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting moto_server (pip install 'moto[server]')")?;
    let moto = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(port, "GET", "/moto-api/", None).ok() != Some(200) {
        if Instant::now() > deadline {
            bail!("moto_server did not answer on port {port}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if http(port, "PUT", &format!("/{BUCKET}"), None)? != 200 {
        bail!("cannot create bucket {BUCKET}");
    }
    Ok(moto)
}

/// A record like the hub's message history: a JSON message between two agents, its body
/// words from a small vocabulary.
fn hub_record(i: u64) -> Vec<u8> {
    const WORDS: [&str; 32] = [
        "task", "done", "review", "please", "the", "build", "failed", "on", "branch", "main",
        "merged", "tests", "pass", "agent", "thread", "reply", "queue", "retry", "in", "minutes",
        "lock", "released", "config", "updated", "ok", "see", "log", "line", "error", "fixed",
        "deploy", "next",
    ];
    let mut state = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut body = String::new();
    for _ in 0..12 + i % 20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        body.push_str(WORDS[(state % 32) as usize]);
        body.push(' ');
    }
    format!(
        "{{\"from\":\"agent-{}\",\"to\":\"agent-{}\",\"thread\":{},\"at\":{},\"kind\":\"message\",\"body\":\"{}\"}}",
        state % 40,
        (state >> 8) % 40,
        i / 7,
        1_764_000_000_000u64 + i * 350,
        body.trim_end()
    )
    .into_bytes()
}

fn fill(owner: &OwnerHandle, n: u64) -> anyhow::Result<()> {
    let mut start = 0;
    while start < n {
        let end = (start + crate::load::BATCH).min(n);
        owner.write(move |batch| {
            for i in start..end {
                batch.put(&bench_key(i), &hub_record(i))?;
            }
            Ok(())
        })?;
        start = end;
    }
    Ok(())
}

fn remote_config(moto: &Moto) -> RemoteConfig {
    RemoteConfig {
        url: format!("s3://{BUCKET}/bench"),
        endpoint: format!("http://127.0.0.1:{}", moto.port),
        region: "us-east-1".into(),
        allow_http: true,
        ..RemoteConfig::default()
    }
}

pub(super) fn credentials() -> Credentials {
    Credentials::Static {
        access_key_id: "AKIABENCH".into(),
        secret_access_key: "bench".into(),
    }
}

/// Run the section.
pub fn run(profile: &Profile, scratch: &Path) -> anyhow::Result<OffsiteResult> {
    let moto = start_moto()?;
    let data_dir = scratch.join("offsite");
    let stores = Arc::new(crate::load::open_stores(&data_dir)?);
    let n = profile.offsite_records;
    let owner = stores.owner(TABLE).expect("one of the nine tables").clone();
    fill(&owner, n)?;
    // The other eight tables get the records of the recovery row.
    let per_table = profile.offsite_recover_records;
    for table in TABLE_NAMES.iter().filter(|t| **t != TABLE) {
        fill(stores.owner(table).expect("a table"), per_table)?;
    }
    let config = MaintenanceConfig {
        backup: BackupConfig {
            dir: data_dir.join("backups"),
            ..BackupConfig::default()
        },
        ..MaintenanceConfig::default()
    };
    let maintainer = Arc::new(Maintainer::new(stores.clone(), config));
    let run = maintainer.backup_all(BackupOptions {
        wait: true,
        ..BackupOptions::default()
    })?;
    if let Some(failure) = run.failures.first() {
        bail!("the backup of {} failed: {}", failure.table, failure.error);
    }
    let backup = run
        .backups
        .iter()
        .find(|b| b.table == TABLE)
        .context("no backup of the table")?
        .clone();

    // A plain PUT of the same file to the same server.
    let plain_put = {
        let mut file = std::fs::File::open(&backup.path)?;
        let started = Instant::now();
        let status = http(
            moto.port,
            "PUT",
            &format!("/{BUCKET}/plain/{}.redb", backup.id),
            Some((&mut file, backup.bytes)),
        )?;
        if status != 200 {
            bail!("plain PUT answered {status}");
        }
        started.elapsed()
    };

    // The upload pass (every table) while the client runs on the big table; the upload of
    // the big table is timed by the pass itself.
    let offsite = Offsite::open_with(maintainer.clone(), &remote_config(&moto), &credentials())?;
    let op = |i: u64| client_op(&owner, n, i);
    let ((windows, pass), samples) =
        crate::loadgen::open_loop(profile.rate, N_CLIENT_WORKERS, &op, |probe| {
            probe.warm_up(profile.warmup, CAUGHT_UP, MAX_WARMUP);
            busy_then_baseline(probe.start, None, || offsite.upload_pending())
        });
    if let Some(failure) = pass.failures.first() {
        bail!("the upload of {} failed: {}", failure.table, failure.error);
    }
    let upload = pass
        .uploads
        .iter()
        .find(|u| u.table == TABLE)
        .context("the table was not uploaded")?
        .clone();
    let recover_object_bytes = pass.uploads.iter().map(|u| u.object_bytes).sum();
    drop(offsite);
    drop(maintainer);
    drop(owner);
    drop(stores);

    let machine = scratch.join("offsite-new-machine");
    let started = Instant::now();
    let report = recover_data_dir(
        &remote_config(&moto),
        &credentials(),
        &machine.join("data"),
        MaintenanceConfig::default(),
    )?;
    let recover = started.elapsed();
    if let Some(failure) = report.failed.first() {
        bail!("recover of {} failed: {}", failure.table, failure.error);
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    let _ = std::fs::remove_dir_all(&machine);
    let upload_s = upload.duration.as_secs_f64();
    Ok(OffsiteResult {
        n_records: n,
        backup_bytes: backup.bytes,
        object_bytes: upload.object_bytes,
        compression_ratio: backup.bytes as f64 / upload.object_bytes as f64,
        upload_s,
        upload_mb_per_s: backup.bytes as f64 / 1e6 / upload_s,
        plain_put_s: plain_put.as_secs_f64(),
        plain_put_mb_per_s: backup.bytes as f64 / 1e6 / plain_put.as_secs_f64(),
        during: LatencyStats::of_window(&samples, windows.during.0, windows.during.1),
        baseline: LatencyStats::of_window(&samples, windows.baseline.0, windows.baseline.1),
        recover_records_per_table: per_table,
        recover_object_bytes,
        recover_s: recover.as_secs_f64(),
    })
}

/// The section of the report.
pub fn render(md: &mut String, result: Option<&OffsiteResult>, error: Option<&str>) {
    let _ = writeln!(md, "## 6. Off-site backups\n");
    let Some(r) = result else {
        let _ = writeln!(md, "Failed: {}\n", error.unwrap_or("unknown"));
        return;
    };
    let _ = writeln!(
        md,
        "`moto_server` (S3-compatible, in Python, objects in memory) on 127.0.0.1. `{TABLE}` holds {} \
         hub-like records (JSON messages between agents); its backup file is uploaded by \
         `Offsite::upload_pending` (zstd level 3, 8 MiB parts, manifest last) while the open-loop client \
         of section 1 runs on the table; the plain PUT sends the same file in one request to the same \
         server.\n",
        r.n_records
    );
    let _ = writeln!(
        md,
        "| | time (s) | MB/s of backup file | bytes sent (MB) |\n|---|---:|---:|---:|"
    );
    let _ = writeln!(
        md,
        "| upload (zstd, parts, manifest) | {:.2} | {:.0} | {:.1} |",
        r.upload_s,
        r.upload_mb_per_s,
        r.object_bytes as f64 / 1e6
    );
    let _ = writeln!(
        md,
        "| plain PUT of the file | {:.2} | {:.0} | {:.1} |\n",
        r.plain_put_s,
        r.plain_put_mb_per_s,
        r.backup_bytes as f64 / 1e6
    );
    let _ = writeln!(
        md,
        "Compression ratio on these records: {:.2} ({:.1} MB backup file → {:.1} MB object).\n",
        r.compression_ratio,
        r.backup_bytes as f64 / 1e6,
        r.object_bytes as f64 / 1e6
    );
    let _ = writeln!(
        md,
        "| client latency (ms) | p99 | p99.9 | max |\n|---|---:|---:|---:|"
    );
    for (name, s) in [
        ("during the upload (and settling)", &r.during),
        ("without (same length, after)", &r.baseline),
    ] {
        let _ = writeln!(
            md,
            "| {name} | {:.2} | {:.2} | {:.2} |",
            s.p99_us as f64 / 1e3,
            s.p999_us as f64 / 1e3,
            s.max_us as f64 / 1e3
        );
    }
    let _ = writeln!(
        md,
        "\nRecovery of a whole data dir from the bucket (`recover_data_dir`: nine downloads, each \
         decompressed, hashed, integrity-checked and counted, then swapped in): {:.2} s for {:.1} MB of \
         objects ({} records in `{TABLE}`, {} in each other table).\n",
        r.recover_s,
        r.recover_object_bytes as f64 / 1e6,
        r.n_records,
        r.recover_records_per_table
    );
}
