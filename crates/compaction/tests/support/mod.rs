//! Helpers shared by the compaction crate's tests: opening a data dir (plainly, or as the
//! daemon opens it, with reports and automatic recovery), reading and writing a table, taking
//! a backup, and damaging files.

// Each test file uses its own subset of these.
#![allow(dead_code)]

pub mod moto;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use compaction::recovery::AutoRecovery;
use compaction::{BackupOptions, BackupRun, BackupTrigger, Maintainer, MaintenanceConfig};
use crossbeam_channel::Receiver;
use store_core::KeyRange;
use store_owners::{OwnerHandle, Stores, StoresOptions};

/// Open the tables of `data` with default options (no integrity check at open, no reports).
pub fn open(data: &Path, config: MaintenanceConfig) -> Arc<Maintainer> {
    let stores = Stores::open(data, StoresOptions::default()).expect("open stores");
    Arc::new(Maintainer::new(Arc::new(stores), config))
}

/// Tables opened as the daemon opens them: integrity checked at open, and every table that
/// needs a restore reported on `reports`.
pub struct Hub {
    pub maintainer: Arc<Maintainer>,
    pub reports: Receiver<&'static str>,
}

/// Open `data` as the daemon does (see [`Hub`]), without automatic recovery.
pub fn open_hub(data: &Path, config: MaintenanceConfig) -> Hub {
    let (tx, reports) = crossbeam_channel::unbounded();
    let options = StoresOptions {
        check_integrity_on_open: true,
        corruption_reports: Some(tx),
        ..StoresOptions::default()
    };
    let stores = Stores::open(data, options).expect("open stores");
    Hub {
        maintainer: Arc::new(Maintainer::new(Arc::new(stores), config)),
        reports,
    }
}

/// A [`Hub`] whose reports are wired to automatic recovery, as in the daemon.
pub struct RecoveringHub {
    pub maintainer: Arc<Maintainer>,
    _recovery: AutoRecovery,
}

/// Open `data` as the daemon does, automatic recovery running.
pub fn open_recovering(data: &Path, config: MaintenanceConfig) -> RecoveringHub {
    let hub = open_hub(data, config);
    let recovery = hub.maintainer.start_auto_recovery(hub.reports).unwrap();
    RecoveringHub {
        maintainer: hub.maintainer,
        _recovery: recovery,
    }
}

/// The owner of `table`.
pub fn owner<'a>(m: &'a Maintainer, table: &str) -> &'a OwnerHandle {
    m.stores().owner(table).expect("known table")
}

/// Write `k{i:06}` → `value(i)` for every `i` in `keys`, in one write job.
pub fn put_keys(
    m: &Maintainer,
    table: &str,
    keys: Range<usize>,
    value: impl Fn(usize) -> Vec<u8> + Send + 'static,
) {
    owner(m, table)
        .write(move |b| {
            for i in keys.clone() {
                b.put(format!("k{i:06}").as_bytes(), &value(i))?;
            }
            Ok(())
        })
        .expect("write");
}

/// Every record of `table`.
pub fn contents(m: &Maintainer, table: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    owner(m, table)
        .scan(KeyRange::all(), usize::MAX)
        .expect("scan")
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect()
}

/// Back up `table` by hand, waiting for the maintenance lock.
pub fn backup(m: &Maintainer, table: &str) -> BackupRun {
    m.backup_one(
        table,
        BackupOptions {
            trigger: BackupTrigger::Manual,
            wait: true,
        },
    )
    .expect("backup request")
}

/// The file of `table` in `data`.
pub fn table_file(data: &Path, table: &str) -> PathBuf {
    data.join(format!("{table}.redb"))
}

/// What the quarantine of `data` holds.
pub fn quarantined(data: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(data.join("quarantine")) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// XOR bytes at several offsets spread over the middle of the file, where the data pages are.
pub fn flip_bytes(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read file");
    let len = bytes.len();
    for k in 1..16 {
        let at = len / 4 + k * (len / 2) / 16;
        bytes[at] ^= 0xFF;
    }
    std::fs::write(path, bytes).expect("write file");
}

/// A forced compaction of one table, stopped inside its copy while it holds the maintenance
/// lock, until [`HeldCompaction::finish`].
pub struct HeldCompaction {
    release: crossbeam_channel::Sender<()>,
    thread: std::thread::JoinHandle<compaction::CompactionRun>,
}

impl HeldCompaction {
    /// Start the compaction of `table` and return once it holds the lock.
    pub fn start(m: &Arc<Maintainer>, table: &'static str) -> HeldCompaction {
        use store_owners::{Step, StepHook};
        let (entered_tx, entered) = crossbeam_channel::bounded::<()>(1);
        let (release, released) = crossbeam_channel::bounded::<()>(1);
        let hook = StepHook::new(move |step| {
            if matches!(step, Step::Copied) {
                let _ = entered_tx.send(());
                let _ = released.recv();
            }
            Ok(())
        });
        m.set_compaction_hook(Some(hook));
        let thread = {
            let m = m.clone();
            std::thread::spawn(move || {
                let options = compaction::CompactOptions {
                    force: true,
                    ..compaction::CompactOptions::default()
                };
                m.compact_one(table, options).expect("compaction")
            })
        };
        entered
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("compaction started");
        HeldCompaction { release, thread }
    }

    /// Let the compaction go on and wait for it.
    pub fn finish(self) -> compaction::CompactionRun {
        self.release.send(()).unwrap();
        self.thread.join().unwrap()
    }
}
