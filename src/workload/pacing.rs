//! Open-loop pacing and body sizes. Under a target rate, message `i` of a publisher is due
//! at `start + offset + i / rate`, whatever happened to earlier messages: latency measured
//! from that due time shows every stall (no coordinated omission).

use std::time::Duration;

/// When each message of one publisher is due.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Clock reading (ns) when message 0 is due.
    start_ns: u64,
    /// Nanoseconds between messages; unset = as fast as possible.
    interval_ns: Option<f64>,
}

impl Pace {
    /// A pace of `rate` msg/s (or unlimited) starting at `start_ns`.
    pub fn new(start_ns: u64, rate: Option<f64>) -> Self {
        Self {
            start_ns,
            interval_ns: rate.map(|r| 1e9 / r),
        }
    }

    /// When message `i` is due; `None` when unlimited.
    #[inline]
    pub fn due_ns(&self, i: u64) -> Option<u64> {
        self.interval_ns
            .map(|interval| self.start_ns + (i as f64 * interval) as u64)
    }

    /// The offset that spreads `count` publishers of the same rate evenly over one interval.
    pub fn stagger(rate_per_publisher: Option<f64>, index: u32, count: u32) -> Duration {
        match rate_per_publisher {
            Some(rate) if count > 0 => {
                Duration::from_secs_f64(f64::from(index) / f64::from(count) / rate)
            }
            _ => Duration::ZERO,
        }
    }
}

/// Body sizes: fixed, or drawn uniformly from a seeded generator per (producer, sequence
/// number), so a republished copy has the size of the original.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    min: u64,
    max: u64,
    seed: u64,
}

impl Sizes {
    /// Sizes between `min` and `max` bytes inclusive (equal for a fixed size).
    pub fn new(min: u64, max: u64, seed: u64) -> Self {
        Self {
            min,
            max: max.max(min),
            seed,
        }
    }

    /// The size of message `seq` of `producer`.
    #[inline]
    pub fn size(&self, producer: u32, seq: u32) -> usize {
        if self.min == self.max {
            return self.min as usize;
        }
        let span = self.max - self.min + 1;
        (self.min
            + crate::seeded::splitmix(self.seed ^ (u64::from(producer) << 32) ^ u64::from(seq))
                % span) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_follow_the_rate_without_drift() {
        let pace = Pace::new(1_000, Some(1_000.0));
        assert_eq!(pace.due_ns(0), Some(1_000));
        assert_eq!(pace.due_ns(1), Some(1_001_000));
        assert_eq!(pace.due_ns(1_000_000), Some(1_000 + 1_000_000_000_000));
        let third = Pace::new(0, Some(3.0));
        assert_eq!(third.due_ns(3), Some(1_000_000_000));
        assert_eq!(Pace::new(0, None).due_ns(5), None);
    }

    #[test]
    fn publishers_are_spread_over_one_interval() {
        assert_eq!(
            Pace::stagger(Some(100.0), 1, 4),
            Duration::from_micros(2_500)
        );
        assert_eq!(Pace::stagger(None, 1, 4), Duration::ZERO);
    }

    #[test]
    fn sizes_are_uniform_within_bounds_and_repeatable() {
        let sizes = Sizes::new(100, 199, 42);
        let mut seen = [0u32; 100];
        for seq in 0..100_000 {
            let size = sizes.size(3, seq);
            assert!((100..=199).contains(&size));
            assert_eq!(size, sizes.size(3, seq));
            seen[size - 100] += 1;
        }
        assert!(
            seen.iter().all(|n| (800..1200).contains(n)),
            "roughly uniform: {seen:?}"
        );
        assert_eq!(Sizes::new(64, 64, 1).size(0, 9), 64);
    }
}

#[cfg(test)]
mod coordinated_omission {
    use super::Pace;
    use crate::metrics::Latencies;

    /// 1000 msg/s for 10 s on a simulated clock; the broker stalls for 1 s at 5 s, and the
    /// publisher sends what fell due during the stall as soon as it can. Measured from the
    /// intended send time the stall shows in p99; measured from the actual send time (as
    /// tools that stamp after waiting do) it vanishes.
    #[test]
    fn a_stall_shows_in_the_corrected_p99_and_not_in_the_uncorrected_one() {
        let ms = 1_000_000u64;
        let pace = Pace::new(0, Some(1000.0));
        let (stall_from, stall_to) = (5_000 * ms, 6_000 * ms);
        let mut latencies = Latencies::default();
        for i in 0..10_000u64 {
            let due = pace.due_ns(i).unwrap();
            let sent = if (stall_from..stall_to).contains(&due) {
                stall_to
            } else {
                due
            };
            let delivered = sent + ms; // 1 ms through the broker
            latencies.record_delivery(due, sent, delivered);
        }
        let corrected_p99_ms = latencies.e2e_intended_us.value_at_quantile(0.99) as f64 / 1000.0;
        let uncorrected_p99_ms = latencies.e2e_sent_us.value_at_quantile(0.99) as f64 / 1000.0;
        assert!(
            corrected_p99_ms > 800.0,
            "corrected p99 {corrected_p99_ms} ms"
        );
        assert!(
            uncorrected_p99_ms < 2.0,
            "uncorrected p99 {uncorrected_p99_ms} ms"
        );
    }
}
