//! The pacer on a fake clock, fed made-up commit latencies: nothing here depends on how fast
//! the machine is. The hub and the job share one made-up timeline: the hub commits every
//! [`STEP`] whatever the job does, and the job moves a chunk whenever the pacer lets it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::auto::{MAX_RATE, MIN_RATE, PROBE_EVERY, WINDOW};
use super::{Clock, IoRate, Pacer};

/// Time between two commits of the fake hub.
const STEP: Duration = Duration::from_millis(20);
/// What the fake job moves between two calls to the pacer.
const CHUNK: u64 = 64 << 10;
/// The job's own time to move a chunk (a disk of about 640 MB/s).
const CHUNK_COST: Duration = Duration::from_micros(100);

/// A clock that moves only when told to. A sleep does not move it: it says when the sleeper
/// wakes, and the timeline goes on without it (the hub commits meanwhile).
#[derive(Debug, Default)]
struct FakeClock {
    now: Mutex<Duration>,
    wakes: Mutex<Duration>,
}

impl FakeClock {
    fn advance(&self, d: Duration) {
        *self.now.lock().unwrap() += d;
    }

    fn set(&self, t: Duration) {
        let mut now = self.now.lock().unwrap();
        *now = (*now).max(t);
    }

    fn wakes(&self) -> Duration {
        *self.wakes.lock().unwrap()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap()
    }

    fn sleep(&self, d: Duration) {
        *self.wakes.lock().unwrap() = self.now() + d;
    }
}

fn fake_pacer(mode: IoRate) -> (Arc<FakeClock>, Pacer) {
    let clock = Arc::new(FakeClock::default());
    let pacer = Pacer::with_clock(mode, clock.clone());
    (clock, pacer)
}

fn assert_near(baseline: Option<Duration>, expected: Duration) {
    let baseline = baseline.expect("a baseline was measured");
    let off = baseline.abs_diff(expected);
    assert!(
        off < Duration::from_micros(10),
        "baseline {baseline:?}, expected {expected:?}"
    );
}

fn rate(pacer: &Pacer) -> f64 {
    pacer.stats().rate_bytes_per_s.unwrap() as f64
}

/// Run the fake hub for `windows` measurement windows, one commit every [`STEP`], each taking
/// what `latency` says for a step in which the job moved bytes (`true`) or not. With `job`,
/// the job moves a chunk whenever it is awake. Returns the steps in which the job moved
/// nothing (it was held for all of them).
fn simulate(
    clock: &FakeClock,
    pacer: &Pacer,
    windows: u32,
    job: bool,
    latency: impl Fn(bool) -> Duration,
) -> u32 {
    let steps = windows * (WINDOW.as_millis() / STEP.as_millis()) as u32;
    let mut held = 0;
    for _ in 0..steps {
        let end = clock.now() + STEP;
        let mut moved = false;
        while job && clock.wakes() < end {
            clock.set(clock.wakes());
            moved = true;
            if pacer.pace(CHUNK).is_zero() {
                *clock.wakes.lock().unwrap() = clock.now() + CHUNK_COST;
            }
        }
        clock.set(end);
        held += u32::from(job && !moved);
        pacer.observe_commit(latency(moved));
    }
    held
}

/// [`simulate`] with commits of `latency` whatever the job does.
fn run(clock: &FakeClock, pacer: &Pacer, windows: u32, latency: Duration, job: bool) {
    simulate(clock, pacer, windows, job, |_| latency);
}

