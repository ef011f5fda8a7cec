//! Property-based fuzzing of the two inputs operators and clients control: the TOML config
//! file and admin API requests. Neither may crash the binary; bad input gets a clear error
//! (exit code 2 naming the file for a config, a JSON error with a 4xx status for a request)
//! and the daemon keeps serving. (cargo-fuzz does not fit the CI time budget; proptest with a
//! fixed number of cases does, and shrinks a failure to a small reproducer.)

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::Value;
use support::{BIN, Daemon};

/// Keys of the config file, by section, with a valid value each.
const KEYS: &[(&str, &str, &str)] = &[
    ("", "data_dir", "\"data\""),
    ("compaction", "interval", "\"6h\""),
    ("compaction", "threshold", "0.1"),
    ("compaction", "strategy", "\"online\""),
    ("compaction", "pause_limit", "\"1s\""),
    ("backup", "dir", "\"\""),
    ("backup", "interval", "\"24h\""),
    ("backup", "keep", "3"),
    ("admin", "listen", "\"127.0.0.1:7411\""),
    ("log", "format", "\"text\""),
];

/// Values that are wrong for most keys, or odd for all.
fn odd_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-1".to_string()),
        Just("1e308".to_string()),
        Just("nan".to_string()),
        Just("\"\"".to_string()),
        Just("\"-5m\"".to_string()),
        Just("\"99999999999999999999h\"".to_string()),
        Just("\"in-place\"".to_string()),
        Just("\"json\"".to_string()),
        Just("\"300.0.0.1:99999\"".to_string()),
        Just("[1, 2]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("true".to_string()),
        Just("18446744073709551616".to_string()),
        "[a-z0-9 .:\"-]{0,12}".prop_map(|s| s),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
    ]
}

