//! Tests of the protocol: every operation reads back from its own request, the documented
//! requests are the ones sent, and requests written by hand parse.

use proptest::prelude::*;
use store_owners::TABLE_NAMES;

use super::{Op, OpError, Special};

/// Read `op`'s request back, as the admin API receives it.
fn round_trip(op: &Op) -> Result<Op, OpError> {
    let route = op.route();
    let body = route
        .body
        .as_ref()
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let url = route.path_and_query();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    Op::from_request(route.method.as_str(), path, query, &body)
}

/// Every operation with every table (and every table left out), each flag both ways, a
/// backup id and none.
fn every_op() -> Vec<Op> {
    let tables = || {
        TABLE_NAMES
            .iter()
            .map(|t| Some(t.to_string()))
            .chain([None])
    };
    let mut ops = vec![Op::Status, Op::History, Op::Operations];
    for verify in [false, true] {
        ops.push(Op::Backups { verify });
    }
    for (table, force) in tables().flat_map(|t| [(t.clone(), false), (t, true)]) {
        ops.push(Op::Compact { table, force });
    }
    ops.extend(tables().map(|table| Op::Backup { table }));
    for table in TABLE_NAMES {
        for backup in [None, Some("20261125T230102.123Z".to_string())] {
            ops.push(Op::Restore {
                table: table.to_string(),
                backup: backup.clone(),
            });
            ops.push(Op::RemoteRestore {
                table: table.to_string(),
                backup,
            });
        }
    }
    for verify in [false, true] {
        ops.push(Op::RemoteBackups { verify });
    }
    ops.push(Op::Upload);
    for table in tables() {
        for remote in [false, true] {
            ops.push(Op::RestoreAt {
                table: table.clone(),
                at: "2026-12-02T10:15:00.250Z".to_string(),
                remote,
            });
        }
    }
    ops
}

#[test]
fn every_op_reads_back_from_its_request() {
    let ops = every_op();
    for op in &ops {
        assert_eq!(round_trip(op).as_ref(), Ok(op), "{:?}", op.route());
        assert_eq!(
            Special::from_request(op.route().method.as_str(), &op.route().path),
            None
        );
    }
    // A new kind of operation fails to compile here until `every_op` makes it too.
    let kind = |op: &Op| match op {
        Op::Status => 0,
        Op::History => 1,
        Op::Backups { .. } => 2,
        Op::Compact { .. } => 3,
        Op::Backup { .. } => 4,
        Op::Restore { .. } => 5,
        Op::RemoteBackups { .. } => 6,
        Op::Upload => 7,
        Op::RemoteRestore { .. } => 8,
        Op::RestoreAt { .. } => 9,
        Op::Operations => 10,
    };
    let kinds: std::collections::BTreeSet<u8> = ops.iter().map(kind).collect();
    assert_eq!(kinds.len(), 11, "every kind of operation is made");
}

/// The table in the module doc.
#[test]
fn the_requests_are_the_documented_ones() {
    let t = || Some("task_queue".to_string());
    let (verify, force) = (true, true);
    for (op, request) in [
        (Op::Status, "GET /health"),
        (Op::History, "GET /history"),
        (Op::Operations, "GET /operations"),
        (Op::Backups { verify }, "GET /backups?verify=true"),
        (
            Op::Compact { table: None, force },
            "POST /compact?force=true",
        ),
        (
            Op::Compact { table: t(), force },
            "POST /compact/task_queue?force=true",
        ),
        (Op::Backup { table: None }, "POST /backup"),
        (Op::Backup { table: t() }, "POST /backup?table=task_queue"),
        (
            Op::RemoteBackups { verify },
            "GET /remote/backups?verify=true",
        ),
        (Op::Upload, "POST /remote/upload"),
    ] {
        let route = op.route();
        let seen = format!("{} {}", route.method.as_str(), route.path_and_query());
        assert_eq!((seen.as_str(), route.body), (request, None));
    }
    let restore = Op::Restore {
        table: "task_queue".into(),
        backup: Some("b".into()),
    };
    let route = restore.route();
    assert_eq!(route.path_and_query(), "/restore/task_queue");
    assert_eq!(route.body, Some(serde_json::json!({ "backup": "b" })));
}

#[test]
fn requests_by_hand_parse_and_bad_ones_get_their_status() {
    let parse = |method, url: &str, body: &str| {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        Op::from_request(method, path, query, body.as_bytes()).map_err(|e| e.status)
    };
    let t = || Some("task_queue".to_string());
    assert_eq!(
        parse("POST", "/compact?table=task_queue&force", ""),
        Ok(Op::Compact {
            table: t(),
            force: true
        })
    );
    assert_eq!(
        parse("POST", "/backup/task_queue", ""),
        Ok(Op::Backup { table: t() })
    );
    assert_eq!(
        parse("POST", "/restore/task_queue?backup=b", " "),
        Ok(Op::Restore {
            table: "task_queue".into(),
            backup: Some("b".into())
        })
    );
    assert_eq!(
        parse("GET", "//backups/?verify=1", ""),
        Ok(Op::Backups { verify: true })
    );
    assert_eq!(parse("GET", "/backups?verify=maybe", ""), Err(400));
    assert_eq!(parse("POST", "/restore/t", "{not json"), Err(400));
    assert_eq!(parse("POST", "/restore/t", r#"{"other": 1}"#), Err(400));
    let not_utf8 = Op::from_request("POST", "/restore/t", "", b"{\xff}");
    assert_eq!(not_utf8.map_err(|e| e.status), Err(400));
    assert_eq!(parse("PUT", "/health", ""), Err(405));
    assert_eq!(parse("POST", "/metrics", ""), Err(405));
    assert_eq!(parse("GET", "/no/such/route", ""), Err(404));
    assert_eq!(
        Special::from_request("GET", "/events"),
        Some(Special::Events)
    );
    assert_eq!(
        Special::from_request("GET", "/metrics/"),
        Some(Special::Metrics)
    );
    assert_eq!(
        Special::from_request("HEAD", "/metrics"),
        Some(Special::Metrics)
    );
    assert_eq!(Special::from_request("POST", "/metrics"), None);
}

/// An empty table name does not survive its request: `POST /compact/` is `POST /compact`,
/// every table. The CLI never sends one: `--table` takes only the nine names.
#[test]
fn an_empty_table_name_is_lost_in_the_compact_path() {
    let op = Op::Compact {
        table: Some(String::new()),
        force: false,
    };
    let every_table = Op::Compact {
        table: None,
        force: false,
    };
    assert_eq!(round_trip(&op), Ok(every_table));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any table name made of the characters of table names, and any backup id (it
    /// travels in the JSON body), reads back.
    #[test]
    fn ops_on_any_plain_name_read_back(
        table in "[A-Za-z0-9_.-]{1,24}",
        backup in proptest::option::of(any::<String>()),
        flag in any::<bool>(),
    ) {
        for op in [
            Op::Compact { table: Some(table.clone()), force: flag },
            Op::Backup { table: Some(table.clone()) },
            Op::Restore { table: table.clone(), backup: backup.clone() },
        ] {
            prop_assert_eq!(round_trip(&op), Ok(op));
        }
    }
}
