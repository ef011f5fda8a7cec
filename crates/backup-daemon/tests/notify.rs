//! `[notify]` webhooks against a real receiver on 127.0.0.1: failure and recovery events
//! arrive as JSON messages; a receiver that is down costs retries (counted), and one that
//! never answers holds up neither the job that raised the event nor the daemon's shutdown.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use serde_json::Value;
use support::Daemon;

/// How a test receiver answers.
#[derive(Clone, Copy)]
enum Answer {
    /// 200, after reading the request.
    Ok,
    /// Reads the request, then never answers (the connection is held open).
    Never,
}

/// A webhook receiver: every request's (path, JSON body) is sent on the channel.
fn receiver(answer: Answer) -> (SocketAddr, Receiver<(String, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = unbounded();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            match answer {
                Answer::Ok => {
                    let tx = tx.clone();
                    std::thread::spawn(move || serve(stream, &tx, true));
                }
                Answer::Never => {
                    serve(stream.try_clone().unwrap(), &tx, false);
                    held.push(stream);
                }
            }
        }
    });
    (addr, rx)
}

fn serve(stream: TcpStream, tx: &Sender<(String, Value)>, answer: bool) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let path = request_line.split_whitespace().nth(1).unwrap().to_string();
    let _ = tx.send((path, serde_json::from_slice(&body).unwrap()));
    if answer {
        let mut stream = stream;
        let _ =
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
}

/// Config text: extra keys of `[backup]` (the section `write_config` ends with), then
/// `[notify]` towards `addr`.
fn config(backup_keys: &str, addr: SocketAddr, attempts: u32) -> String {
    format!(
        "{backup_keys}\n[notify]\nwebhook = \"http://{addr}/hooks/agentcom\"\n\
         attempts = {attempts}\nbackoff = \"10ms\"\ntimeout = \"1h\"\n"
    )
}

/// A backup dir that cannot be created (its parent is a file): every backup fails.
fn broken_backup_dir(root: &Path) -> String {
    std::fs::write(root.join("a-file"), b"not a dir").unwrap();
    format!("dir = \"{}\"", root.join("a-file/backups").display())
}

fn next(messages: &Receiver<(String, Value)>) -> (String, Value) {
    messages
        .recv_timeout(Duration::from_secs(60))
        .expect("a webhook message")
}

#[test]
fn failures_and_recoveries_arrive_at_the_webhook_as_json() {
    let root = tempfile::tempdir().unwrap();
    let (addr, messages) = receiver(Answer::Ok);
    let extra = config(&broken_backup_dir(root.path()), addr, 3);
    let daemon = Daemon::start_with(root.path(), &root.path().join("data"), &extra, &[]);
    let (status, _) = daemon.call("POST", "/backup?table=task_queue", None);
    assert_ne!(status, 409);
    let (path, message) = next(&messages);
    assert_eq!(path, "/hooks/agentcom");
    assert_eq!(message["event"], "backup_failed", "{message}");
    assert_eq!(message["source"], "backup-daemon");
    assert_eq!(message["failures"][0]["table"], "task_queue", "{message}");
    let summary = message["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("backup failed: task_queue: "),
        "{summary}"
    );
    assert!(message["at"].is_string() && message["data_dir"].is_string());
    drop(daemon);

    // A restore: recovery_complete (the backup before it, a success, sends nothing).
    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(
        root.path(),
        &root.path().join("data"),
        &config("", addr, 3),
        &[],
    );
    assert_eq!(daemon.call("POST", "/backup?table=task_queue", None).0, 200);
    let (status, body) = daemon.call("POST", "/restore/task_queue", None);
    assert_eq!(status, 200, "{body}");
    let (_, message) = next(&messages);
    assert_eq!(message["event"], "recovery_complete", "{message}");
    assert_eq!(message["report"]["table"], "task_queue");
    assert!(
        messages.try_recv().is_err(),
        "only the failure and the recovery are sent"
    );
}