#[test]
fn auto_slows_down_when_commits_slow_down_and_speeds_up_when_they_recover() {
    let (clock, pacer) = fake_pacer(IoRate::Auto);
    let normal = Duration::from_millis(2);
    // The hub alone: the baseline is learnt.
    run(&clock, &pacer, 20, normal, false);
    assert_near(pacer.stats().baseline_commit, normal);

    // The job runs and commits stay at their baseline: the rate climbs.
    let before = rate(&pacer);
    run(&clock, &pacer, 10, normal, true);
    let kept = rate(&pacer);
    assert!(kept > before, "{kept} should be above {before}");

    // Commits get three times slower whenever the job moves bytes: the rate falls, window
    // after window, down to the floor, and the job moves fewer bytes per second.
    let job_slows = |moved: bool| if moved { normal * 3 } else { normal };
    let moved = pacer.stats().bytes_moved;
    let from = clock.now();
    simulate(&clock, &pacer, 5, true, job_slows);
    let fast_bytes_per_s =
        (pacer.stats().bytes_moved - moved) as f64 / (clock.now() - from).as_secs_f64();
    let slowed = rate(&pacer);
    assert!(slowed < kept / 4.0, "{slowed} should be far below {kept}");
    simulate(&clock, &pacer, 30, true, job_slows);
    assert_eq!(rate(&pacer), MIN_RATE);
    let moved = pacer.stats().bytes_moved;
    let from = clock.now();
    simulate(&clock, &pacer, 10, true, job_slows);
    let slow_bytes_per_s =
        (pacer.stats().bytes_moved - moved) as f64 / (clock.now() - from).as_secs_f64();
    assert!(
        slow_bytes_per_s < fast_bytes_per_s / 4.0,
        "{slow_bytes_per_s} B/s should be far below {fast_bytes_per_s} B/s"
    );
    assert!(pacer.stats().waited > Duration::ZERO);
    // The interference did not become the new normal (the quiet windows saw at most the
    // chunk a held job had in flight).
    let baseline = pacer.stats().baseline_commit.unwrap();
    assert!(baseline < normal * 3 / 2, "baseline {baseline:?}");

    // Commits recover: the rate climbs back.
    run(&clock, &pacer, 20, normal, true);
    let recovered = rate(&pacer);
    assert!(
        recovered > MIN_RATE * 16.0,
        "{recovered} should have climbed"
    );
}

#[test]
fn a_single_slow_commit_backs_off_and_an_idle_hub_lets_the_job_run_at_full_speed() {
    let (clock, pacer) = fake_pacer(IoRate::Auto);
    let normal = Duration::from_millis(2);
    run(&clock, &pacer, 20, normal, false);
    run(&clock, &pacer, 2, normal, true);
    let before = rate(&pacer);
    // One commit of 30 ms among normal ones.
    clock.advance(WINDOW / 2);
    pacer.observe_commit(Duration::from_millis(30));
    run(&clock, &pacer, 1, normal, true);
    let after = rate(&pacer);
    assert!(after < before, "{after} should be below {before}");

    // No commit at all: the rate doubles per window up to the maximum.
    for _ in 0..64 {
        clock.advance(WINDOW);
        pacer.pace(1 << 20);
    }
    assert_eq!(rate(&pacer), MAX_RATE);
}

#[test]
fn a_fixed_rate_is_kept_and_unlimited_never_waits() {
    let (clock, pacer) = fake_pacer("8MiB/s".parse().unwrap());
    let from = clock.now();
    for _ in 0..64 {
        clock.advance(pacer.pace(1 << 20));
        // Commits, however slow, do not change a fixed rate.
        pacer.observe_commit(Duration::from_secs(1));
    }
    let elapsed = clock.now() - from;
    // 64 MiB at 8 MiB/s: 8 s, less the burst an idle bucket holds.
    assert!(
        elapsed >= Duration::from_millis(7_900) && elapsed <= Duration::from_millis(8_001),
        "{elapsed:?}"
    );
    assert_eq!(pacer.stats().rate_bytes_per_s, Some(8 << 20));

    let (clock, pacer) = fake_pacer(IoRate::Unlimited);
    for _ in 0..64 {
        assert_eq!(pacer.pace(1 << 30), Duration::ZERO);
    }
    assert_eq!(clock.wakes(), Duration::ZERO);
    assert_eq!(pacer.stats().waited, Duration::ZERO);
    assert_eq!(pacer.stats().rate_bytes_per_s, None);
    assert_eq!(pacer.stats().bytes_moved, 64 << 30);
}

