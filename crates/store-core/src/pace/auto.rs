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
//! **Quiet windows.** A baseline learnt before a job started goes stale while the job runs:
//! other processes start building, the page cache cools, and commits get slower for reasons
//! that have nothing to do with the job. Read against the old baseline, that slowness holds
//! the job at its floor for the rest of its run (on a loaded 2-core machine, a 4M-record
//! compaction sat near a 4 MiB/s floor for 63 s while latency stayed 3x). So after every
//! [`PROBE_EVERY`] busy windows the next one is **quiet**: the pacer holds every job until it
//! ends ([`AutoTuner::quiet_until`]), and what its commits show is learnt into the baseline in
//! both directions, with [`PROBE_WEIGHT`]. Slowness the job causes disappears in a quiet
//! window and keeps the job slow; slowness it does not cause stays, and becomes the baseline.
//! A quiet window costs the job one window in `PROBE_EVERY + 1`; none is taken while the
//! tables are idle (nothing to compare then).
//!
//! - no bytes moved in the window (no job runs): the rate holds (a job that starts later
//!   starts at the rate the last one ended at, not at one nothing was judged on);
//! - no commit in the window (the tables are idle while a job runs): the rate doubles;
//! - the window's mean over `mean × SLOW_FACTOR + 2 × spread`, or its slowest commit over
//!   `max × SPIKE_FACTOR` (each plus a little slack): commits got slower, the rate is cut to
//!   [`BACK_OFF`] of itself, or further, in proportion, when they are far over that mark;
//! - both under the baseline plus half those margins: the rate grows by [`SPEED_UP`];
//! - in between: the rate holds.
//!
//! The rate stays within [`MIN_RATE`] and [`MAX_RATE`] (disk speed and beyond: no wait left to
//! speak of). The floor is what a job is owed however busy the tables are: at 16 MiB/s, with
//! the quiet windows, the copy of a 4M-record table of the bench (about 430 MB of live
//! records, a 570 MB file) is paced for at most about 30 s, inside the 60 s issue 13 allows
//! (it took 21 s at `auto` on a loaded 2-core machine, the pace mostly at the floor).

use std::time::Duration;

/// Length of one measurement window.
pub const WINDOW: Duration = Duration::from_millis(200);
/// Slowest `auto` rate, bytes per second (see the module doc).
pub const MIN_RATE: f64 = (16 << 20) as f64;
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
/// Busy windows between two quiet ones.
pub const PROBE_EVERY: u32 = 9;
/// Weight of a quiet window in the baseline: the freshest measure of the tables alone.
const PROBE_WEIGHT: f64 = 0.5;

/// The controller's state.
#[derive(Debug, Clone)]
pub(super) struct AutoTuner {
    /// Current rate, bytes per second.
    rate: f64,
    /// What windows look like without maintenance (none until a window was measured).
    baseline: Option<Baseline>,
    /// The window being measured.
    window: Window,
    /// Busy windows since the last quiet one.
    busy_since_quiet: u32,
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
    /// Move towards what window `w` saw, each figure by `weight`; with `only_down`, only the
    /// figures `w` is under.
    fn learn(&mut self, mean: f64, w: &Window, weight: f64, only_down: bool) {
        let toward = |figure: &mut f64, seen: f64| {
            if !only_down || seen < *figure {
                *figure += weight * (seen - *figure);
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
    /// A quiet window: the jobs are held until it ends.
    quiet: bool,
}

impl Window {
    fn new(start: Duration) -> Window {
        Window {
            start,
            n_commits: 0,
            sum: 0.0,
            max: 0.0,
            busy: false,
            quiet: false,
        }
    }
}

impl AutoTuner {
    pub(super) fn new(now: Duration) -> AutoTuner {
        AutoTuner {
            rate: START_RATE,
            baseline: None,
            window: Window::new(now),
            busy_since_quiet: 0,
        }
    }

    /// The end of the quiet window `now` is in, if it is in one: jobs wait until then.
    pub(super) fn quiet_until(&mut self, now: Duration) -> Option<Duration> {
        self.roll(now);
        self.window.quiet.then_some(self.window.start + WINDOW)
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

    /// Maintenance moved bytes at `now` (never called in a quiet window: the bytes of a job
    /// held there were moved before it began).
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
            if ended.busy && ended.n_commits > 0 {
                self.busy_since_quiet += 1;
                if self.busy_since_quiet >= PROBE_EVERY {
                    self.busy_since_quiet = 0;
                    self.window.quiet = true;
                }
            }
            if self.rate >= MAX_RATE && now.saturating_sub(next) >= WINDOW {
                self.window = Window::new(now);
            }
        }
    }

    fn judge(&mut self, w: &Window) {
        if w.n_commits == 0 {
            if w.busy {
                self.rate = (self.rate * 2.0).min(MAX_RATE);
            }
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
        if w.quiet {
            // The tables alone, as they are now: the baseline follows, both ways.
            b.learn(mean, w, PROBE_WEIGHT, false);
            self.baseline = Some(b);
            return;
        }
        // Judged against the baseline as it was before this window.
        let slow_mean = b.mean * SLOW_FACTOR + 2.0 * b.spread + SLACK;
        let slow_max = b.max * SPIKE_FACTOR + SPIKE_SLACK;
        b.learn(mean, w, BASELINE_WEIGHT, w.busy);
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
