//! Off-site backups against a real S3-compatible server (`moto_server`, started per test on
//! a free port): uploads after backups, a whole data dir recovered from the bucket alone,
//! encryption readable by the `age` tool, a server frozen in the middle of a multipart
//! upload, refused credentials and a missing bucket, a corrupted object, remote retention.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use compaction::recovery::RecoveryOutcome;
use compaction::remote::{
    Credentials, Encryption, Offsite, RemoteRestoreError, Uploader, recover_data_dir,
};
use compaction::{
    BackupSelector, BackupState, Compression, Event, Maintainer, MaintenanceConfig,
    RecoveryTrigger, RemoteConfig,
};
use rand::RngCore;
use store_core::IoRate;
use store_owners::TABLE_NAMES;
use support::moto::{ACCESS_KEY, Moto, SECRET_KEY};
use support::{backup, contents, put_keys};

const BUCKET: &str = "hub-offsite";

fn credentials() -> Credentials {
    Credentials::Static {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
    }
}

fn remote_config(moto: &Moto, bucket: &str) -> RemoteConfig {
    RemoteConfig {
        url: format!("s3://{bucket}/hub1"),
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

fn offsite(m: &Arc<Maintainer>, config: &RemoteConfig) -> Offsite {
    Offsite::open_with(Arc::clone(m), config, &credentials()).expect("open the remote")
}

/// Records in every table, each table its own count.
fn fill_every_table(m: &Maintainer) {
    for (n, table) in TABLE_NAMES.iter().enumerate() {
        put_keys(m, table, 0..50 + 10 * n, move |i| {
            format!("{table} record {i} {}", "x".repeat(i % 40)).into_bytes()
        });
    }
}

#[test]
fn backups_go_offsite_after_each_run_and_verify() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let m = support::open(&dir.path().join("data"), maintenance(dir.path()));
    fill_every_table(&m);
    let offsite = Arc::new(offsite(&m, &remote_config(&moto, BUCKET)));
    let events = m.events().subscribe();
    let uploader = Uploader::start(Arc::clone(&offsite)).unwrap();

    let run = m.backup_all(Default::default()).unwrap();
    assert!(run.failures.is_empty(), "{:?}", run.failures);
    let mut uploaded = Vec::new();
    while uploaded.len() < TABLE_NAMES.len() {
        let envelope = events
            .recv_timeout(Duration::from_secs(120))
            .expect("an event");
        match envelope.event {
            Event::UploadComplete { upload } => uploaded.push(upload),
            Event::UploadFailed { failure } => panic!("upload failed: {failure:?}"),
            _ => {}
        }
    }
    drop(uploader);
    for (upload, backup) in uploaded.iter().zip(&run.backups) {
        assert_eq!((&upload.table, &upload.id), (&backup.table, &backup.id));
        assert_eq!(upload.records, backup.records);
        assert_eq!(upload.plain_bytes, backup.bytes);
        // zstd on a packed redb file of repetitive records.
        assert!(upload.object_bytes < upload.plain_bytes, "{upload:?}");
    }

    let listed = offsite.list(true).unwrap();
    assert_eq!(listed.len(), TABLE_NAMES.len());
    for info in &listed {
        assert_eq!(info.state, BackupState::Verified, "{info:?}");
        let manifest = info.manifest.as_ref().unwrap();
        assert_eq!(manifest.compression, Compression::Zstd);
        assert_eq!(manifest.encryption, Encryption::None);
    }
    let health = offsite.health();
    assert_eq!(health.uploads, TABLE_NAMES.len() as u64);
    assert!(health.last_error.is_none());
    assert!(
        health
            .tables
            .iter()
            .all(|t| t.backups == 1 && t.objects == 2)
    );
    // Every object is in the bucket under the prefix: one manifest and one object per table.
    assert_eq!(moto.keys(BUCKET).len(), 2 * TABLE_NAMES.len());
    // A second pass finds nothing left to upload.
    assert!(offsite.upload_pending().uploads.is_empty());
}

#[test]
fn recover_rebuilds_every_table_from_the_bucket_alone() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let config = remote_config(&moto, BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let expected: Vec<_> = {
        let m = support::open(&dir.path().join("data"), maintenance(dir.path()));
        fill_every_table(&m);
        let run = m.backup_all(Default::default()).unwrap();
        assert!(run.failures.is_empty(), "{:?}", run.failures);
        let pass = offsite(&m, &config).upload_pending();
        assert!(pass.failures.is_empty(), "{:?}", pass.failures);
        TABLE_NAMES.iter().map(|t| contents(&m, t)).collect()
    };
    // The machine is gone: a new data dir, nothing local but the config.
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
    assert_eq!(report.restored.len(), TABLE_NAMES.len());
    assert!(
        report
            .restored
            .iter()
            .all(|r| r.outcome == RecoveryOutcome::Restored)
    );
    // The empty tables the recovery replaced are not kept: they were never user data.
    assert!(support::quarantined(&new_data).is_empty());
    let m = support::open(&new_data, maintenance(machine.path()));
    for (table, expected) in TABLE_NAMES.iter().zip(&expected) {
        assert!(!expected.is_empty());
        assert_eq!(&contents(&m, table), expected, "{table}");
    }
    drop(m);
    // A data dir that is not empty is refused.
    let refused = recover_data_dir(
        &config,
        &credentials(),
        &new_data,
        maintenance(machine.path()),
    );
    assert!(refused.is_err());
}

#[test]
fn encrypted_backups_decrypt_by_code_and_by_the_age_tool() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let identity_file = dir.path().join("identity.txt");
    std::fs::write(
        &identity_file,
        format!(
            "# test identity\n{}\n",
            age::secrecy::ExposeSecret::expose_secret(&identity.to_string())
        ),
    )
    .unwrap();
    let recipients_file = dir.path().join("recipients.txt");
    std::fs::write(&recipients_file, format!("{}\n", identity.to_public())).unwrap();

    let m = support::open(&dir.path().join("data"), maintenance(dir.path()));
    put_keys(&m, "agent_mailbox", 0..500, |i| {
        format!("mail {i}").into_bytes()
    });
    let backup = backup(&m, "agent_mailbox").backups.remove(0);
    let mut config = remote_config(&moto, BUCKET);
    config.encryption_recipients = recipients_file;
    // Uploading needs only the recipients.
    let pass = offsite(&m, &config).upload_pending();
    assert!(pass.failures.is_empty(), "{:?}", pass.failures);

    // Without the identity, the backup cannot be verified; with it, it can.
    let without = offsite(&m, &config);
    let refused = without.verify("agent_mailbox", &backup.id).unwrap_err();
    assert!(!refused.is_corruption(), "{refused}");
    config.identity_file = identity_file.clone();
    let with = offsite(&m, &config);
    let manifest = with.verify("agent_mailbox", &backup.id).unwrap();
    assert_eq!(manifest.encryption, Encryption::AgeX25519);
    assert!(
        manifest.object.ends_with(".redb.zst.age"),
        "{}",
        manifest.object
    );

    // The standard tool: `age -d -i identity.txt OBJECT`, then zstd, gives the backup file.
    let object = moto.get(BUCKET, &format!("hub1/{}", manifest.object));
    let object_file = dir.path().join("object.age");
    std::fs::write(&object_file, &object).unwrap();
    let output = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&identity_file)
        .arg(&object_file)
        .output()
        .expect("the age tool runs (apt-get install age)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let plain = zstd::decode_all(output.stdout.as_slice()).unwrap();
    assert_eq!(blake3::hash(&plain).to_hex().to_string(), backup.blake3);
    assert_eq!(std::fs::read(&backup.path).unwrap(), plain);
}

