//! Latency histograms in microseconds, from 1 µs to one hour at 3 significant digits:
//! publish→confirm, and end to end both from the intended send time (free of coordinated
//! omission under a target rate) and from the actual send time.

use hdrhistogram::Histogram;

pub use super::MAX_US;

/// One task's latency histograms.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Latencies {
    /// Publish → broker confirm.
    #[serde(with = "super::histogram_text")]
    pub confirm_us: Histogram<u64>,
    /// Intended send time (the schedule) → delivery.
    #[serde(with = "super::histogram_text")]
    pub e2e_intended_us: Histogram<u64>,
    /// Actual send time → delivery.
    #[serde(with = "super::histogram_text")]
    pub e2e_sent_us: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            confirm_us: histogram(),
            e2e_intended_us: histogram(),
            e2e_sent_us: histogram(),
        }
    }
}

impl Latencies {
    /// Records one publish→confirm latency.
    #[inline]
    pub fn record_confirm(&mut self, sent_ns: u64, confirmed_ns: u64) {
        self.confirm_us
            .saturating_record(micros(sent_ns, confirmed_ns));
    }

    /// Records one delivery's end-to-end latencies.
    #[inline]
    pub fn record_delivery(&mut self, intended_ns: u64, sent_ns: u64, delivered_ns: u64) {
        self.e2e_intended_us
            .saturating_record(micros(intended_ns, delivered_ns));
        self.e2e_sent_us
            .saturating_record(micros(sent_ns, delivered_ns));
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.confirm_us.is_empty() && self.e2e_intended_us.is_empty() && self.e2e_sent_us.is_empty()
    }

    /// Adds another task's histograms (exact: counts add bucket by bucket).
    pub fn add(&mut self, other: &Latencies) {
        for (mine, theirs) in [
            (&mut self.confirm_us, &other.confirm_us),
            (&mut self.e2e_intended_us, &other.e2e_intended_us),
            (&mut self.e2e_sent_us, &other.e2e_sent_us),
        ] {
            mine.add(theirs)
                .expect("histograms with the same bounds add");
        }
    }
}

/// Whole microseconds from `from` to `to` (at least 1, so the histogram takes it).
#[inline]
fn micros(from: u64, to: u64) -> u64 {
    (to.saturating_sub(from) / 1_000).clamp(1, MAX_US)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_histograms_equal_one_fed_everything() {
        let mut all = Latencies::default();
        let mut parts = [
            Latencies::default(),
            Latencies::default(),
            Latencies::default(),
        ];
        for i in 0..30_000u64 {
            let delay = (i * 7919) % 50_000_000;
            all.record_delivery(0, 1_000, delay);
            parts[(i % 3) as usize].record_delivery(0, 1_000, delay);
        }
        let mut merged = Latencies::default();
        for part in &parts {
            merged.add(part);
        }
        assert_eq!(merged.e2e_intended_us.len(), all.e2e_intended_us.len());
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                merged.e2e_intended_us.value_at_quantile(q),
                all.e2e_intended_us.value_at_quantile(q)
            );
            assert_eq!(
                merged.e2e_sent_us.value_at_quantile(q),
                all.e2e_sent_us.value_at_quantile(q)
            );
        }
    }
}
