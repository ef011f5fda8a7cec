//! The maintenance lock: at most one maintenance operation (a compaction run, a backup run, a
//! restore) at a time, in this process. Every operation takes it for its whole length, through
//! [`OpLock`] only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

/// The lock itself, held by the [`crate::Maintainer`], and whether it is held (for readers
/// that must not wait on it).
#[derive(Debug, Default)]
pub(crate) struct OpLock(Mutex<()>, AtomicBool);

/// Held while a maintenance operation runs; dropping it lets the next one start.
#[derive(Debug)]
pub(crate) struct OpGuard<'a> {
    _held: MutexGuard<'a, ()>,
    flag: &'a AtomicBool,
}

impl Drop for OpGuard<'_> {
    fn drop(&mut self) {
        self.flag.store(false, Ordering::SeqCst);
    }
}

/// Another maintenance operation holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy;

impl OpLock {
    /// Wait for the lock. A poisoned lock is taken anyway: it guards no data, only exclusion.
    pub(crate) fn wait(&self) -> OpGuard<'_> {
        self.guard(self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn guard<'a>(&'a self, held: MutexGuard<'a, ()>) -> OpGuard<'a> {
        self.1.store(true, Ordering::SeqCst);
        OpGuard {
            _held: held,
            flag: &self.1,
        }
    }

    /// Whether an operation holds the lock now (never waits).
    pub(crate) fn is_held(&self) -> bool {
        self.1.load(Ordering::SeqCst)
    }

    /// Take the lock if no operation holds it.
    pub(crate) fn try_take(&self) -> Result<OpGuard<'_>, Busy> {
        match self.0.try_lock() {
            Ok(held) => Ok(self.guard(held)),
            Err(TryLockError::Poisoned(p)) => Ok(self.guard(p.into_inner())),
            Err(TryLockError::WouldBlock) => Err(Busy),
        }
    }

    /// [`OpLock::wait`] when `wait`, [`OpLock::try_take`] otherwise (the requests' `wait`
    /// option).
    pub(crate) fn take(&self, wait: bool) -> Result<OpGuard<'_>, Busy> {
        if wait {
            Ok(self.wait())
        } else {
            self.try_take()
        }
    }
}
