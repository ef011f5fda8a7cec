//! The change logs shipped off-site, against a real S3-compatible server (`moto_server`):
//! a recovery from the bucket alone holds every write acknowledged before the last
//! shipment, not only those of the newest backup; a chunk missing in the bucket stops the
//! recovery of its table there and the report names the groups lost; remote retention
//! deletes the chunks no kept backup needs; local pruning keeps what is not shipped yet; a
//! bucket that refuses shows in `/health` and gets everything once it answers.
//! Every pass is run by the test itself ([`Offsite::ship_logs`]), so nothing is timed.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use compaction::remote::{Credentials, Offsite, recover_data_dir, recover_data_dir_at};
use compaction::{Maintainer, MaintenanceConfig, RemoteConfig};
use store_owners::{StoresOptions, TABLE_NAMES};
use support::moto::{ACCESS_KEY, Moto, SECRET_KEY};
use support::{contents, owner, put_keys};

const BUCKET: &str = "hub-ship";

fn credentials() -> Credentials {
    Credentials::Static {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
    }
}

fn remote_config(moto: &Moto) -> RemoteConfig {
    RemoteConfig {
        url: format!("s3://{BUCKET}/hub1"),
        endpoint: moto.endpoint.clone(),
        region: "us-east-1".into(),
        allow_http: true,
        timeout: Duration::from_secs(5),
        ..RemoteConfig::default()
    }
}

fn maintenance(root: &Path) -> MaintenanceConfig {
    let mut config = MaintenanceConfig::default();
    config.backup.dir = root.join("backups");
    config
}

/// Tables with change logs in small segments, as the daemon opens them.
fn open_logged(data: &Path, root: &Path) -> Arc<Maintainer> {
    let options = StoresOptions {
        change_log: support::small_log(),
        ..StoresOptions::default()
    };
    support::open_hub_with(data, maintenance(root), options).maintainer
}

fn offsite(m: &Arc<Maintainer>, config: &RemoteConfig) -> Offsite {
    Offsite::open_with(Arc::clone(m), config, &credentials()).expect("open the remote")
}

/// Write `n` groups of a few records to `table`, keys from `start`.
fn write_groups(m: &Maintainer, table: &str, start: usize, n: usize) {
    for g in 0..n {
        let from = start + 3 * g;
        let table_name = table.to_string();
        put_keys(m, table, from..from + 3, move |i| {
            format!("{table_name} value {i} {}", "y".repeat(i % 50)).into_bytes()
        });
    }
}

/// Back up every table and upload the backups.
fn backup_and_upload(m: &Maintainer, offsite: &Offsite) {
    let run = m.backup_all(Default::default()).unwrap();
    assert!(run.failures.is_empty(), "{:?}", run.failures);
    let pass = offsite.upload_pending();
    assert!(pass.failures.is_empty(), "{:?}", pass.failures);
}

/// The chunk keys of `table` in the bucket.
fn chunk_keys(moto: &Moto, table: &str) -> Vec<String> {
    let prefix = format!("hub1/{table}/log/");
    let mut keys: Vec<String> = moto
        .keys(BUCKET)
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .collect();
    keys.sort();
    keys
}

type Contents = BTreeMap<Vec<u8>, Vec<u8>>;

