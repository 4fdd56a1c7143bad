//! What the run's dead-letter queue received: per `x-death` reason, the sequence numbers
//! of every producer. A dead-lettered message was kept by the broker, moved aside by a
//! queue policy, never acknowledged by a consumer: not lost, but not processed either.

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use super::delivery::DeliveryShard;

/// Why RabbitMQ dead-lettered a message (the `reason` of its latest `x-death` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeathReason {
    /// The queue was over `x-max-length` or `x-max-length-bytes` (drop-head).
    Maxlen,
    /// `x-message-ttl` or a per-message expiry passed.
    Expired,
    /// A consumer rejected or nacked it without requeueing.
    Rejected,
    /// A quorum queue delivered it more often than `x-delivery-limit`.
    DeliveryLimit,
    /// A reason this version of warren does not know.
    Other,
}

impl DeathReason {
    /// Every reason, in the order of [`DeadLetterShard::by_reason`].
    pub const ALL: [DeathReason; 5] = [
        DeathReason::Maxlen,
        DeathReason::Expired,
        DeathReason::Rejected,
        DeathReason::DeliveryLimit,
        DeathReason::Other,
    ];

    /// The reason RabbitMQ wrote in the header (`None` or anything else is `Other`).
    pub fn from_header(reason: Option<&str>) -> Self {
        match reason {
            Some("maxlen") => DeathReason::Maxlen,
            Some("expired") => DeathReason::Expired,
            Some("rejected") => DeathReason::Rejected,
            Some("delivery_limit") => DeathReason::DeliveryLimit,
            _ => DeathReason::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The run's dead letters, one delivery shard per reason.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct DeadLetterShard {
    /// Indexed as [`DeathReason::ALL`].
    pub by_reason: Vec<DeliveryShard>,
}

impl DeadLetterShard {
    /// An empty record for a run with `producers` producers.
    pub fn new(producers: u32) -> Self {
        Self {
            by_reason: DeathReason::ALL
                .iter()
                .map(|_| DeliveryShard::new(producers))
                .collect(),
        }
    }

    /// The shard of one reason.
    pub fn reason(&mut self, reason: DeathReason) -> &mut DeliveryShard {
        &mut self.by_reason[reason.index()]
    }

    /// The shard of one reason, to read.
    pub fn of(&self, reason: DeathReason) -> Option<&DeliveryShard> {
        self.by_reason.get(reason.index())
    }

    /// Sequence numbers of `producer` dead-lettered for any reason.
    pub fn seen(&self, producer: usize) -> RoaringBitmap {
        self.by_reason
            .iter()
            .filter_map(|shard| shard.producer(producer))
            .fold(RoaringBitmap::new(), |all, p| all | p.seen.to_bitmap())
    }

    /// Per producer, every sequence number dead-lettered (for the drain).
    pub fn snapshot(&self) -> Vec<RoaringBitmap> {
        let producers = self.by_reason.first().map_or(0, |s| s.producer_count());
        (0..producers).map(|p| self.seen(p)).collect()
    }

    /// Every dead letter received, whatever it was.
    pub fn deliveries(&self) -> u64 {
        self.by_reason.iter().map(|s| s.deliveries).sum()
    }

    /// Approximate memory held, in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.by_reason.iter().map(DeliveryShard::memory_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_kept_apart_and_unknown_ones_are_other() {
        let mut dead = DeadLetterShard::new(2);
        dead.reason(DeathReason::from_header(Some("maxlen")))
            .record(0, 3, false, 0, false);
        dead.reason(DeathReason::from_header(Some("delivery_limit")))
            .record(1, 7, false, 0, false);
        dead.reason(DeathReason::from_header(Some("something-new")))
            .record(0, 4, false, 0, false);
        assert_eq!(dead.seen(0).iter().collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(dead.snapshot()[1].iter().collect::<Vec<_>>(), vec![7]);
        assert_eq!(dead.of(DeathReason::Other).unwrap().deliveries, 1);
        assert_eq!(dead.deliveries(), 3);
    }
}
