//! What one consumer saw: per producer, the sequence numbers delivered (the first time in
//! this consumer, and again), the redelivered flags, and order breaks where order is
//! promised. Owned by its consumer task; shards merge exactly at the end.

use super::seqset::SeqSet;

/// How many examples of each kind of anomaly are kept for the report.
pub const SAMPLES: usize = 20;

/// Deliveries of one producer's messages seen by one consumer.
#[derive(Debug, Clone, Default)]
pub struct ProducerDeliveries {
    /// Sequence numbers delivered at least once to this consumer.
    pub seen: SeqSet,
    /// One entry per delivery of a sequence number already in `seen`.
    pub again: Vec<u32>,
    /// One entry per delivery carrying the broker's redelivered flag.
    pub redelivered: Vec<u32>,
    /// Highest sequence number seen in order so far (for the order check).
    highest: Option<u32>,
    /// Fresh, first-attempt, not-redelivered deliveries below `highest`.
    pub reordered: u64,
    /// The first few reorders: (sequence number, highest already seen).
    pub reorder_samples: Vec<(u32, u32)>,
}

/// One consumer's share of the delivery ledger.
#[derive(Debug, Clone, Default)]
pub struct DeliveryShard {
    /// Indexed by producer id.
    pub producers: Vec<ProducerDeliveries>,
    /// Deliveries of this run's messages naming a producer or sequence number that cannot exist.
    pub unexpected: u64,
    /// Bodies that are not warren messages at all, or are of another run.
    pub foreign: u64,
    /// warren messages whose checksum or length does not match.
    pub corrupted: u64,
    /// Every delivery, whatever it was.
    pub deliveries: u64,
}

impl DeliveryShard {
    /// A shard for a run with `producers` producers.
    pub fn new(producers: u32) -> Self {
        Self {
            producers: vec![ProducerDeliveries::default(); producers as usize],
            ..Self::default()
        }
    }

    /// Records a delivery of `producer`'s message `seq`. `order_promised` says whether
    /// RabbitMQ promises FIFO to this consumer (a single consumer). Returns true when this
    /// consumer saw `seq` for the first time.
    #[inline]
    pub fn record(
        &mut self,
        producer: u32,
        seq: u64,
        redelivered: bool,
        attempt: u16,
        order_promised: bool,
    ) -> bool {
        self.deliveries += 1;
        let (Some(deliveries), Ok(seq)) = (
            self.producers.get_mut(producer as usize),
            u32::try_from(seq),
        ) else {
            self.unexpected += 1;
            return false;
        };
        let fresh = deliveries.seen.insert(seq);
        if !fresh {
            deliveries.again.push(seq);
        }
        if redelivered {
            deliveries.redelivered.push(seq);
        }
        if order_promised && fresh && !redelivered && attempt == 0 {
            match deliveries.highest {
                Some(highest) if seq < highest => {
                    deliveries.reordered += 1;
                    if deliveries.reorder_samples.len() < SAMPLES {
                        deliveries.reorder_samples.push((seq, highest));
                    }
                }
                _ => deliveries.highest = Some(seq),
            }
        }
        fresh
    }

    /// Records a body that is not one of this run's messages.
    pub fn record_foreign(&mut self) {
        self.deliveries += 1;
        self.foreign += 1;
    }

    /// Records a body whose checksum does not match.
    pub fn record_corrupted(&mut self) {
        self.deliveries += 1;
        self.corrupted += 1;
    }

    /// Approximate memory held, in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.producers
            .iter()
            .map(|p| {
                p.seen.memory_bytes() + 4 * (p.again.capacity() + p.redelivered.capacity()) as u64
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_and_redeliveries_are_kept_apart() {
        let mut shard = DeliveryShard::new(2);
        assert!(shard.record(0, 1, false, 0, false));
        assert!(!shard.record(0, 1, true, 0, false));
        assert!(shard.record(1, 1, false, 0, false));
        assert_eq!(shard.producers[0].again, vec![1]);
        assert_eq!(shard.producers[0].redelivered, vec![1]);
        assert!(shard.producers[1].again.is_empty());
    }

    #[test]
    fn only_fresh_first_attempts_count_as_reordered() {
        let mut shard = DeliveryShard::new(1);
        for (seq, redelivered, attempt) in [
            (0, false, 0),
            (2, false, 0),
            (1, false, 0),
            (1, false, 0),
            (0, true, 0),
            (3, false, 0),
            (2, false, 1),
        ] {
            shard.record(0, seq, redelivered, attempt, true);
        }
        assert_eq!(shard.producers[0].reordered, 1);
        assert_eq!(shard.producers[0].reorder_samples, vec![(1, 2)]);
    }

    #[test]
    fn no_order_is_checked_where_none_is_promised() {
        let mut shard = DeliveryShard::new(1);
        shard.record(0, 5, false, 0, false);
        shard.record(0, 1, false, 0, false);
        assert_eq!(shard.producers[0].reordered, 0);
    }

    #[test]
    fn unknown_producers_and_huge_sequence_numbers_are_unexpected() {
        let mut shard = DeliveryShard::new(1);
        shard.record(7, 1, false, 0, false);
        shard.record(0, u64::from(u32::MAX) + 1, false, 0, false);
        assert_eq!(shard.unexpected, 2);
    }
}