#[test]
fn a_lost_table_with_no_backup_is_notified_as_degraded() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut daemon = Daemon::start(root.path(), &data);
    assert!(daemon.terminate().success());
    std::fs::remove_file(data.join("task_queue.redb")).unwrap();
    let (addr, messages) = receiver(Answer::Ok);
    let _daemon = Daemon::start_with(root.path(), &data, &config("", addr, 3), &[]);
    let (_, message) = next(&messages);
    assert_eq!(message["event"], "degraded", "{message}");
    assert_eq!(message["report"]["table"], "task_queue");
    assert!(message["summary"].as_str().unwrap().contains("degraded"));
}

/// The value of an unlabelled metric.
fn metric(daemon: &Daemon, name: &str) -> f64 {
    let (_, body) = support::call("GET", &daemon.url("/metrics"), None, None);
    let text = body.as_str().unwrap().to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("agentcom_store_{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn a_receiver_that_is_down_costs_retries_and_a_counted_failure() {
    let root = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let extra = config(&broken_backup_dir(root.path()), addr, 3);
    let daemon = Daemon::start_with(root.path(), &root.path().join("data"), &extra, &[]);
    assert_eq!(metric(&daemon, "notify_failures_total"), 0.0);
    let (status, body) = daemon.call("POST", "/backup?table=task_queue", None);
    assert_ne!(status, 409, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&daemon, "notify_failures_total") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the notification was never given up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Three tries: two retries, then given up.
    assert_eq!(metric(&daemon, "notify_retries_total"), 2.0);
    assert_eq!(metric(&daemon, "notify_sent_total"), 0.0);
    assert!(daemon.log_text().contains("webhook: notification given up"));
}

#[test]
fn a_receiver_that_never_answers_blocks_neither_jobs_nor_the_shutdown() {
    let root = tempfile::tempdir().unwrap();
    let (addr, messages) = receiver(Answer::Never);
    let extra = config(&broken_backup_dir(root.path()), addr, 3);
    let mut daemon = Daemon::start_with(root.path(), &root.path().join("data"), &extra, &[]);
    assert_ne!(daemon.call("POST", "/backup?table=task_queue", None).0, 409);
    // The notifier is now waiting on the receiver, which holds the request unanswered.
    let (_, message) = next(&messages);
    assert_eq!(message["event"], "backup_failed");
    // Further jobs, and their failures, go on meanwhile.
    for _ in 0..2 {
        assert_ne!(
            daemon.call("POST", "/backup?table=agent_mailbox", None).0,
            409
        );
    }
    assert!(
        messages.try_recv().is_err(),
        "one request in flight at a time"
    );
    assert!(daemon.terminate().success());
}

#[test]
fn a_bad_notify_section_is_rejected_naming_the_key() {
    let file = Path::new("daemon.toml");
    let parse = |text: &str| backup_daemon::DaemonConfig::parse(file, text).map(|c| c.notify);
    let ok = parse("[notify]\nwebhook = \"http://127.0.0.1:9000/hook\"\n").unwrap();
    let notify = ok.expect("a [notify] section");
    assert_eq!(
        (notify.attempts, notify.timeout),
        (5, Duration::from_secs(10))
    );
    assert_eq!(parse("").unwrap(), None);
    for (text, line, key, says) in [
        (
            "[notify]\nwebhook = \"https://hooks.example/x\"\n",
            2,
            "notify.webhook",
            "https is not supported",
        ),
        (
            "[notify]\nwebhook = \"hooks.example\"\n",
            2,
            "notify.webhook",
            "not an http:// URL",
        ),
        (
            "[notify]\nwebhook = \"http:///x\"\n",
            2,
            "notify.webhook",
            "names no host",
        ),
        (
            "[notify]\nwebhook = \"http://h/\"\nattempts = 0\n",
            3,
            "notify.attempts",
            "at least 1",
        ),
        (
            "[notify]\nwebhook = \"http://h/\"\ntimeout = \"0s\"\n",
            3,
            "notify.timeout",
            "more than zero",
        ),
        (
            "[notify]\nurl = \"http://h/\"\n",
            2,
            "notify.url",
            "unknown field",
        ),
    ] {
        let error = parse(text).unwrap_err();
        assert_eq!(error.key.as_deref(), Some(key), "{error}");
        assert_eq!(error.line, Some(line), "{error}");
        assert!(error.to_string().contains(says), "{error}");
    }
}
