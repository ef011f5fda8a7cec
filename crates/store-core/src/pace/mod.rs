//! The one I/O pacer of the maintenance jobs that move many bytes (online compaction's copy
//! and catch-up, backups, backup verification, freeing a replaced file, scrubs, off-site
//! uploads): a token bucket at [`IoRate`], shared as an `Arc<Pacer>`.
//!
//! A job calls [`Pacer::pace`] with the bytes it just read or wrote; the call sleeps as long
//! as the rate asks. The owner threads call [`Pacer::observe_commit`] with each commit's
//! latency, which is what the `auto` rate feeds on (`auto.rs`): the jobs slow down as soon as
//! the tables' commits get slower than their baseline, and run at disk speed while they do
//! not (or while nothing commits at all). Now and then `auto` holds the jobs for one short
//! quiet window, to measure that baseline afresh (a machine slower for everyone is not the
//! jobs' doing).
//!
//! ```
//! use store_core::pace::{IoRate, Pacer};
//!
//! let pacer = Pacer::new("64MiB/s".parse().unwrap());
//! pacer.pace(1 << 20); // sleeps about 16 ms once the first burst is spent
//! assert_eq!(pacer.stats().bytes_moved, 1 << 20);
//! assert_eq!(pacer.stats().mode, IoRate::Fixed((64u64 << 20).try_into().unwrap()));
//! ```

mod auto;
mod rate;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use auto::AutoTuner;
pub use rate::{IoRate, IoRateError, format_bytes, parse_bytes};

/// Bytes a job may move at once without waiting, in time at the current rate: what an idle
/// bucket holds. Short, so that pacing stays smooth, not bursty.
const BURST: Duration = Duration::from_millis(20);
/// Waits shorter than this are not slept (the debt is kept and paid with the next one).
const MIN_SLEEP: Duration = Duration::from_millis(1);
/// A job is reported as running while it moved bytes this recently.
const ACTIVE: Duration = Duration::from_secs(1);

/// Where the pacer reads the time and sleeps: the real clock, or a fake one in tests.
pub(crate) trait Clock: Send + Sync + fmt::Debug {
    /// Time since an arbitrary origin, never going back.
    fn now(&self) -> Duration;
    /// Block for `d`.
    fn sleep(&self, d: Duration);
}

/// The monotonic clock of the machine.
#[derive(Debug)]
struct SystemClock(Instant);

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// What [`Pacer::stats`] reads out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacerStats {
    /// The configured mode.
    pub mode: IoRate,
    /// The rate jobs are paced at now, bytes per second; `None` when unpaced.
    pub rate_bytes_per_s: Option<u64>,
    /// Bytes the jobs moved through the pacer since it was made.
    pub bytes_moved: u64,
    /// Time the jobs spent waiting for the pacer since it was made.
    pub waited: Duration,
    /// Commits the owners reported.
    pub n_commits: u64,
    /// The `auto` mode's baseline commit latency, once measured.
    pub baseline_commit: Option<Duration>,
    /// A job moved bytes within the last second.
    pub active: bool,
}

/// The shared I/O pacer. See the module doc.
pub struct Pacer {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    mode: IoRate,
    tuner: AutoTuner,
    /// Clock time at which the bytes granted so far are paid for.
    paid_until: Duration,
    bytes_moved: u64,
    waited: Duration,
    n_commits: u64,
    last_bytes: Option<Duration>,
}

impl fmt::Debug for Pacer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pacer")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for Pacer {
    fn default() -> Pacer {
        Pacer::new(IoRate::Auto)
    }
}

impl Pacer {
    /// A pacer at `mode`, on the machine's clock.
    pub fn new(mode: IoRate) -> Pacer {
        Pacer::with_clock(mode, Arc::new(SystemClock(Instant::now())))
    }

    /// A pacer on `clock` (tests pass a fake one).
    pub(crate) fn with_clock(mode: IoRate, clock: Arc<dyn Clock>) -> Pacer {
        let now = clock.now();
        Pacer {
            state: Mutex::new(State {
                mode,
                tuner: AutoTuner::new(now),
                paid_until: now,
                bytes_moved: 0,
                waited: Duration::ZERO,
                n_commits: 0,
                last_bytes: None,
            }),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Change the mode (the maintenance config sets it).
    pub fn set_mode(&self, mode: IoRate) {
        self.lock().mode = mode;
    }

    /// A job just moved `bytes` (read or written): wait as long as the rate asks, and return
    /// the time waited. Any thread may call it; jobs running together share the rate.
    pub fn pace(&self, bytes: u64) -> Duration {
        let wait = {
            let mut s = self.lock();
            let now = self.clock.now();
            s.bytes_moved += bytes;
            s.last_bytes = Some(now);
            let quiet_until = match s.mode {
                IoRate::Auto => s.tuner.quiet_until(now),
                IoRate::Fixed(_) | IoRate::Unlimited => None,
            };
            if quiet_until.is_none() {
                s.tuner.on_bytes(now);
            }
            match s.rate(now) {
                None => {
                    s.paid_until = now;
                    Duration::ZERO
                }
                Some(rate) => {
                    // In a quiet window the job goes on once it ends, with no burst saved up.
                    let start = match quiet_until {
                        Some(end) => s.paid_until.max(end),
                        None => s.paid_until.max(now.saturating_sub(BURST)),
                    };
                    s.paid_until = start + Duration::from_secs_f64(bytes as f64 / rate);
                    s.paid_until.saturating_sub(now)
                }
            }
        };
        if wait < MIN_SLEEP {
            return Duration::ZERO;
        }
        self.clock.sleep(wait);
        self.lock().waited += wait;
        wait
    }

    /// An owner's commit took `latency`; `auto` paces by these.
    pub fn observe_commit(&self, latency: Duration) {
        let mut s = self.lock();
        let now = self.clock.now();
        s.n_commits += 1;
        s.tuner.on_commit(now, latency);
    }

    /// The current pace and what the pacer has done so far.
    pub fn stats(&self) -> PacerStats {
        let mut s = self.lock();
        let now = self.clock.now();
        PacerStats {
            mode: s.mode,
            rate_bytes_per_s: s.rate(now).map(|r| r as u64),
            bytes_moved: s.bytes_moved,
            waited: s.waited,
            n_commits: s.n_commits,
            baseline_commit: s.tuner.baseline(),
            active: s.last_bytes.is_some_and(|t| now.saturating_sub(t) < ACTIVE),
        }
    }
}

impl State {
    /// Bytes per second at `now`, `None` when unpaced.
    fn rate(&mut self, now: Duration) -> Option<f64> {
        match self.mode {
            IoRate::Unlimited => None,
            IoRate::Fixed(bytes) => Some(bytes.get() as f64),
            IoRate::Auto => Some(self.tuner.rate(now)),
        }
    }
}
