//! What one consumer saw: per producer, the sequence numbers delivered (the first time in
//! this consumer, and again), the redelivered flags, and order breaks where order is
//! promised. Owned by its consumer task; shards merge exactly at the end.

use super::seqset::SeqSet;

/// How many examples of each kind of anomaly are kept for the report.
pub const SAMPLES: usize = 20;

/// Deliveries of one producer's messages seen by one consumer.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
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

/// A share of the delivery ledger: what one thread's consumers of one queue received
/// (or the final read, or one reason's dead letters).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct DeliveryShard {
    /// Indexed by producer id; made when a producer's first message arrives (8 bytes for
    /// a producer never seen: a run of 5,000 publishers and 50 queues would otherwise
    /// hold 250,000 empty records per thread).
    producers: Vec<Option<Box<ProducerDeliveries>>>,
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
            producers: vec![None; producers as usize],
            ..Self::default()
        }
    }

    /// How many producers the run has (the ids this shard accepts).
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// The deliveries of `producer`, if any arrived.
    pub fn producer(&self, producer: usize) -> Option<&ProducerDeliveries> {
        self.producers.get(producer).and_then(|p| p.as_deref())
    }

    /// Every producer with deliveries here, with its id.
    pub fn producers(&self) -> impl Iterator<Item = (usize, &ProducerDeliveries)> {
        self.producers
            .iter()
            .enumerate()
            .filter_map(|(id, p)| p.as_deref().map(|p| (id, p)))
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
        let (Some(slot), Ok(seq)) = (
            self.producers.get_mut(producer as usize),
            u32::try_from(seq),
        ) else {
            self.unexpected += 1;
            return false;
        };
        let deliveries = slot.get_or_insert_with(Box::default);
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
        let slots = (self.producers.capacity() * std::mem::size_of::<usize>()) as u64;
        slots
            + self
                .producers()
                .map(|(_, p)| {
                    (std::mem::size_of::<ProducerDeliveries>() as u64)
                        + p.seen.memory_bytes()
                        + 4 * (p.again.capacity() + p.redelivered.capacity()) as u64
                })
                .sum::<u64>()
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
        assert_eq!(shard.producer(0).unwrap().again, vec![1]);
        assert_eq!(shard.producer(0).unwrap().redelivered, vec![1]);
        assert!(shard.producer(1).unwrap().again.is_empty());
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
        assert_eq!(shard.producer(0).unwrap().reordered, 1);
        assert_eq!(shard.producer(0).unwrap().reorder_samples, vec![(1, 2)]);
    }

    #[test]
    fn no_order_is_checked_where_none_is_promised() {
        let mut shard = DeliveryShard::new(1);
        shard.record(0, 5, false, 0, false);
        shard.record(0, 1, false, 0, false);
        assert_eq!(shard.producer(0).unwrap().reordered, 0);
    }

    #[test]
    fn unknown_producers_and_huge_sequence_numbers_are_unexpected() {
        let mut shard = DeliveryShard::new(1);
        shard.record(7, 1, false, 0, false);
        shard.record(0, u64::from(u32::MAX) + 1, false, 0, false);
        assert_eq!(shard.unexpected, 2);
    }
}
