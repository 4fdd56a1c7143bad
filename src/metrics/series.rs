//! Per-second measurements. Each task records into the current second's counts and
//! histograms and hands them over when the second ends (one message a second per task,
//! never one per message); the coordinator adds them up per second. The run's whole
//! histograms are the exact sum of its seconds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

use hdrhistogram::Histogram;

use super::latency::Latencies;

const SECOND_NS: u64 = 1_000_000_000;

/// What happened in one second (in one task, or in all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Publishes (first attempts and republished copies).
    pub sent: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub returned: u64,
    /// First deliveries (per consumer) of this run's messages.
    pub delivered: u64,
    /// Every delivery.
    pub deliveries: u64,
    /// Deliveries of a sequence number the consumer had already seen.
    pub duplicates: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.sent += other.sent;
        self.confirmed += other.confirmed;
        self.nacked += other.nacked;
        self.returned += other.returned;
        self.delivered += other.delivered;
        self.deliveries += other.deliveries;
        self.duplicates += other.duplicates;
    }

    fn is_empty(&self) -> bool {
        *self == Counts::default()
    }
}

/// One task's second.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Seconds since the start of publishing (0 for what came before).
    pub index: u32,
    pub counts: Counts,
    pub latencies: Latencies,
}

/// A task's recorder for the current second.
#[derive(Debug)]
pub struct Recorder {
    start_ns: u64,
    index: u32,
    next_ns: u64,
    /// This second's counts.
    pub counts: Counts,
    /// This second's latencies.
    pub latencies: Latencies,
    sink: UnboundedSender<Sample>,
}

impl Recorder {
    /// A recorder for seconds counted from `start_ns`, handing seconds to `sink`.
    pub fn new(start_ns: u64, sink: UnboundedSender<Sample>) -> Self {
        Self {
            start_ns,
            index: 0,
            next_ns: start_ns + SECOND_NS,
            counts: Counts::default(),
            latencies: Latencies::default(),
            sink,
        }
    }

    /// A recorder of the same start and sink with nothing recorded (to leave in place of
    /// one taken away).
    pub fn detached(&self) -> Self {
        Self::new(self.start_ns, self.sink.clone())
    }

    /// The index of the current second (seconds since the recorder's start).
    pub fn second(&self) -> u32 {
        self.index
    }

    /// Hands the current second over if it has ended by `now_ns`. Cheap when it has not.
    #[inline]
    pub fn tick(&mut self, now_ns: u64) {
        if now_ns >= self.next_ns {
            self.flush();
            self.index = (now_ns.saturating_sub(self.start_ns) / SECOND_NS) as u32;
            self.next_ns = self.start_ns + (u64::from(self.index) + 1) * SECOND_NS;
        }
    }

    fn flush(&mut self) {
        if self.counts.is_empty() && self.latencies.is_empty() {
            return;
        }
        let sample = Sample {
            index: self.index,
            counts: std::mem::take(&mut self.counts),
            latencies: std::mem::take(&mut self.latencies),
        };
        let _ = self.sink.send(sample);
    }

    /// Hands the last, partial second over.
    pub fn finish(mut self) {
        self.flush();
    }
}

/// All tasks' seconds, added up; and, for each queue, its deliveries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Series {
    seconds: BTreeMap<u32, (Counts, Latencies)>,
    /// Per queue (index): first deliveries per second and the whole run's end-to-end
    /// latency (a full histogram set per queue and second would cost megabytes a queue).
    queues: BTreeMap<u32, QueueSeries>,
}

/// One queue's deliveries: first deliveries per second, and the end-to-end latency (from
/// the intended send time) of the whole run at 2 significant digits (27 KB a queue).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueSeries {
    /// Indexed by second, as the run's series.
    pub delivered_by_second: Vec<u64>,
    #[serde(with = "super::histogram_text")]
    pub e2e_us: Histogram<u64>,
}

impl Default for QueueSeries {
    fn default() -> Self {
        Self {
            delivered_by_second: Vec::new(),
            e2e_us: Histogram::new_with_bounds(1, super::MAX_US, 2)
                .expect("valid histogram bounds"),
        }
    }
}

impl QueueSeries {
    /// Records a first delivery in second `second` with its end-to-end latency.
    #[inline]
    pub fn record(&mut self, second: u32, e2e_us: u64) {
        let second = second as usize;
        if self.delivered_by_second.len() <= second {
            self.delivered_by_second.resize(second + 1, 0);
        }
        self.delivered_by_second[second] += 1;
        self.e2e_us
            .saturating_record(e2e_us.clamp(1, super::MAX_US));
    }

