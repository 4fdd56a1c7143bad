//! A Prometheus histogram built from warren's HdrHistogram seconds: the tasks record
//! latencies in microseconds as always, and each second's histogram is added here bucket
//! by bucket when the coordinator receives it, so serving metrics adds nothing to the
//! publish, confirm or deliver path.

use hdrhistogram::Histogram;

/// Upper bounds of the buckets, in seconds: 100 µs to 60 s, about three to a decade.
pub const BOUNDS_S: [f64; 19] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 20.0, 30.0, 60.0,
];

/// Cumulative counts of one latency, in the buckets of [`BOUNDS_S`] and one above them.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyBuckets {
    /// Observations per bucket (not cumulative); the last is above 60 s.
    counts: [u64; BOUNDS_S.len() + 1],
    /// Sum of the observations, in seconds.
    sum_s: f64,
    count: u64,
}

impl Default for LatencyBuckets {
    fn default() -> Self {
        Self {
            counts: [0; BOUNDS_S.len() + 1],
            sum_s: 0.0,
            count: 0,
        }
    }
}

impl LatencyBuckets {
    /// Adds every value of `histogram` (microseconds). A value is placed by the highest
    /// value its HdrHistogram bucket stands for, so a bucket's `le` is never exceeded.
    pub fn add(&mut self, histogram: &Histogram<u64>) {
        for value in histogram.iter_recorded() {
            let us = value.value_iterated_to();
            let n = value.count_at_value();
            let seconds = us as f64 / 1e6;
            let index = BOUNDS_S.partition_point(|&bound| bound < seconds);
            self.counts[index] += n;
            self.sum_s += seconds * n as f64;
            self.count += n;
        }
    }

    /// How many observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of the observations, in seconds.
    pub fn sum_s(&self) -> f64 {
        self.sum_s
    }

    /// (upper bound, observations in that bucket alone), the last bound +Inf: what the
    /// OpenMetrics encoder takes.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        BOUNDS_S
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values_us: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
        for &v in values_us {
            h.record(v).expect("in range");
        }
        h
    }

    #[test]
    fn values_land_in_the_bucket_of_their_upper_bound() {
        let mut buckets = LatencyBuckets::default();
        // 50 µs and exactly 100 µs: first bucket; 1.5 ms: le 0.0025; 90 s: above 60 s.
        buckets.add(&histogram(&[50, 100, 1_500, 90_000_000]));
        let b = buckets.buckets();
        assert_eq!(b[0], (0.0001, 2));
        assert_eq!(b[4], (0.0025, 1));
        assert_eq!(b[BOUNDS_S.len()], (f64::INFINITY, 1));
        assert_eq!(buckets.count(), 4);
        assert_eq!(b.iter().map(|(_, n)| n).sum::<u64>(), 4);
        assert!(
            (buckets.sum_s() - 90.00165).abs() < 0.1,
            "{}",
            buckets.sum_s()
        );
    }

    #[test]
    fn seconds_add_up() {
        let mut buckets = LatencyBuckets::default();
        buckets.add(&histogram(&[2_000; 10]));
        buckets.add(&histogram(&[2_000; 5]));
        assert_eq!(buckets.buckets()[4], (0.0025, 15));
        assert_eq!(buckets.count(), 15);
    }
}
