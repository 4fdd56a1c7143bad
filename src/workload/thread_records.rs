//! What the clients on one thread record together: the seconds (counts and latency
//! histograms) of every publisher and consumer on it, and per queue the delivery ledger
//! and the per-queue series of the consumers of that queue on it. A thread runs its tasks
//! one at a time, so sharing costs no contention, and memory grows with threads and
//! queues instead of with clients (a task's own histograms were 565 KB each, and a
//! consumer's own ledger held a set per producer: publishers × consumers sets).

use std::cell::RefCell;
use std::rc::Rc;

use roaring::RoaringBitmap;

use crate::ledger::DeliveryShard;
use crate::metrics::series::{QueueSeries, Recorder};

/// What a task has seen so far: per queue it read (an index into the topology's queues),
/// the sequence numbers of each producer.
pub type Seen = Vec<(u32, Vec<RoaringBitmap>)>;

/// The records of one thread, shared by its tasks.
pub type SharedRecords = Rc<RefCell<ThreadRecords>>;

/// The records of one thread.
#[derive(Debug)]
pub struct ThreadRecords {
    /// Every client's current second on this thread.
    pub recorder: Recorder,
    /// Per queue (index), made when a consumer of it first records.
    queues: Vec<Option<QueueRecord>>,
    producers: u32,
}

/// What this thread's consumers of one queue received.
#[derive(Debug)]
pub struct QueueRecord {
    /// Sequence numbers per producer, redeliveries and order breaks.
    pub shard: DeliveryShard,
    /// First deliveries per second and end-to-end latency.
    pub series: QueueSeries,
}

impl ThreadRecords {
    /// Empty records for a run of `queues` queues and `producers` producers.
    pub fn new(recorder: Recorder, queues: usize, producers: u32) -> Self {
        Self {
            recorder,
            queues: (0..queues).map(|_| None).collect(),
            producers,
        }
    }

    /// The record of queue `queue`, made on first use.
    #[inline]
    pub fn queue(&mut self, queue: u32) -> &mut QueueRecord {
        let producers = self.producers;
        let slot = &mut self.queues[queue as usize];
        slot.get_or_insert_with(|| QueueRecord {
            shard: DeliveryShard::new(producers),
            series: QueueSeries::default(),
        })
    }

    /// What this thread's consumers have seen so far, per queue and producer.
    pub fn seen(&self) -> Seen {
        self.queues
            .iter()
            .enumerate()
            .filter_map(|(queue, record)| {
                record.as_ref().map(|r| {
                    let sets: Vec<RoaringBitmap> = (0..r.shard.producer_count())
                        .map(|p| {
                            r.shard
                                .producer(p)
                                .map_or_else(RoaringBitmap::new, |d| d.seen.to_bitmap())
                        })
                        .collect();
                    (queue as u32, sets)
                })
            })
            .collect()
    }

    /// Hands the last second over and returns the queue records (`None` where this
    /// thread had no consumer of the queue).
    pub fn finish(self) -> Vec<Option<QueueRecord>> {
        self.recorder.finish();
        self.queues
    }
}