#[test]
fn a_recovery_holds_every_write_shipped_after_the_newest_backup() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let config = remote_config(&moto);
    let dir = tempfile::tempdir().unwrap();
    let m = open_logged(&dir.path().join("data"), dir.path());
    let offsite = offsite(&m, &config);
    for table in TABLE_NAMES {
        write_groups(&m, table, 0, 5);
    }
    backup_and_upload(&m, &offsite);
    // The backups record where the log goes on from.
    for info in offsite.list(false).unwrap() {
        assert!(info.manifest.unwrap().log_position.is_some(), "{}", info.id);
    }
    // Written after the backup, in two shipments.
    for table in TABLE_NAMES {
        write_groups(&m, table, 1000, 20);
    }
    let pass = offsite.ship_logs();
    assert!(pass.failures.is_empty(), "{:?}", pass.failures);
    assert!(!pass.chunks.is_empty());
    for table in TABLE_NAMES {
        write_groups(&m, table, 2000, 7);
    }
    let pass = offsite.ship_logs();
    assert!(pass.failures.is_empty(), "{:?}", pass.failures);
    assert_eq!(pass.chunks.len(), TABLE_NAMES.len());
    // Nothing new: nothing shipped, every table current.
    assert!(offsite.ship_logs().chunks.is_empty());
    let health = offsite.health();
    assert_eq!(health.logs.len(), TABLE_NAMES.len());
    for log in &health.logs {
        let head = owner(&m, &log.table).shared().log().unwrap().head;
        assert_eq!((log.position, log.head), (head, head), "{}", log.table);
        assert!(log.current_at.is_some());
    }
    let shipped: Vec<Contents> = TABLE_NAMES.iter().map(|t| contents(&m, t)).collect();
    // Acknowledged after the last shipment: a recovery now cannot have these.
    write_groups(&m, "task_queue", 5000, 2);
    drop(offsite);
    drop(m);

    let machine = tempfile::tempdir().unwrap();
    let new_data = machine.path().join("data");
    let report = recover_data_dir(
        &config,
        &credentials(),
        &new_data,
        maintenance(machine.path()),
    )
    .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    for r in &report.restored {
        assert_eq!(r.log_replayed, 27, "{}", r.table);
        assert_eq!(r.log_unrecovered, None, "{}", r.table);
    }
    // Opened as the daemon opens it: complete, and its log goes on after what it holds.
    let m = open_logged(&new_data, machine.path());
    for (table, expected) in TABLE_NAMES.iter().zip(&shipped) {
        assert_eq!(&contents(&m, table), expected, "{table}");
        let log = owner(&m, table).shared().log().unwrap();
        assert_eq!(log.unrecovered, None, "{table}");
    }
}

#[test]
fn a_missing_chunk_stops_the_recovery_there_and_is_reported() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let config = remote_config(&moto);
    let dir = tempfile::tempdir().unwrap();
    let m = open_logged(&dir.path().join("data"), dir.path());
    let offsite = offsite(&m, &config);
    let table = "message_history";
    write_groups(&m, table, 0, 3);
    backup_and_upload(&m, &offsite);
    let backup_position = owner(&m, table).shared().log().unwrap().head;
    let mut states = Vec::new();
    for round in 0..3 {
        write_groups(&m, table, 1000 * (round + 1), 4);
        assert!(offsite.ship_logs().failures.is_empty());
        states.push(contents(&m, table));
    }
    let chunks = chunk_keys(&moto, table);
    assert_eq!(chunks.len(), 3, "{chunks:?}");
    // The second of the three goes missing.
    moto.delete(BUCKET, &chunks[1]);
    drop(offsite);
    drop(m);

    let machine = tempfile::tempdir().unwrap();
    let new_data = machine.path().join("data");
    let report = recover_data_dir(
        &config,
        &credentials(),
        &new_data,
        maintenance(machine.path()),
    )
    .unwrap();
    let r = report.restored.iter().find(|r| r.table == table).unwrap();
    assert_eq!(r.log_replayed, 4);
    let gap = r.log_unrecovered.as_ref().expect("the gap is reported");
    assert_eq!(
        (gap.from, gap.through),
        (backup_position + 5, backup_position + 12),
        "{gap}"
    );
    // The other tables had nothing shipped: nothing missing.
    assert!(
        report
            .restored
            .iter()
            .filter(|r| r.table != table)
            .all(|r| r.log_unrecovered.is_none())
    );
    let m = open_logged(&new_data, machine.path());
    assert_eq!(contents(&m, table), states[0]);
    // The new log goes on after everything in the bucket, never inside the old history.
    let log = owner(&m, table).shared().log().unwrap();
    assert_eq!(log.head, gap.through);
    write_groups(&m, table, 9000, 1);
    let pass = self::offsite(&m, &config).ship_logs();
    assert!(pass.failures.is_empty(), "{:?}", pass.failures);
    let shipped: Vec<_> = pass.chunks.iter().filter(|c| c.table == table).collect();
    assert_eq!(shipped.len(), 1);
    assert_eq!(shipped[0].first, gap.through + 1);
}

