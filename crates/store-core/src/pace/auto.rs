//! The `auto` rate: a feedback controller on the owners' commit latency. It knows no clock of
//! its own: every call says what time it is, so tests drive it with made-up times.
//!
//! Commit latencies are summed over windows of [`WINDOW`]. A window's mean is compared with
//! the **baseline**, the mean commit latency of windows in which maintenance moved no bytes
//! (an average over such windows; while maintenance runs it may only fall, so that the
//! interference it causes never becomes the new normal):
//!
//! - no commit in the window (the tables are idle): the rate doubles;
//! - no bytes moved in the window (no job runs): the rate holds;
//! - mean over `baseline × SLOW_FACTOR + SLACK`, or one commit over
//!   `baseline × SPIKE_FACTOR + SPIKE_SLACK`: the rate is cut to [`BACK_OFF`] of itself;
//! - mean under `baseline × FAST_FACTOR + SLACK`: the rate grows by [`SPEED_UP`];
//! - in between: the rate holds.
//!
//! The rate stays within [`MIN_RATE`] (a job always progresses) and [`MAX_RATE`] (disk speed
//! and beyond: no wait left to speak of).

use std::time::Duration;

/// Length of one measurement window.
pub const WINDOW: Duration = Duration::from_millis(200);
/// Slowest `auto` rate, bytes per second.
pub const MIN_RATE: f64 = (1 << 20) as f64;
/// Fastest `auto` rate, bytes per second.
pub const MAX_RATE: f64 = (4u64 << 30) as f64;
/// Rate of a new controller, bytes per second.
pub const START_RATE: f64 = (32 << 20) as f64;
/// Factor applied to the rate when commits got slower.
pub const BACK_OFF: f64 = 0.5;
/// Factor applied to the rate when commits kept their baseline.
pub const SPEED_UP: f64 = 1.25;
/// A window whose mean is over `baseline × SLOW_FACTOR + SLACK` is slow...
const SLOW_FACTOR: f64 = 1.2;
/// ...one whose mean is under `baseline × FAST_FACTOR + SLACK` leaves room to speed up.
const FAST_FACTOR: f64 = 1.1;
/// Absolute slack on the mean (timer and scheduling noise of a sub-millisecond commit).
const SLACK: f64 = 0.000_2;
/// One commit over `baseline × SPIKE_FACTOR + SPIKE_SLACK` makes a window slow by itself.
const SPIKE_FACTOR: f64 = 3.0;
/// Absolute slack on a single commit.
const SPIKE_SLACK: f64 = 0.002;
/// Weight of a new idle window in the baseline.
const BASELINE_WEIGHT: f64 = 0.2;

/// The controller's state.
#[derive(Debug, Clone)]
pub(super) struct AutoTuner {
    /// Current rate, bytes per second.
    rate: f64,
    /// Mean commit latency without maintenance, seconds (none until a window was measured).
    baseline: Option<f64>,
    /// The window being measured.
    window: Window,
}

/// Commits seen since `start`.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Duration,
    n_commits: u64,
    sum: f64,
    max: f64,
    /// Maintenance moved bytes during the window.
    busy: bool,
}

impl Window {
    fn new(start: Duration) -> Window {
        Window {
            start,
            n_commits: 0,
            sum: 0.0,
            max: 0.0,
            busy: false,
        }
    }
}

impl AutoTuner {
    pub(super) fn new(now: Duration) -> AutoTuner {
        AutoTuner {
            rate: START_RATE,
            baseline: None,
            window: Window::new(now),
        }
    }

    /// The rate to pace at now, bytes per second.
    pub(super) fn rate(&mut self, now: Duration) -> f64 {
        self.roll(now);
        self.rate
    }

    /// The baseline commit latency, when one was measured.
    pub(super) fn baseline(&self) -> Option<Duration> {
        self.baseline.map(Duration::from_secs_f64)
    }

    /// A commit that took `latency` ended at `now`.
    pub(super) fn on_commit(&mut self, now: Duration, latency: Duration) {
        self.roll(now);
        let s = latency.as_secs_f64();
        self.window.n_commits += 1;
        self.window.sum += s;
        self.window.max = self.window.max.max(s);
    }

    /// Maintenance moved bytes at `now`.
    pub(super) fn on_bytes(&mut self, now: Duration) {
        self.roll(now);
        self.window.busy = true;
    }

    /// Close the windows that ended by `now` and adjust the rate after each.
    fn roll(&mut self, now: Duration) {
        while now.saturating_sub(self.window.start) >= WINDOW {
            let ended = self.window;
            self.judge(&ended);
            // Windows that saw nothing at all are skipped in one step: idle time speeds up
            // by one doubling per window, up to the maximum, which a few windows reach.
            let next = ended.start + WINDOW;
            self.window = Window::new(next);
            if self.rate >= MAX_RATE && now.saturating_sub(next) >= WINDOW {
                self.window = Window::new(now);
            }
        }
    }

    fn judge(&mut self, w: &Window) {
        if w.n_commits == 0 {
            self.rate = (self.rate * 2.0).min(MAX_RATE);
            return;
        }
        let mean = w.sum / w.n_commits as f64;
        let baseline = match self.baseline {
            None => {
                self.baseline = Some(mean);
                return;
            }
            Some(b) if !w.busy || mean < b => {
                let b = b + BASELINE_WEIGHT * (mean - b);
                self.baseline = Some(b);
                b
            }
            Some(b) => b,
        };
        if !w.busy {
            // Nothing to judge: the rate is what a job starts at next time.
            return;
        }
        let slow =
            mean > baseline * SLOW_FACTOR + SLACK || w.max > baseline * SPIKE_FACTOR + SPIKE_SLACK;
        if slow {
            self.rate = (self.rate * BACK_OFF).max(MIN_RATE);
        } else if mean < baseline * FAST_FACTOR + SLACK {
            self.rate = (self.rate * SPEED_UP).min(MAX_RATE);
        }
    }
}
