//! [`CommitLatency`]: the histogram of a table's durable group-commit latencies, kept by its
//! owner without a lock (an atomic add per bucket) and read by anyone as a
//! [`LatencySnapshot`]. The crate only counts; the exposition (Prometheus, OpenMetrics) is
//! the daemon's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the commit-latency buckets, inclusive (a commit of exactly 1 ms counts in
/// the 1 ms bucket), from 0.5 ms to 2.5 s. A commit slower than the last bound counts in one
/// more bucket above it.
pub const COMMIT_LATENCY_BOUNDS: [Duration; 12] = [
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_micros(2_500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2_500),
];

/// Buckets: one per bound, and one above the last bound.
const N_BUCKETS: usize = COMMIT_LATENCY_BOUNDS.len() + 1;

/// The latencies of a table's durable group commits since its owner started. Written only by
/// the owner thread (one add per bucket and one to the sum per commit: no lock, no
/// allocation on the commit path); read by anyone through [`CommitLatency::snapshot`].
#[derive(Debug, Default)]
pub struct CommitLatency {
    /// Commits per bucket, not cumulative: `buckets[i]` counts the latencies above bound
    /// `i - 1` and at or below bound `i`; the last one those above every bound.
    buckets: [AtomicU64; N_BUCKETS],
    /// The sum of every latency counted, in microseconds.
    sum_micros: AtomicU64,
}

/// A [`CommitLatency`] as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// Commits per bucket, not cumulative: one per bound of [`COMMIT_LATENCY_BOUNDS`], in
    /// its order, then the commits slower than every bound.
    pub counts: [u64; N_BUCKETS],
    /// The sum of the latencies counted (to the microsecond). Read apart from `counts`: a
    /// commit counted while the snapshot is taken may be in one and not yet in the other.
    pub sum: Duration,
}

impl CommitLatency {
    /// Count one commit of `latency`.
    pub(crate) fn observe(&self, latency: Duration) {
        let bucket = COMMIT_LATENCY_BOUNDS
            .iter()
            .position(|bound| latency <= *bound)
            .unwrap_or(N_BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The counts and the sum now.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            counts: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum: Duration::from_micros(self.sum_micros.load(Ordering::Relaxed)),
        }
    }
}

impl LatencySnapshot {
    /// Commits counted: the sum of the buckets, so that it always agrees with them (a
    /// separate counter, read a moment apart, could be one ahead of the buckets).
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Each bucket's upper bound (`None` for the one above every bound) and its count, not
    /// cumulative, in ascending order of bounds.
    pub fn buckets(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        COMMIT_LATENCY_BOUNDS
            .iter()
            .map(|bound| Some(*bound))
            .chain([None])
            .zip(self.counts.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::{COMMIT_LATENCY_BOUNDS, CommitLatency};

    /// The model: a latency counts in the first bucket whose bound is at least it, cumulative
    /// counts are "how many at or below this bound", and the sum is the plain sum.
    fn model_cumulative(latencies: &[Duration]) -> Vec<u64> {
        COMMIT_LATENCY_BOUNDS
            .iter()
            .map(|bound| latencies.iter().filter(|l| *l <= bound).count() as u64)
            .chain([latencies.len() as u64])
            .collect()
    }

    #[test]
    fn a_latency_on_a_bound_counts_in_that_bucket_and_one_above_every_bound_in_the_last() {
        let histogram = CommitLatency::default();
        histogram.observe(Duration::from_millis(1));
        histogram.observe(Duration::from_nanos(1_000_001));
        histogram.observe(Duration::ZERO);
        histogram.observe(Duration::from_secs(3));
        let snapshot = histogram.snapshot();
        let mut expected = [0; COMMIT_LATENCY_BOUNDS.len() + 1];
        expected[0] = 1; // zero
        expected[1] = 1; // exactly 1 ms
        expected[2] = 1; // just over 1 ms
        expected[COMMIT_LATENCY_BOUNDS.len()] = 1; // 3 s
        assert_eq!(snapshot.counts, expected);
        assert_eq!(snapshot.count(), 4);
        // Each latency is summed in whole microseconds: the nanosecond over 1 ms is dropped.
        assert_eq!(snapshot.sum, Duration::from_micros(3_002_000));
        let bounds: Vec<_> = snapshot.buckets().map(|(bound, _)| bound).collect();
        assert_eq!(bounds.first(), Some(&Some(Duration::from_micros(500))));
        assert_eq!(bounds.last(), Some(&None));
    }

    proptest! {
        #[test]
        fn buckets_sum_and_count_follow_the_model(
            micros in proptest::collection::vec(0u64..4_000_000, 0..200)
        ) {
            let latencies: Vec<Duration> =
                micros.iter().map(|m| Duration::from_micros(*m)).collect();
            let histogram = CommitLatency::default();
            for latency in &latencies {
                histogram.observe(*latency);
            }
            let snapshot = histogram.snapshot();
            let cumulative: Vec<u64> = snapshot
                .buckets()
                .scan(0, |total, (_, n)| {
                    *total += n;
                    Some(*total)
                })
                .collect();
            prop_assert_eq!(cumulative, model_cumulative(&latencies));
            prop_assert_eq!(snapshot.count(), latencies.len() as u64);
            prop_assert_eq!(snapshot.sum, latencies.iter().sum::<Duration>());
        }
    }
}