#[test]
fn retention_deletes_the_chunks_no_kept_backup_needs() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let config = RemoteConfig {
        keep: 1,
        ..remote_config(&moto)
    };
    let dir = tempfile::tempdir().unwrap();
    let m = open_logged(&dir.path().join("data"), dir.path());
    let offsite = offsite(&m, &config);
    let table = "agent_mailbox";
    write_groups(&m, table, 0, 2);
    backup_and_upload(&m, &offsite);
    write_groups(&m, table, 100, 3);
    assert!(offsite.ship_logs().failures.is_empty());
    write_groups(&m, table, 200, 3);
    assert!(offsite.ship_logs().failures.is_empty());
    assert_eq!(chunk_keys(&moto, table).len(), 2);
    // A second backup covers both chunks; with keep = 1 the first backup goes, and with it
    // every chunk before the kept one's position.
    std::thread::sleep(Duration::from_millis(5));
    backup_and_upload(&m, &offsite);
    assert!(chunk_keys(&moto, table).is_empty());
    write_groups(&m, table, 300, 2);
    assert!(offsite.ship_logs().failures.is_empty());
    // Shipped after the kept backup: needed, kept.
    let after = chunk_keys(&moto, table);
    assert_eq!(after.len(), 1);
    let head = owner(&m, table).shared().log().unwrap().head;
    assert!(after[0].contains(&format!("-{head:020}.log")), "{after:?}");
}

#[test]
fn local_pruning_keeps_what_is_not_shipped_yet() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let config = remote_config(&moto);
    let dir = tempfile::tempdir().unwrap();
    let m = open_logged(&dir.path().join("data"), dir.path());
    let offsite = offsite(&m, &config);
    let table = "task_queue";
    // Enough to fill several 16 KiB segments.
    write_groups(&m, table, 0, 200);
    let first = owner(&m, table).shared().log().unwrap().first;
    assert_eq!(first, Some(1));
    // A backup would prune everything before its position; nothing is shipped yet.
    let run = m.backup_all(Default::default()).unwrap();
    assert!(run.failures.is_empty());
    assert_eq!(owner(&m, table).shared().log().unwrap().first, Some(1));
    assert!(offsite.ship_logs().failures.is_empty());
    std::thread::sleep(Duration::from_millis(5));
    let run = m.backup_all(Default::default()).unwrap();
    assert!(run.failures.is_empty());
    let log = owner(&m, table).shared().log().unwrap();
    assert!(log.first.unwrap() > 1, "{log:?}");
}

#[test]
fn a_refusing_bucket_is_counted_and_gets_everything_once_it_answers() {
    let moto = Moto::start();
    // The bucket does not exist yet.
    let config = remote_config(&moto);
    let dir = tempfile::tempdir().unwrap();
    let m = open_logged(&dir.path().join("data"), dir.path());
    let offsite = offsite(&m, &config);
    let table = "thread_replies";
    write_groups(&m, table, 0, 30);
    let pass = offsite.ship_logs();
    assert!(pass.chunks.is_empty());
    // One failure for the pass: the other tables would fail the same way.
    assert_eq!(pass.failures.len(), 1, "{:?}", pass.failures);
    let health = offsite.health();
    assert_eq!(health.ship_failures, 1);
    assert!(health.last_ship_error.is_some());
    // Meanwhile the writes are kept locally: a backup prunes nothing.
    assert!(
        m.backup_all(Default::default())
            .unwrap()
            .failures
            .is_empty()
    );
    assert_eq!(owner(&m, table).shared().log().unwrap().first, Some(1));

    moto.create_bucket(BUCKET);
    let pass = offsite.ship_logs();
    assert!(pass.failures.is_empty(), "{:?}", pass.failures);
    let head = owner(&m, table).shared().log().unwrap().head;
    let shipped: Vec<_> = pass.chunks.iter().filter(|c| c.table == table).collect();
    assert_eq!((shipped[0].first, shipped.last().unwrap().last), (1, head));
    let health = offsite.health();
    assert!(health.last_ship_error.is_none());
    assert_eq!(health.ship_failures, 1);
}

