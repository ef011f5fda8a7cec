//! The maintenance lock: at most one maintenance operation (a compaction run, a backup run, a
//! restore) at a time, in this process. Every operation takes it for its whole length, through
//! [`OpLock`] only.

use std::sync::{Mutex, MutexGuard, TryLockError};

/// The lock itself, held by the [`crate::Maintainer`].
#[derive(Debug, Default)]
pub(crate) struct OpLock(Mutex<()>);

/// Held while a maintenance operation runs; dropping it lets the next one start.
#[derive(Debug)]
pub(crate) struct OpGuard<'a> {
    _held: MutexGuard<'a, ()>,
}

/// Another maintenance operation holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy;

impl OpLock {
    /// Wait for the lock. A poisoned lock is taken anyway: it guards no data, only exclusion.
    pub(crate) fn wait(&self) -> OpGuard<'_> {
        OpGuard {
            _held: self.0.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Take the lock if no operation holds it.
    pub(crate) fn try_take(&self) -> Result<OpGuard<'_>, Busy> {
        match self.0.try_lock() {
            Ok(held) => Ok(OpGuard { _held: held }),
            Err(TryLockError::Poisoned(p)) => Ok(OpGuard {
                _held: p.into_inner(),
            }),
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
