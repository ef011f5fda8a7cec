//! A `StorageBackend` over redb's `FileBackend` that fails a chosen write or fsync, for tests
//! of what survives an I/O error. Lock methods pass straight through, so the file stays
//! protected against a second opener exactly as with the plain backend.

use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// Which I/O calls fail. Counters are shared, so a test can arm a failure after the file has
/// been opened (and created) successfully.
#[derive(Debug, Default)]
pub struct FaultPlan {
    writes: AtomicU64,
    syncs: AtomicU64,
    fail_write_at: AtomicU64,
    fail_sync_at: AtomicU64,
    failures: AtomicU64,
    sticky: std::sync::atomic::AtomicBool,
    /// Name of the thread each injected fault hit, in order.
    failed_on: std::sync::Mutex<Vec<String>>,
}

const DISARMED: u64 = 0;

impl FaultPlan {
    /// A plan that fails nothing until armed.
    pub fn new() -> Arc<FaultPlan> {
        Arc::new(FaultPlan::default())
    }

    /// Fail the `n`-th write from now (1 = the next one).
    pub fn fail_write_after(&self, n: u64) {
        let at = self.writes.load(Ordering::SeqCst) + n.max(1);
        self.fail_write_at.store(at, Ordering::SeqCst);
    }

    /// Fail the `n`-th fsync from now (1 = the next one).
    pub fn fail_sync_after(&self, n: u64) {
        let at = self.syncs.load(Ordering::SeqCst) + n.max(1);
        self.fail_sync_at.store(at, Ordering::SeqCst);
    }

    /// Once a fault fired, fail every later write and fsync as well (a dead disk).
    pub fn set_sticky(&self, sticky: bool) {
        self.sticky.store(sticky, Ordering::SeqCst);
    }

    /// Stop injecting faults.
    pub fn disarm(&self) {
        self.fail_write_at.store(DISARMED, Ordering::SeqCst);
        self.fail_sync_at.store(DISARMED, Ordering::SeqCst);
        self.sticky.store(false, Ordering::SeqCst);
        self.failures.store(0, Ordering::SeqCst);
        self.failed_on
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The names of the threads the injected faults hit, in order (`"?"` for unnamed ones).
    pub fn failed_threads(&self) -> Vec<String> {
        self.failed_on
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Writes seen so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// fsyncs seen so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// Faults injected so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }

    fn should_fail(&self, counter: &AtomicU64, fail_at: &AtomicU64) -> bool {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let target = fail_at.load(Ordering::SeqCst);
        let hit = (target != DISARMED && n == target)
            || (self.sticky.load(Ordering::SeqCst) && self.failures.load(Ordering::SeqCst) > 0);
        if hit {
            self.failures.fetch_add(1, Ordering::SeqCst);
            let thread = std::thread::current().name().unwrap_or("?").to_string();
            self.failed_on
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(thread);
        }
        hit
    }
}

/// redb's file backend with injected failures.
#[derive(Debug)]
pub struct FaultBackend {
    inner: FileBackend,
    plan: Arc<FaultPlan>,
}

impl FaultBackend {
    /// Wrap `file`, failing calls as `plan` says.
    pub fn new(file: File, plan: Arc<FaultPlan>) -> Result<FaultBackend, redb::DatabaseError> {
        Ok(FaultBackend {
            inner: FileBackend::new(file)?,
            plan,
        })
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

impl StorageBackend for FaultBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        if self
            .plan
            .should_fail(&self.plan.syncs, &self.plan.fail_sync_at)
        {
            return Err(injected("fsync"));
        }
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        if self
            .plan
            .should_fail(&self.plan.writes, &self.plan.fail_write_at)
        {
            return Err(injected("write"));
        }
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
