//! The `auto` rate: a feedback controller on the owners' commit latency. It knows no clock of
//! its own: every call says what time it is, so tests drive it with made-up times.
//!
//! Commit latencies are summed over windows of [`WINDOW`]. Each window is compared with the
//! **baseline**, what windows look like while maintenance moves no bytes: the mean commit
//! latency of a window, how far window means stray from it, and a window's slowest commit
//! (averages over such windows; while maintenance runs they may only fall, so that the
//! interference it causes never becomes the new normal). Comparing with the baseline's own
//! spread keeps a noisy machine from being read as one the job slows down.
//!
//! - no commit in the window (the tables are idle): the rate doubles;
//! - no bytes moved in the window (no job runs): the rate holds;
//! - the window's mean over `mean × SLOW_FACTOR + 2 × spread`, or its slowest commit over
//!   `max × SPIKE_FACTOR` (each plus a little slack): commits got slower, the rate is cut to
//!   [`BACK_OFF`] of itself, or further, in proportion, when they are far over that mark;
//! - both under the baseline plus half those margins: the rate grows by [`SPEED_UP`];
//! - in between: the rate holds.
//!
//! The rate stays within [`MIN_RATE`] (a job always progresses) and [`MAX_RATE`] (disk speed
//! and beyond: no wait left to speak of).

use std::time::Duration;

/// Length of one measurement window.
pub const WINDOW: Duration = Duration::from_millis(200);
/// Slowest `auto` rate, bytes per second.
pub const MIN_RATE: f64 = (4 << 20) as f64;
/// Fastest `auto` rate, bytes per second.
pub const MAX_RATE: f64 = (4u64 << 30) as f64;
/// Rate of a new controller, bytes per second.
pub const START_RATE: f64 = (32 << 20) as f64;
/// Factor applied to the rate when commits got slower.
pub const BACK_OFF: f64 = 0.6;
/// Factor applied to the rate when commits kept their baseline.
pub const SPEED_UP: f64 = 1.25;
/// A window whose mean is over `mean × SLOW_FACTOR + 2 × spread + SLACK` is slow.
const SLOW_FACTOR: f64 = 1.2;
/// A window whose slowest commit is over `max × SPIKE_FACTOR + SPIKE_SLACK` is slow.
const SPIKE_FACTOR: f64 = 2.0;
/// Absolute slack on the mean, seconds (timer and scheduling noise of a fast commit).
const SLACK: f64 = 0.000_2;
/// Absolute slack on a window's slowest commit, seconds.
const SPIKE_SLACK: f64 = 0.001;
/// Weight of a new idle window in the baseline.
const BASELINE_WEIGHT: f64 = 0.2;

/// The controller's state.
#[derive(Debug, Clone)]
pub(super) struct AutoTuner {
    /// Current rate, bytes per second.
    rate: f64,
    /// What windows look like without maintenance (none until a window was measured).
    baseline: Option<Baseline>,
    /// The window being measured.
    window: Window,
}

/// Averages over windows in which maintenance moved no bytes, seconds.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    /// A window's mean commit latency.
    mean: f64,
    /// How far a window's mean strays from `mean`.
    spread: f64,
    /// A window's slowest commit.
    max: f64,
}

impl Baseline {
    /// Move towards what window `w` saw, each figure by [`BASELINE_WEIGHT`]; with `only_down`,
    /// only the figures `w` is under.
    fn learn(&mut self, mean: f64, w: &Window, only_down: bool) {
        let toward = |figure: &mut f64, seen: f64| {
            if !only_down || seen < *figure {
                *figure += BASELINE_WEIGHT * (seen - *figure);
            }
        };
        toward(&mut self.spread, (mean - self.mean).abs());
        toward(&mut self.mean, mean);
        toward(&mut self.max, w.max);
    }
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

    /// The baseline mean commit latency, when one was measured.
    pub(super) fn baseline(&self) -> Option<Duration> {
        self.baseline.map(|b| Duration::from_secs_f64(b.mean))
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
            // Once the rate is at its maximum, the idle windows left are skipped in one step.
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
        let Some(mut b) = self.baseline else {
            self.baseline = Some(Baseline {
                mean,
                spread: 0.0,
                max: w.max,
            });
            return;
        };
        // Judged against the baseline as it was before this window.
        let slow_mean = b.mean * SLOW_FACTOR + 2.0 * b.spread + SLACK;
        let slow_max = b.max * SPIKE_FACTOR + SPIKE_SLACK;
        b.learn(mean, w, w.busy);
        self.baseline = Some(b);
        if !w.busy {
            // Nothing to judge: the rate is what a job starts at next time.
            return;
        }
        if mean > slow_mean || w.max > slow_max {
            // Cut at least to BACK_OFF, and further when commits are far over their mark.
            let over = (mean / slow_mean).max(w.max / slow_max);
            self.rate = (self.rate * BACK_OFF.min(1.0 / over)).max(MIN_RATE);
        } else if mean < (b.mean + slow_mean) / 2.0 && w.max < (b.max + slow_max) / 2.0 {
            self.rate = (self.rate * SPEED_UP).min(MAX_RATE);
        }
    }
}