#[test]
fn rates_read_and_print() {
    assert_eq!("auto".parse(), Ok(IoRate::Auto));
    assert_eq!("unlimited".parse(), Ok(IoRate::Unlimited));
    let fixed: IoRate = "64MiB/s".parse().unwrap();
    assert_eq!(fixed, IoRate::Fixed((64u64 << 20).try_into().unwrap()));
    assert_eq!(fixed.to_string(), "64MiB/s");
    assert_eq!(
        "100MB/s".parse::<IoRate>().unwrap().to_string(),
        "100000000/s"
    );
    for bad in ["", "fast", "64MiB", "0/s", "64 parsecs/s", "-1/s"] {
        assert!(bad.parse::<IoRate>().is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn a_noisy_hub_is_not_taken_for_one_the_job_slows_down() {
    let (clock, pacer) = fake_pacer(IoRate::Auto);
    let (fast, slow) = (Duration::from_millis(2), Duration::from_millis(4));
    // Without the job, windows alternate between 2 ms and 4 ms commits.
    for _ in 0..20 {
        run(&clock, &pacer, 1, fast, false);
        run(&clock, &pacer, 1, slow, false);
    }
    // The job runs and the hub stays exactly as noisy: the rate never falls.
    let mut previous = rate(&pacer);
    for _ in 0..10 {
        run(&clock, &pacer, 1, fast, true);
        run(&clock, &pacer, 1, slow, true);
        let now = rate(&pacer);
        assert!(now >= previous, "{now} fell below {previous}");
        previous = now;
    }
    // Commits twice as slow as the slow ones are out of that noise: it backs off.
    run(&clock, &pacer, 3, slow * 2, true);
    assert!(
        rate(&pacer) < previous,
        "{} should be below {previous}",
        rate(&pacer)
    );
}

#[test]
fn a_machine_slower_for_everyone_is_not_blamed_on_the_job() {
    let (clock, pacer) = fake_pacer(IoRate::Auto);
    let normal = Duration::from_millis(2);
    run(&clock, &pacer, 20, normal, false);
    run(&clock, &pacer, 10, normal, true);
    let before = rate(&pacer);

    // Something else loads the machine: commits take three times as long, job or no job. The
    // first windows read it as the job's doing and back off...
    let loaded = normal * 3;
    run(&clock, &pacer, 2, loaded, true);
    assert!(rate(&pacer) < before);
    // ...until quiet windows, where the job is held, show the tables as slow without it: the
    // baseline follows and the job gets its speed back.
    run(&clock, &pacer, 20 * (PROBE_EVERY + 1), loaded, true);
    let baseline = pacer.stats().baseline_commit.unwrap();
    assert!(baseline > normal * 2, "baseline {baseline:?}");
    let recovered = rate(&pacer);
    assert!(
        recovered > MIN_RATE * 16.0,
        "{recovered} should have climbed back"
    );
}

#[test]
fn slowness_the_job_causes_keeps_it_slow_through_quiet_windows() {
    let (clock, pacer) = fake_pacer(IoRate::Auto);
    let normal = Duration::from_millis(2);
    run(&clock, &pacer, 20, normal, false);
    // Commits take three times as long in every step the job moves bytes, and are normal
    // in the others (the quiet windows among them).
    let job_slows = |moved: bool| if moved { normal * 3 } else { normal };
    simulate(&clock, &pacer, 20 * (PROBE_EVERY + 1), true, job_slows);
    assert_eq!(rate(&pacer), MIN_RATE);
    let baseline = pacer.stats().baseline_commit.unwrap();
    assert!(baseline < normal * 3 / 2, "baseline {baseline:?}");

    // Quiet windows held the job: one window in every PROBE_EVERY + 1 it moved nothing.
    let held = simulate(&clock, &pacer, 10 * (PROBE_EVERY + 1), true, job_slows);
    let steps_per_window = (WINDOW.as_millis() / STEP.as_millis()) as u32;
    assert!(
        held >= 9 * (steps_per_window - 1),
        "the job was held {held} steps"
    );
}

#[test]
fn a_rate_only_grows_while_a_job_runs() {
    let (clock, pacer) = fake_pacer(IoRate::Auto);
    let start = rate(&pacer);
    // Nothing commits and nothing moves (the tables just opened): nothing to judge.
    clock.advance(WINDOW * 50);
    assert_eq!(rate(&pacer), start);
    // The hub alone, then a job that finds commits slower than the baseline: it starts at
    // the rate it was left at, and backs off from there.
    let normal = Duration::from_millis(2);
    run(&clock, &pacer, 20, normal, false);
    assert_eq!(rate(&pacer), start);
    run(&clock, &pacer, 1, normal * 3, true);
    assert!(rate(&pacer) < start);
}