    /// Adds another thread's record of the same queue.
    pub fn add(&mut self, other: &QueueSeries) {
        if self.delivered_by_second.len() < other.delivered_by_second.len() {
            self.delivered_by_second
                .resize(other.delivered_by_second.len(), 0);
        }
        for (mine, theirs) in self
            .delivered_by_second
            .iter_mut()
            .zip(&other.delivered_by_second)
        {
            *mine += theirs;
        }
        self.e2e_us
            .add(&other.e2e_us)
            .expect("histograms with the same bounds add");
    }

    /// First deliveries over the whole run.
    pub fn delivered(&self) -> u64 {
        self.delivered_by_second.iter().sum()
    }
}

impl Series {
    /// Adds one task's second.
    pub fn add(&mut self, sample: Sample) {
        let (counts, latencies) = self.seconds.entry(sample.index).or_default();
        counts.add(&sample.counts);
        latencies.add(&sample.latencies);
    }

    /// Adds one thread's record of queue `queue`.
    pub fn add_queue(&mut self, queue: u32, series: &QueueSeries) {
        self.queues.entry(queue).or_default().add(series);
    }

    /// The deliveries of queue `queue` (empty when none came).
    pub fn queue(&self, queue: u32) -> QueueSeries {
        self.queues.get(&queue).cloned().unwrap_or_default()
    }

    /// Every second from 0 to the last one with data, empty ones included.
    pub fn seconds(&self) -> Vec<(u32, Counts, Latencies)> {
        let Some(last) = self.seconds.keys().next_back().copied() else {
            return Vec::new();
        };
        (0..=last)
            .map(|index| match self.seconds.get(&index) {
                Some((counts, latencies)) => (index, *counts, latencies.clone()),
                None => (index, Counts::default(), Latencies::default()),
            })
            .collect()
    }

    /// One second's data, if any task reported it.
    pub fn second(&self, index: u32) -> Option<&(Counts, Latencies)> {
        self.seconds.get(&index)
    }

    /// The whole run's latencies: the exact sum of its seconds.
    pub fn total_latencies(&self) -> Latencies {
        let mut total = Latencies::default();
        for (_, latencies) in self.seconds.values() {
            total.add(latencies);
        }
        total
    }

    /// Adds another process's series whose second 0 is this one's second `shift`
    /// (workers of one run count seconds from different whole seconds of one clock).
    pub fn absorb(&mut self, other: &Series, shift: u32) {
        for (index, (counts, latencies)) in &other.seconds {
            let (mine, my_latencies) = self.seconds.entry(index + shift).or_default();
            mine.add(counts);
            my_latencies.add(latencies);
        }
        for (queue, series) in &other.queues {
            let mut shifted = series.clone();
            let mut by_second = vec![0; shift as usize];
            by_second.extend_from_slice(&series.delivered_by_second);
            shifted.delivered_by_second = by_second;
            self.add_queue(*queue, &shifted);
        }
    }

    /// Forgets every end-to-end latency (per second and per queue), keeping counts and
    /// confirm latencies: for runs whose senders' and receivers' clocks may disagree.
    pub fn drop_end_to_end(&mut self) {
        for (_, latencies) in self.seconds.values_mut() {
            latencies.e2e_intended_us.reset();
            latencies.e2e_sent_us.reset();
        }
        for series in self.queues.values_mut() {
            series.e2e_us.reset();
        }
    }

    /// The whole run's counts.
    pub fn total_counts(&self) -> Counts {
        let mut total = Counts::default();
        for (counts, _) in self.seconds.values() {
            total.add(counts);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_add_up_across_tasks_and_into_the_total() {
        let (sink, mut samples) = tokio::sync::mpsc::unbounded_channel();
        let mut a = Recorder::new(0, sink.clone());
        let mut b = Recorder::new(0, sink);
        for ms in [10u64, 500, 1_200, 3_400] {
            let now = ms * 1_000_000;
            for r in [&mut a, &mut b] {
                r.tick(now);
                r.counts.delivered += 1;
                r.latencies
                    .record_delivery(now - 1_000_000, now - 500_000, now);
            }
        }
        a.finish();
        b.finish();
        let mut series = Series::default();
        while let Ok(sample) = samples.try_recv() {
            series.add(sample);
        }
        let seconds = series.seconds();
        assert_eq!(
            seconds
                .iter()
                .map(|(_, c, _)| c.delivered)
                .collect::<Vec<_>>(),
            vec![4, 2, 0, 2]
        );
        assert_eq!(series.total_counts().delivered, 8);
        assert_eq!(series.total_latencies().e2e_intended_us.len(), 8);
        assert_eq!(
            series
                .total_latencies()
                .e2e_intended_us
                .value_at_quantile(0.5),
            1_000
        );
    }
}