#[test]
fn a_recovery_as_of_an_instant_holds_exactly_what_was_acknowledged_by_then() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let config = remote_config(&moto);
    let dir = tempfile::tempdir().unwrap();
    let m = open_logged(&dir.path().join("data"), dir.path());
    let offsite = offsite(&m, &config);
    let before_any_backup = SystemTime::now();
    std::thread::sleep(Duration::from_millis(5));
    for table in TABLE_NAMES {
        write_groups(&m, table, 0, 5);
    }
    backup_and_upload(&m, &offsite);
    for table in TABLE_NAMES {
        write_groups(&m, table, 1000, 10);
    }
    assert!(offsite.ship_logs().failures.is_empty());
    let instant = SystemTime::now();
    let at_instant: Vec<Contents> = TABLE_NAMES.iter().map(|t| contents(&m, t)).collect();
    std::thread::sleep(Duration::from_millis(5));
    // After the instant: shipped too, and a newer backup, both left out of the recovery.
    for table in TABLE_NAMES {
        write_groups(&m, table, 2000, 10);
    }
    backup_and_upload(&m, &offsite);
    for table in TABLE_NAMES {
        write_groups(&m, table, 3000, 4);
    }
    assert!(offsite.ship_logs().failures.is_empty());
    drop(offsite);
    drop(m);

    let machine = tempfile::tempdir().unwrap();
    let new_data = machine.path().join("data");
    let report = recover_data_dir_at(
        &config,
        &credentials(),
        &new_data,
        maintenance(machine.path()),
        Some(instant),
    )
    .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    for r in &report.restored {
        assert_eq!(r.restored_to, Some(instant));
        assert_eq!(r.log_unrecovered, None, "{}", r.table);
    }
    let m = open_logged(&new_data, machine.path());
    for (table, expected) in TABLE_NAMES.iter().zip(&at_instant) {
        assert_eq!(&contents(&m, table), expected, "{table}");
    }
    drop(m);

    // Before the oldest backup: nothing to start from, every table reported.
    let other = tempfile::tempdir().unwrap();
    let report = recover_data_dir_at(
        &config,
        &credentials(),
        &other.path().join("data"),
        maintenance(other.path()),
        Some(before_any_backup),
    )
    .unwrap();
    assert_eq!(report.failed.len(), TABLE_NAMES.len());
}

#[test]
fn a_live_table_goes_back_to_an_instant_from_the_bucket() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let config = remote_config(&moto);
    let dir = tempfile::tempdir().unwrap();
    let m = open_logged(&dir.path().join("data"), dir.path());
    let offsite = offsite(&m, &config);
    write_groups(&m, "task_queue", 0, 5);
    backup_and_upload(&m, &offsite);
    write_groups(&m, "task_queue", 1000, 8);
    assert!(offsite.ship_logs().failures.is_empty());
    let instant = SystemTime::now();
    let at_instant = contents(&m, "task_queue");
    std::thread::sleep(Duration::from_millis(5));
    write_groups(&m, "task_queue", 2000, 8);
    assert!(offsite.ship_logs().failures.is_empty());
    let report = offsite
        .restore_at("task_queue", instant, compaction::RecoveryTrigger::Manual)
        .unwrap();
    assert_eq!(report.restored_to, Some(instant));
    assert_eq!(report.log_unrecovered, None);
    assert_eq!(contents(&m, "task_queue"), at_instant);
    // Logged as writes like a local point-in-time restore: a restart keeps it.
    drop(offsite);
    drop(m);
    let m = open_logged(&dir.path().join("data"), dir.path());
    assert_eq!(contents(&m, "task_queue"), at_instant);
}
