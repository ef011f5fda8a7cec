//! [`Progress`]: how far a long job that moves a table's bytes has come, shared between the
//! job, which advances it where it pays those bytes to the [`crate::Pacer`], and whoever
//! watches it (a registry of running operations, a progress bar).
//!
//! A handle is a cheap [`Clone`] over atomics: the job never waits for a reader, and a reader
//! never waits for the job. What a reader gets ([`ProgressReading`]) holds two promises:
//! `bytes_done` never goes down, and it never exceeds `bytes_total`. The total may be an
//! estimate made at the start (then [`ProgressReading::total_estimated`] says so) and be
//! replaced once the real figure is known; an estimate that turns out too small is raised to
//! what is done, so that a bar drawn from a reading never goes past its end.
//!
//! ```
//! use store_core::Progress;
//!
//! let progress = Progress::new("copy");
//! progress.estimate_total(100);
//! progress.advance(60);
//! progress.advance(60); // more than the estimate: the total follows
//! let reading = progress.read();
//! assert_eq!((reading.bytes_done, reading.bytes_total), (120, 120));
//! progress.set_phase("check");
//! progress.set_total(300);
//! assert_eq!(progress.read().phase, "check");
//! assert!(!progress.read().total_estimated);
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The progress of one job. Clones share the same counters.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The counters, shared by the job and its readers.
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Bytes moved so far; only ever added to.
    done: AtomicU64,
    /// Bytes the whole job moves, as far as known; 0 while unknown.
    total: AtomicU64,
    /// Whether `total` is an estimate.
    estimated: AtomicBool,
    /// When the handle was made, which is when the job began.
    started: Instant,
    /// What the job is doing now (`copy`, `check`, `hash`...).
    phase: Mutex<&'static str>,
}

/// One look at a [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressReading {
    /// What the job is doing now.
    pub phase: &'static str,
    /// Bytes moved so far; never more than `bytes_total` when that is known.
    pub bytes_done: u64,
    /// Bytes the job moves in all; 0 while unknown.
    pub bytes_total: u64,
    /// Whether `bytes_total` is an estimate made before the real figure was known.
    pub total_estimated: bool,
    /// Time since the job began.
    pub elapsed: Duration,
}

impl Progress {
    /// A job beginning now, in `phase`, with nothing done and its total unknown.
    pub fn new(phase: &'static str) -> Progress {
        Progress {
            inner: Arc::new(Inner {
                done: AtomicU64::new(0),
                total: AtomicU64::new(0),
                estimated: AtomicBool::new(false),
                started: Instant::now(),
                phase: Mutex::new(phase),
            }),
        }
    }

    /// `bytes` more are moved.
    pub fn advance(&self, bytes: u64) {
        self.inner.done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The job moves `bytes` in all (exact: no longer an estimate).
    pub fn set_total(&self, bytes: u64) {
        self.inner.total.store(bytes, Ordering::Relaxed);
        self.inner.estimated.store(false, Ordering::Relaxed);
    }

    /// The job moves about `bytes` in all, until [`Progress::set_total`] knows better.
    pub fn estimate_total(&self, bytes: u64) {
        self.inner.total.store(bytes, Ordering::Relaxed);
        self.inner.estimated.store(true, Ordering::Relaxed);
    }

    /// The job goes on to `phase`; what is done so far stays counted.
    pub fn set_phase(&self, phase: &'static str) {
        *self.inner.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase;
    }

    /// How far the job has come.
    pub fn read(&self) -> ProgressReading {
        let phase = *self.inner.phase.lock().unwrap_or_else(|p| p.into_inner());
        let bytes_done = self.inner.done.load(Ordering::Relaxed);
        let total = self.inner.total.load(Ordering::Relaxed);
        // An estimate too small, or a total set while `done` moved on: never past the end.
        let bytes_total = if total == 0 { 0 } else { total.max(bytes_done) };
        ProgressReading {
            phase,
            bytes_done,
            bytes_total,
            total_estimated: self.inner.estimated.load(Ordering::Relaxed),
            elapsed: self.inner.started.elapsed(),
        }
    }
}
