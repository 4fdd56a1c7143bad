//! What the workload hands back: the verdict, the measurements and the events, put
//! together once every phase has ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::consumer::ConsumerReport;
use super::drain::DrainResult;
use super::final_read::FinalReadReport;
use super::publisher::PublisherReport;
use super::setup;
use super::thread_records::QueueRecord;
use super::topology::Topology;
use crate::events::Event;
use crate::ledger::{DeadLetterShard, PublishLedger, Verdict};
use crate::metrics::activity::Activity;
use crate::metrics::series::Series;
use crate::metrics::{Clock, Latencies};

/// Process CPU time (user + system) spent during the workload.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct CpuTime {
    pub user_s: f64,
    pub system_s: f64,
}

/// Everything the workload measured.
pub struct WorkloadOutcome {
    pub run_id: u64,
    /// The first queue's name (the only one's, in a run of one queue).
    pub queue: String,
    /// Every queue of the run, with what was left in it.
    pub queues: Vec<QueueOutcome>,
    pub verdict: Verdict,
    /// The whole run's latencies (the sum of `series`).
    pub latencies: Latencies,
    /// Per-second counts and latencies, from the clock's origin.
    pub series: Series,
    pub events: Vec<Event>,
    /// From the first message due to the last new message sent.
    pub publishing: Duration,
    /// From the first message due to the last first-time delivery.
    pub delivering: Duration,
    pub drain: DrainResult,
    /// The whole workload, declare to teardown.
    pub elapsed: Duration,
    pub cpu: CpuTime,
    pub interrupted: bool,
    /// Messages left in the queues when they were deleted (None when kept or unknown).
    pub queue_left: Option<u32>,
    /// The final read of the queue after the drain, and what it found.
    pub final_read: FinalReadReport,
    /// Memory the ledgers held at the end, in bytes.
    pub ledger_bytes: u64,
    /// When confirms and first deliveries came (gaps), per task, for recovery times.
    pub confirm_activity: Vec<Activity>,
    pub delivery_activity: Vec<Activity>,
    /// The run's clock (readings in ns since the Unix epoch).
    pub clock: Clock,
    /// When message 0 was due.
    pub start: Instant,
    /// What the sabotage did, for the checker's self-test.
    pub sabotaged_dropped: Vec<(u32, u64)>,
    pub sabotaged_doubled: Vec<(u32, u64)>,
    pub sabotaged_rejected: Vec<(u32, u64)>,
    /// One worker of a shared run: the raw evidence for `warren merge`.
    pub worker: Option<super::WorkerEvidence>,
}

/// One queue of the run at its end.
#[derive(Debug, Clone)]
pub struct QueueOutcome {
    pub name: String,
    /// The index of the broker URI (node) it was placed on.
    pub node_index: usize,
    /// Messages left in it when it was deleted (None when kept or unknown).
    pub left: Option<u32>,
}

/// Everything the phases produced, to be made into a [`WorkloadOutcome`].
pub(super) struct Ended<'a> {
    pub run_id: u64,
    pub topology: &'a Arc<Topology>,
    /// The broker's node count.
    pub nodes: usize,
    pub verdict: Verdict,
    /// The threads' seconds; the queues' series are added from `queue_records`.
    pub series: Series,
    pub events: Vec<Event>,
    pub ledgers: &'a [PublishLedger],
    pub publishers: Vec<PublisherReport>,
    pub consumers: Vec<ConsumerReport>,
    /// Per queue, the threads' records of it.
    pub queue_records: Vec<Vec<QueueRecord>>,
    pub dead_letters: Option<Vec<Option<DeadLetterShard>>>,
    pub drain: DrainResult,
    pub final_read: FinalReadReport,
    /// Messages left in each queue at its deletion.
    pub queues_left: Option<Vec<u32>>,
    pub clock: Clock,
    /// When message 0 was due.
    pub start: Instant,
    pub cpu: CpuTime,
    pub interrupted: bool,
}

impl Ended<'_> {
    /// The outcome.
    pub fn outcome(self) -> WorkloadOutcome {
        let mut series = self.series;
        for (queue, records) in self.queue_records.iter().enumerate() {
            for record in records {
                series.add_queue(queue as u32, &record.series);
            }
        }
        let ledger_bytes = self.ledgers.iter().map(|l| l.memory_bytes()).sum::<u64>()
            + self
                .queue_records
                .iter()
                .flatten()
                .map(|r| r.shard.memory_bytes())
                .sum::<u64>()
            + self
                .dead_letters
                .iter()
                .flatten()
                .flatten()
                .map(DeadLetterShard::memory_bytes)
                .sum::<u64>();
        let start_ns = self.clock.ns_at(self.start);
        let publishing_ended = self
            .publishers
            .iter()
            .filter_map(|r| r.publishing_ended)
            .max()
            .unwrap_or(self.start);
        let queues_left = self.queues_left;
        let consumers = &self.consumers;
        let sabotaged = |pick: fn(&ConsumerReport) -> &Vec<(u32, u64)>| {
            consumers
                .iter()
                .flat_map(|r| pick(r).iter().copied())
                .collect()
        };
        WorkloadOutcome {
            run_id: self.run_id,
            queue: self.topology.queues[0].name.clone(),
            queues: self
                .topology
                .queues
                .iter()
                .enumerate()
                .map(|(queue, spec)| QueueOutcome {
                    name: spec.name.clone(),
                    node_index: setup::home_node(queue as u32, self.nodes),
                    left: queues_left
                        .as_ref()
                        .and_then(|left| left.get(queue).copied()),
                })
                .collect(),
            verdict: self.verdict,
            latencies: series.total_latencies(),
            events: self.events,
            publishing: publishing_ended.saturating_duration_since(self.start),
            delivering: Duration::from_nanos(
                consumers
                    .iter()
                    .map(|r| r.last_delivery_ns)
                    .max()
                    .unwrap_or(0)
                    .saturating_sub(start_ns),
            ),
            drain: self.drain,
            elapsed: self.clock.origin().elapsed(),
            cpu: self.cpu,
            interrupted: self.interrupted,
            queue_left: queues_left.as_ref().map(|left| left.iter().sum()),
            final_read: self.final_read,
            ledger_bytes,
            confirm_activity: self.publishers.iter().map(|r| r.activity.clone()).collect(),
            delivery_activity: consumers.iter().map(|r| r.activity.clone()).collect(),
            clock: self.clock,
            start: self.start,
            sabotaged_dropped: sabotaged(|r| &r.sabotaged_dropped),
            sabotaged_doubled: sabotaged(|r| &r.sabotaged_doubled),
            sabotaged_rejected: sabotaged(|r| &r.sabotaged_rejected),
            series,
            worker: None,
        }
    }
}

impl CpuTime {
    /// The CPU time spent since `earlier`.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user_s: self.user_s - earlier.user_s,
            system_s: self.system_s - earlier.system_s,
        }
    }
}

/// The process's CPU time so far.
pub(super) fn cpu_time() -> CpuTime {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            CpuTime {
                user_s: seconds(usage.user_time()),
                system_s: seconds(usage.system_time()),
            }
        }
        Err(_) => CpuTime::default(),
    }
}
