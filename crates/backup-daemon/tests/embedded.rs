//! The daemon embedded in a hub's process: the hub writes through the typed handles while the
//! real CLI binary, finding the daemon through `daemon.json`, compacts one table, backs up and
//! restores another; every acknowledged write is there at the end, and `status` shows the
//! live counts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

mod support;

use backup_daemon::config::ByteSize;
use backup_daemon::{Daemon, DaemonConfig};
use store_owners::{MailboxMessage, NewTask};
use support::cli_json;

const AGENTS: usize = 3;

fn config(data_dir: &Path) -> DaemonConfig {
    let mut config = DaemonConfig {
        data_dir: data_dir.to_path_buf(),
        ..DaemonConfig::default()
    };
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.compaction.threshold = 0.0;
    config.tables.cache = ByteSize(36 << 20);
    config
}

#[test]
fn a_hub_writes_while_the_cli_compacts_backs_up_and_restores_through_the_embedded_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let daemon = Daemon::start(&config(&data)).unwrap();
    assert!(data.join("daemon.json").exists());
    let stores = daemon.stores();
    for (_, bytes) in daemon
        .maintainer()
        .stores()
        .owners()
        .iter()
        .map(|o| (o.table(), o.shared().cache_bytes()))
    {
        assert_eq!(bytes, 4 << 20);
    }

    // The table the CLI backs up and restores: its state at the backup is what comes back.
    for i in 0..50 {
        stores
            .task_queue
            .submit(NewTask {
                kind: "index".into(),
                payload: format!("doc-{i}").into_bytes(),
                max_retries: 3,
                submitted_at_ms: i,
            })
            .unwrap();
    }

    // The hub's writers: mailbox messages, acknowledged ones recorded per agent.
    let stop = Arc::new(AtomicBool::new(false));
    let mut backed_up = 0;
    let mut after_backup = 0;
    let acked: BTreeMap<String, Vec<(u64, String)>> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..AGENTS)
            .map(|a| {
                let stop = stop.clone();
                let mailbox = &stores.agent_mailbox;
                scope.spawn(move || {
                    let agent = format!("agent-{a}");
                    let mut mine = Vec::new();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) || i < 200 {
                        let body = format!("{agent} message {i} {}", "x".repeat(200));
                        let message = MailboxMessage {
                            from: "hub".into(),
                            body: body.clone(),
                            sent_at_ms: i,
                        };
                        let seq = mailbox.enqueue(&agent, message).expect("enqueue");
                        mine.push((seq, body));
                        i += 1;
                    }
                    (agent, mine)
                })
            })
            .collect();

        // The operator, through the real CLI, while the writers run. The writers stop when
        // this ends, even by a failed assertion.
        struct StopOnDrop(Arc<AtomicBool>);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let stopper = StopOnDrop(stop.clone());
        let run = cli_json(&data, &["compact", "--table", "agent_mailbox", "--force"]);
        assert_eq!(run["results"][0]["table"], "agent_mailbox", "{run}");
        assert_eq!(run["results"][0]["status"], "compacted", "{run}");
        let run = cli_json(&data, &["backup", "--table", "task_queue"]);
        backed_up = run["backups"][0]["records"].as_u64().expect("records");
        assert!(backed_up >= 50, "{run}");
        after_backup = stores
            .task_queue
            .submit(NewTask {
                kind: "index".into(),
                payload: b"after the backup".to_vec(),
                max_retries: 3,
                submitted_at_ms: 99,
            })
            .unwrap();
        let report = cli_json(&data, &["restore", "--table", "task_queue"]);
        assert_eq!(report["outcome"], "restored", "{report}");
        drop(stopper);
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    // Every acknowledged write is there, in order.
    let mut total = 0;
    for (agent, mine) in &acked {
        let stored = stores.agent_mailbox.poll(agent, 0, usize::MAX).unwrap();
        let stored: Vec<(u64, String)> =
            stored.into_iter().map(|s| (s.seq, s.record.body)).collect();
        assert_eq!(&stored, mine, "{agent}");
        total += mine.len() as u64;
    }
    // The restore brought task_queue back to the backup.
    assert_eq!(
        stores.task_queue.owner().shared().metrics().live_records,
        backed_up
    );
    assert!(stores.task_queue.get(after_backup).unwrap().is_none());
    assert!(stores.task_queue.get(1).unwrap().is_some());

    // status through the CLI shows the live counts.
    let status = cli_json(&data, &["status"]);
    let table = |name: &str| {
        status["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == name)
            .cloned()
            .unwrap()
    };
    // The mailbox holds the messages and a sequence counter per agent.
    let live = stores.agent_mailbox.owner().shared().metrics().live_records;
    assert_eq!(live, total + AGENTS as u64);
    assert_eq!(table("agent_mailbox")["records"], live, "{status}");
    assert_eq!(table("task_queue")["records"], backed_up, "{status}");
    assert_eq!(table("agent_mailbox")["status"], "ok");

    daemon.shutdown();
    assert!(!data.join("daemon.json").exists());
    // The tables are closed: the data dir opens again.
    store_owners::Stores::open(&data, Default::default()).unwrap();
}