/// Incompressible records, so that the object takes several parts.
fn fill_big(m: &Maintainer, table: &str, bytes: usize) {
    let n = bytes / 4096;
    put_keys(m, table, 0..n, |_| {
        let mut value = vec![0u8; 4096];
        rand::rng().fill_bytes(&mut value);
        value
    });
}

#[test]
fn a_server_frozen_mid_upload_leaves_no_manifest_and_the_next_pass_uploads() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let m = support::open(&dir.path().join("data"), maintenance(dir.path()));
    fill_big(&m, "message_history", 24 << 20);
    let backup = backup(&m, "message_history").backups.remove(0);
    let mut config = remote_config(&moto, BUCKET);
    config.compression = Compression::None;
    config.max_upload_rate = 8 << 20;
    config.timeout = Duration::from_secs(2);
    let offsite = Arc::new(offsite(&m, &config));

    let pass = {
        let offsite = Arc::clone(&offsite);
        std::thread::spawn(move || offsite.upload_pending())
    };
    while moto.uploads_in_progress(BUCKET) == 0 {
        assert!(!pass.is_finished(), "the upload ended before it was seen");
        std::thread::sleep(Duration::from_millis(20));
    }
    moto.freeze();
    let pass = pass.join().unwrap();
    moto.thaw();
    assert_eq!(pass.failures.len(), 1, "{pass:?}");
    assert_eq!(pass.failures[0].table, "message_history");
    assert_eq!(pass.failures[0].id.as_deref(), Some(backup.id.as_str()));
    assert!(offsite.health().last_error.is_some());
    // Nothing visible: no manifest, no object.
    assert!(
        offsite
            .backups_of("message_history", false)
            .unwrap()
            .is_empty()
    );
    assert!(moto.keys(BUCKET).is_empty(), "{:?}", moto.keys(BUCKET));
    // Local backups are untouched.
    assert_eq!(
        m.verify_backup("message_history", &backup.id).unwrap().id,
        backup.id
    );

    // The next pass (after the next backup run) uploads it.
    let pass = offsite.upload_pending();
    assert!(pass.failures.is_empty(), "{:?}", pass.failures);
    assert_eq!(pass.uploads.len(), 1);
    offsite.verify("message_history", &backup.id).unwrap();
    assert!(offsite.health().last_error.is_none());
}