/// A config file: the valid keys in their sections, some values replaced by odd ones, some
/// keys dropped, unknown keys added, and sometimes raw garbage appended.
fn config_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((any::<bool>(), any::<bool>(), odd_value()), KEYS.len()),
        prop::collection::vec("[a-z_]{1,10}", 0..3),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
    )
        .prop_map(|(choices, unknown, garbage)| {
            let mut text = String::new();
            let mut section = "";
            for ((sec, key, good), (keep, replace, odd)) in KEYS.iter().zip(choices) {
                if *sec != section {
                    text.push_str(&format!("[{sec}]\n"));
                    section = sec;
                }
                if keep {
                    let value = if replace { odd } else { good.to_string() };
                    text.push_str(&format!("{key} = {value}\n"));
                }
            }
            for key in unknown {
                text.push_str(&format!("{key} = 1\n"));
            }
            let mut bytes = text.into_bytes();
            if let Some(garbage) = garbage {
                bytes.extend(garbage);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_config_file_is_accepted_or_rejected_with_a_clear_error(text in config_text()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.toml");
        std::fs::write(&path, &text).unwrap();
        let out = Command::new(BIN)
            .args(["config", "show", "--config"])
            .arg(&path)
            .output()
            .expect("run the binary");
        let code = out.status.code();
        let stderr = String::from_utf8_lossy(&out.stderr);
        prop_assert!(
            code == Some(0) || code == Some(2),
            "exit {code:?} (a crash?) for config:\n{text}\nstderr: {stderr}"
        );
        if code == Some(2) {
            prop_assert!(
                stderr.contains("fuzz.toml"),
                "the error does not name the file:\n{stderr}\nconfig:\n{text}"
            );
        }
    }
}

/// One raw HTTP request: method, path, query, body and which token it carries.
#[derive(Debug, Clone)]
struct RawRequest {
    method: String,
    path: String,
    body: Vec<u8>,
    token: TokenChoice,
}

#[derive(Debug, Clone, Copy)]
enum TokenChoice {
    Missing,
    Wrong,
    Right,
}

fn raw_request() -> impl Strategy<Value = RawRequest> {
    let method = prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("PUT"),
        Just("DELETE"),
        Just("PATCH"),
        Just("OPTIONS"),
    ];
    let segment = prop_oneof![
        Just("health".to_string()),
        Just("history".to_string()),
        Just("backups".to_string()),
        Just("compact".to_string()),
        Just("backup".to_string()),
        Just("restore".to_string()),
        Just("metrics".to_string()),
        Just("task_queue".to_string()),
        Just("agent_mailbox".to_string()),
        Just("..".to_string()),
        Just("%2e%2e".to_string()),
        Just("nope".to_string()),
        "[a-zA-Z0-9_.%-]{0,12}",
    ];
    let query = prop_oneof![
        Just(String::new()),
        Just("?force=true".to_string()),
        Just("?force=maybe".to_string()),
        Just("?verify=1".to_string()),
        Just("?table=../../etc".to_string()),
        Just("?backup=../x".to_string()),
        "\\?[a-z=&%0-9]{0,16}",
    ];
    let body = prop_oneof![
        Just(Vec::new()),
        Just(br#"{"backup": "../../etc/passwd"}"#.to_vec()),
        Just(br#"{"backup": "20990101T000000.000Z"}"#.to_vec()),
        Just(br#"{"backup": 5}"#.to_vec()),
        Just(br#"{"other": 1}"#.to_vec()),
        Just(b"not json".to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
    ];
    let token = prop_oneof![
        Just(TokenChoice::Missing),
        Just(TokenChoice::Wrong),
        Just(TokenChoice::Right)
    ];
    (
        method,
        prop::collection::vec(segment, 0..4),
        query,
        body,
        token,
    )
        .prop_map(|(method, segments, query, body, token)| RawRequest {
            method: method.to_string(),
            path: format!("/{}{}", segments.join("/"), query),
            body,
            token,
        })
}

/// Send `request` over a fresh connection; returns the status code and the body.
fn send(daemon: &Daemon, request: &RawRequest) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(daemon.addr).expect("connect to the admin API");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        request.method,
        request.path,
        daemon.addr,
        request.body.len()
    );
    match request.token {
        TokenChoice::Missing => {}
        TokenChoice::Wrong => head.push_str("Authorization: Bearer wrong-token\r\n"),
        TokenChoice::Right => head.push_str(&format!("Authorization: Bearer {}\r\n", daemon.token)),
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&request.body).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in the response to {request:?}: {text:?}"));
    let body = match response.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => response[at + 4..].to_vec(),
        None => Vec::new(),
    };
    (status, body)
}

#[test]
fn admin_api_answers_any_request_with_a_status_and_keeps_serving() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let daemon = Daemon::start(root.path(), &data);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&raw_request(), |request| {
        // An event stream never ends by itself: it is exercised by the end-to-end tests.
        let route = request.path.split('?').next().unwrap_or("");
        let segments: Vec<&str> = route.split('/').filter(|s| !s.is_empty()).collect();
        if request.method == "GET" && segments == ["events"] {
            return Ok(());
        }
        let (status, body) = send(&daemon, &request);
        prop_assert!(
            matches!(status, 200 | 400 | 401 | 404 | 405 | 409 | 413),
            "status {status} for {request:?}: {}",
            String::from_utf8_lossy(&body)
        );
        if status >= 400 {
            let parsed: Result<Value, _> = serde_json::from_slice(&body);
            prop_assert!(
                parsed
                    .as_ref()
                    .map(|v| v["error"].is_string())
                    .unwrap_or(false),
                "error without a JSON body for {request:?}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        // Served without a token: metrics, the probes, and the dashboard's page and assets
        // (which carry no data).
        let public = request.method == "GET"
            && (matches!(segments.as_slice(), ["metrics"] | ["livez"] | ["readyz"])
                || ["/", "/index.html", "/dashboard.js", "/dashboard.css"].contains(&route));
        if matches!(request.token, TokenChoice::Missing | TokenChoice::Wrong) && !public {
            prop_assert_eq!(status, 401, "{:?} got through without the token", request);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (status, health) = daemon.call("GET", "/health", None);
    assert_eq!(
        status, 200,
        "the daemon still serves after the fuzzing: {health}"
    );
}
