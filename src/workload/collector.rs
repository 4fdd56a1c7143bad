//! The coordinator's collector of the threads' seconds: it adds them up as they come, for
//! the live progress line, and hands the whole series over at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::live::LiveSink;
use super::{ProgressLine, SecondStats, Totals};
use crate::metrics::series::{Sample, Series};

/// Receives the tasks' seconds as they end.
pub(super) struct Collector {
    series: Series,
    samples: mpsc::UnboundedReceiver<Sample>,
    origin: Instant,
    /// Where `--metrics-listen` reads latencies from, when it is on.
    live: Option<Arc<dyn LiveSink>>,
}

impl Collector {
    /// A collector of `samples`, seconds counted from `origin`, handing latencies on to
    /// `live` as they come.
    pub(super) fn new(
        samples: mpsc::UnboundedReceiver<Sample>,
        origin: Instant,
        live: Option<Arc<dyn LiveSink>>,
    ) -> Self {
        Self {
            series: Series::default(),
            samples,
            origin,
            live,
        }
    }

    fn add(&mut self, sample: Sample) {
        if let Some(live) = &self.live {
            live.observe(&sample.latencies);
        }
        self.series.add(sample);
    }

    /// Takes what has arrived.
    pub(super) fn poll(&mut self) {
        while let Ok(sample) = self.samples.try_recv() {
            self.add(sample);
        }
    }

    /// Takes everything, once every task has ended.
    pub(super) async fn finish(mut self) -> Series {
        while let Some(sample) = self.samples.recv().await {
            self.add(sample);
        }
        self.series
    }

    /// Live figures for a progress line.
    pub(super) fn line(
        &mut self,
        elapsed: Duration,
        phase: &'static str,
        totals: Totals,
    ) -> ProgressLine {
        self.poll();
        let complete = self.origin.elapsed().as_secs().checked_sub(1);
        let last_second = complete
            .and_then(|index| self.series.second(index as u32))
            .map(|(counts, latencies)| {
                let p99 = |h: &hdrhistogram::Histogram<u64>| {
                    (!h.is_empty()).then(|| h.value_at_quantile(0.99) as f64 / 1_000.0)
                };
                SecondStats {
                    sent_per_s: counts.sent,
                    delivered_per_s: counts.delivered,
                    p99_e2e_ms: p99(&latencies.e2e_intended_us),
                    p99_confirm_ms: p99(&latencies.confirm_us),
                }
            });
        ProgressLine {
            elapsed,
            phase,
            totals,
            last_second,
        }
    }
}