#[test]
fn refused_credentials_and_a_missing_bucket_fail_clearly_and_local_backups_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let m = support::open(&dir.path().join("data"), maintenance(dir.path()));
    put_keys(&m, "task_queue", 0..20, |i| vec![i as u8; 10]);

    let moto = Moto::start();
    let missing = offsite(&m, &remote_config(&moto, "no-such-bucket"));
    let events = m.events().subscribe();
    let run = backup(&m, "task_queue");
    assert!(run.failures.is_empty());
    // The pass stops at the first table: the others would fail the same way.
    let pass = missing.upload_pending();
    assert_eq!(pass.failures.len(), 1, "{pass:?}");
    let error = &pass.failures[0].error;
    assert!(
        error.contains("bucket \"no-such-bucket\" not found"),
        "{error}"
    );
    let failed = events
        .try_iter()
        .filter(|e| matches!(e.event, Event::UploadFailed { .. }))
        .count();
    assert_eq!(failed, 1);

    let strict = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let refused = offsite(&m, &remote_config(&strict, BUCKET));
    let pass = refused.upload_pending();
    assert_eq!(pass.failures.len(), 1, "{pass:?}");
    let error = &pass.failures[0].error;
    assert!(error.contains("refused the credentials"), "{error}");
    assert!(refused.health().last_error.is_some());

    // Local backups and the table never noticed.
    let run = backup(&m, "task_queue");
    assert!(run.failures.is_empty());
    assert_eq!(m.backups_of("task_queue", true).unwrap().len(), 2);
    assert_eq!(contents(&m, "task_queue").len(), 20);
}

#[test]
fn a_corrupted_object_fails_verify_and_restore_takes_an_older_one_or_refuses() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let m = support::open(&dir.path().join("data"), maintenance(dir.path()));
    let offsite = offsite(&m, &remote_config(&moto, BUCKET));
    put_keys(&m, "agentcom_config", 0..100, |i| {
        format!("v{i}").into_bytes()
    });
    let older = backup(&m, "agentcom_config").backups.remove(0);
    assert!(offsite.upload_pending().failures.is_empty());
    put_keys(&m, "agentcom_config", 100..200, |i| {
        format!("v{i}").into_bytes()
    });
    let newer = backup(&m, "agentcom_config").backups.remove(0);
    assert!(offsite.upload_pending().failures.is_empty());

    // Flip bytes of the newer object, keeping its size.
    let key = format!("hub1/agentcom_config/{}.redb.zst", newer.id);
    let mut object = moto.get(BUCKET, &key);
    let mid = object.len() / 2;
    for b in &mut object[mid..mid + 16] {
        *b ^= 0x5A;
    }
    moto.put(BUCKET, &key, &object);

    let error = offsite.verify("agentcom_config", &newer.id).unwrap_err();
    assert!(error.is_corruption(), "{error}");
    offsite.verify("agentcom_config", &older.id).unwrap();
    let listed = offsite.backups_of("agentcom_config", true).unwrap();
    assert!(matches!(listed[0].state, BackupState::Corrupt(_)));
    assert_eq!(listed[1].state, BackupState::Verified);

    // Asked for by id: refused, the table untouched.
    let refused = offsite.restore(
        "agentcom_config",
        BackupSelector::Id(newer.id.clone()),
        RecoveryTrigger::Manual,
    );
    assert!(
        matches!(refused, Err(RemoteRestoreError::Verify { .. })),
        "{refused:?}"
    );
    assert_eq!(contents(&m, "agentcom_config").len(), 200);
    // The newest verified one: the older backup.
    let report = offsite
        .restore(
            "agentcom_config",
            BackupSelector::LatestVerified,
            RecoveryTrigger::Manual,
        )
        .unwrap();
    assert_eq!(report.backup_id.as_deref(), Some(older.id.as_str()));
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].id, newer.id);
    assert_eq!(contents(&m, "agentcom_config").len(), 100);

    // Both damaged: nothing verifies, the restore refuses.
    let key = format!("hub1/agentcom_config/{}.redb.zst", older.id);
    moto.put(BUCKET, &key, b"not a backup");
    let refused = offsite.restore(
        "agentcom_config",
        BackupSelector::LatestVerified,
        RecoveryTrigger::Manual,
    );
    assert!(
        matches!(refused, Err(RemoteRestoreError::NoVerifiedBackup { ref rejected, .. }) if rejected.len() == 2),
        "{refused:?}"
    );
    assert_eq!(contents(&m, "agentcom_config").len(), 100);
}

