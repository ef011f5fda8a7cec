//! Open-loop load generation and latency statistics for the benches.
//!
//! Operations are issued on a fixed schedule (operation `i` is due at `start + i / rate`),
//! whatever happened to the ones before, and each latency is measured from the operation's
//! scheduled time, not from when a worker got round to it. A stall therefore counts against
//! every operation it delayed (no coordinated omission).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// One completed operation.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was scheduled, since the load started.
    pub at: Duration,
    /// From its scheduled time to its completion.
    pub latency: Duration,
    /// Whether it failed.
    pub failed: bool,
}

/// Latency figures over a set of samples, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LatencyStats {
    /// Operations counted.
    pub n_ops: u64,
    /// Operations that failed.
    pub n_failed: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl LatencyStats {
    /// Statistics of the samples scheduled in `[from, to)`.
    pub fn of_window(samples: &[Sample], from: Duration, to: Duration) -> LatencyStats {
        Self::of(samples.iter().filter(|s| s.at >= from && s.at < to))
    }

    /// Statistics of `samples`.
    pub fn of<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> LatencyStats {
        let mut histogram =
            Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds");
        let mut n_failed = 0;
        for sample in samples {
            histogram.saturating_record((sample.latency.as_micros() as u64).max(1));
            n_failed += u64::from(sample.failed);
        }
        if histogram.is_empty() {
            return LatencyStats::default();
        }
        LatencyStats {
            n_ops: histogram.len(),
            n_failed,
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

/// What the controlling thread of [`open_loop`] sees of the running load.
#[derive(Debug)]
pub struct Probe<'a> {
    /// When operation 0 was due.
    pub start: Instant,
    last_latency_us: &'a AtomicU64,
}

impl Probe<'_> {
    /// Wait at least `at_least`, then until an operation completes within `caught_up` of its
    /// schedule (the client keeps up), for at most `at_most` in all.
    pub fn warm_up(&self, at_least: Duration, caught_up: Duration, at_most: Duration) {
        let started = Instant::now();
        std::thread::sleep(at_least);
        while started.elapsed() < at_most
            && self.last_latency_us.load(Ordering::Relaxed) > caught_up.as_micros() as u64
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Run `op(i)` for `i = 0, 1, ...` at `rate` operations per second on `n_workers` threads
/// while `control` runs on the calling thread; stop issuing once `control` returns. Returns
/// what `control` returned and every sample.
pub fn open_loop<R>(
    rate: f64,
    n_workers: usize,
    op: &(dyn Fn(u64) -> bool + Sync),
    control: impl FnOnce(&Probe<'_>) -> R,
) -> (R, Vec<Sample>) {
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let last_latency_us = AtomicU64::new(u64::MAX);
    let samples = Mutex::new(Vec::new());
    let start = Instant::now();
    let result = std::thread::scope(|scope| {
        for _ in 0..n_workers {
            scope.spawn(|| {
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let ok = op(i);
                    let latency = due.elapsed();
                    last_latency_us.store(latency.as_micros() as u64, Ordering::Relaxed);
                    mine.push(Sample {
                        at: due - start,
                        latency,
                        failed: !ok,
                    });
                }
                samples
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(mine);
            });
        }
        let result = control(&Probe {
            start,
            last_latency_us: &last_latency_us,
        });
        stop.store(true, Ordering::Relaxed);
        result
    });
    let mut samples = samples.into_inner().unwrap_or_else(|p| p.into_inner());
    samples.sort_by_key(|s| s.at);
    (result, samples)
}

/// A cheap, well-mixed 64-bit hash (splitmix64), for keys and per-operation choices.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The key of record `index` of a bench table: 16 bytes, spread over the key space so that
/// inserting records in index order fills the table in random key order.
pub fn bench_key(index: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&mix(index).to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// A value of `size` bytes derived from `seed` (printable, not all alike).
pub fn bench_value(seed: u64, size: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ";
    let mut out = Vec::with_capacity(size);
    let mut state = seed;
    while out.len() < size {
        state = mix(state);
        for byte in state.to_le_bytes() {
            if out.len() == size {
                break;
            }
            out.push(ALPHABET[byte as usize % ALPHABET.len()]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_known_latencies() {
        let samples: Vec<Sample> = (1..=1000)
            .map(|i| Sample {
                at: Duration::from_millis(i),
                latency: Duration::from_micros(i),
                failed: i == 7,
            })
            .collect();
        let stats = LatencyStats::of(&samples);
        assert_eq!(stats.n_ops, 1000);
        assert_eq!(stats.n_failed, 1);
        assert_eq!(stats.max_us, 1000);
        assert!((495..=505).contains(&stats.p50_us), "{stats:?}");
        assert!((985..=995).contains(&stats.p99_us), "{stats:?}");
        let window = LatencyStats::of_window(
            &samples,
            Duration::from_millis(101),
            Duration::from_millis(201),
        );
        assert_eq!(window.n_ops, 100);
        assert_eq!(window.max_us, 200);
    }

    #[test]
    fn empty_window_is_zero() {
        assert_eq!(
            LatencyStats::of_window(&[], Duration::ZERO, Duration::MAX).n_ops,
            0
        );
    }

    #[test]
    fn open_loop_keeps_its_schedule_through_a_stall() {
        // 1000 ops/s; op 10 stalls 50 ms on a single worker: the ops due during the stall
        // show the delay they suffered.
        let op = |i: u64| {
            if i == 10 {
                std::thread::sleep(Duration::from_millis(50));
            }
            true
        };
        let (_, samples) = open_loop(1000.0, 1, &op, |_| {
            std::thread::sleep(Duration::from_millis(300))
        });
        let delayed = samples
            .iter()
            .filter(|s| s.latency >= Duration::from_millis(20))
            .count();
        assert!(delayed >= 10, "only {delayed} ops saw the stall");
    }

    #[test]
    fn last_io_is_the_last_point_that_moved_bytes() {
        let point = |ms: u64, bytes_moved: u64| PacePoint {
            at: Duration::from_millis(ms),
            rate: None,
            bytes_moved,
        };
        let points = [point(0, 0), point(50, 10), point(100, 30), point(150, 30)];
        assert_eq!(last_io(&points), Some(Duration::from_millis(100)));
        assert_eq!(last_io(&points[..1]), None);
        assert_eq!(last_io(&[point(0, 5), point(50, 5)]), None);
    }

    #[test]
    fn keys_are_distinct_and_values_sized() {
        let keys: std::collections::BTreeSet<_> = (0..10_000).map(bench_key).collect();
        assert_eq!(keys.len(), 10_000);
        assert_eq!(bench_value(3, 200).len(), 200);
        assert_ne!(bench_value(3, 200), bench_value(4, 200));
    }
}

/// The pace of a maintenance I/O pacer at one instant of a run.
#[derive(Debug, Clone, Copy)]
pub struct PacePoint {
    /// Since the load started.
    pub at: Duration,
    /// Bytes per second; `None` when unpaced.
    pub rate: Option<u64>,
    /// Bytes moved through the pacer so far.
    pub bytes_moved: u64,
}

/// The last instant at which the pacer had moved bytes since the point before: when the
/// maintenance I/O (the copy, the freeing of a replaced file) ended, as far as `points` see.
pub fn last_io(points: &[PacePoint]) -> Option<Duration> {
    points
        .windows(2)
        .rev()
        .find(|w| w[1].bytes_moved > w[0].bytes_moved)
        .map(|w| w[1].at)
}

/// Every [`PACE_PERIOD`] while `f` runs, what `pacer` paces at.
pub fn record_pace<R>(
    pacer: &store_core::Pacer,
    start: Instant,
    f: impl FnOnce() -> R,
) -> (R, Vec<PacePoint>) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut points = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let stats = pacer.stats();
                points.push(PacePoint {
                    at: start.elapsed(),
                    rate: stats.rate_bytes_per_s,
                    bytes_moved: stats.bytes_moved,
                });
                std::thread::sleep(PACE_PERIOD);
            }
            points
        });
        let result = f();
        stop.store(true, Ordering::Relaxed);
        let points = sampler.join().unwrap_or_default();
        (result, points)
    })
}

/// Period of [`record_pace`].
pub const PACE_PERIOD: Duration = Duration::from_millis(50);