#[test]
fn remote_retention_keeps_the_newest_backups_of_each_table() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let mut maintenance = maintenance(dir.path());
    maintenance.backup.keep = 5;
    let m = support::open(&dir.path().join("data"), maintenance);
    let mut config = remote_config(&moto, BUCKET);
    config.keep = 2;
    let offsite = offsite(&m, &config);
    let mut ids = Vec::new();
    for round in 0..4 {
        put_keys(&m, "thread_replies", round * 10..round * 10 + 10, |i| {
            format!("reply {i}").into_bytes()
        });
        ids.push(backup(&m, "thread_replies").backups.remove(0).id);
        let pass = offsite.upload_pending();
        assert!(pass.failures.is_empty(), "{:?}", pass.failures);
    }
    let listed: Vec<String> = offsite
        .backups_of("thread_replies", false)
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(listed, vec![ids[3].clone(), ids[2].clone()]);
    // Their objects went with them; local retention is separate.
    let keys = moto.keys(BUCKET);
    assert!(
        keys.iter()
            .all(|k| !k.contains(&ids[0]) && !k.contains(&ids[1])),
        "{keys:?}"
    );
    assert_eq!(m.backups_of("thread_replies", false).unwrap().len(), 4);
}

#[test]
fn remote_retention_never_deletes_a_backup_being_read() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let m = support::open(&dir.path().join("data"), maintenance(dir.path()));
    let mut config = remote_config(&moto, BUCKET);
    config.keep = 1;
    let offsite = offsite(&m, &config);
    let round = |n: usize| {
        put_keys(&m, "task_dead_letter", n..n + 5, |i| vec![i as u8; 8]);
        let id = backup(&m, "task_dead_letter").backups.remove(0).id;
        let pass = offsite.upload_pending();
        assert!(pass.failures.is_empty(), "{:?}", pass.failures);
        id
    };
    let ids = |offsite: &Offsite| -> Vec<String> {
        offsite
            .backups_of("task_dead_letter", false)
            .unwrap()
            .into_iter()
            .map(|b| b.id)
            .collect()
    };
    let first = round(0);
    let reading = offsite.hold_reading("task_dead_letter", &first);
    let second = round(5);
    // `keep = 1` would delete the first; a restore or verify is reading it.
    assert_eq!(ids(&offsite), vec![second.clone(), first.clone()]);
    offsite.verify("task_dead_letter", &first).unwrap();
    drop(reading);
    let third = round(10);
    assert_eq!(ids(&offsite), vec![third]);
}

#[test]
fn uploads_read_their_backups_through_the_shared_pacer() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let mut config = maintenance(dir.path());
    config.pacing.io_rate = IoRate::Unlimited;
    let m = support::open(&dir.path().join("data"), config);
    fill_big(&m, TABLE_NAMES[0], 256 << 10);
    let run = m.backup_one(TABLE_NAMES[0], Default::default()).unwrap();
    let backup_bytes = run.backups[0].bytes;
    let offsite = offsite(&m, &remote_config(&moto, BUCKET));

    // From here on, maintenance may move 256 KiB a second: the upload has to wait for it.
    let pacer = m.stores().pacer().clone();
    pacer.set_mode("256KiB/s".parse().unwrap());
    let before = pacer.stats();
    let pass = offsite.upload_pending();
    assert!(pass.failures.is_empty(), "{:?}", pass.failures);
    assert_eq!(pass.uploads.len(), 1);
    let after = pacer.stats();
    assert!(
        after.bytes_moved - before.bytes_moved >= backup_bytes,
        "{} bytes paced for a {backup_bytes}-byte backup",
        after.bytes_moved - before.bytes_moved
    );
    assert!(after.waited > before.waited);
}
