//! The verdict: the publish ledgers and delivery shards merged exactly, and every message
//! classified as the serious checkers do (Jepsen's total-queue accounting): lost confirmed,
//! lost unconfirmed, recovered, duplicated (redelivered or republished), reordered,
//! returned, unexpected, foreign, corrupted.

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use super::dead_letters::{DeadLetterShard, DeathReason};
use super::delivery::{DeliveryShard, SAMPLES};
use super::publish::PublishLedger;

/// Counts over the whole run (or one producer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Distinct sequence numbers published at least once.
    pub attempted: u64,
    /// Acknowledged by the broker.
    pub confirmed: u64,
    pub nacked: u64,
    /// Returned by the broker (unroutable); acked + returned means never enqueued, not lost.
    pub returned: u64,
    /// The connection failed before the broker's answer.
    pub indeterminate: u64,
    /// Copies published again after a failure.
    pub republished: u64,
    /// Distinct sequence numbers delivered at least once to a live consumer.
    pub delivered: u64,
    /// Never delivered to a live consumer, but found in the queue by the final read: the
    /// broker kept them; they were stranded (a stalled consumer, a stream that lost
    /// frames), not lost.
    #[serde(default)]
    pub stranded: u64,
    /// Moved to the run's dead-letter queue by the broker (a queue policy, a delivery
    /// limit), whether or not a consumer had it before without acknowledging it: kept,
    /// not lost, but never processed. Split by reason below.
    #[serde(default)]
    pub dead_lettered: u64,
    #[serde(default)]
    pub dead_lettered_maxlen: u64,
    #[serde(default)]
    pub dead_lettered_expired: u64,
    #[serde(default)]
    pub dead_lettered_rejected: u64,
    #[serde(default)]
    pub dead_lettered_delivery_limit: u64,
    #[serde(default)]
    pub dead_lettered_other: u64,
    /// Confirmed, not returned, neither delivered nor found by the final read: the broker
    /// broke its promise.
    pub lost_confirmed: u64,
    /// Never confirmed (or no confirms asked), not returned, never delivered: the client's risk.
    pub lost_unconfirmed: u64,
    /// Never confirmed, yet delivered (only counted with confirms on).
    pub recovered: u64,
    /// Deliveries beyond the first of a sequence number.
    pub duplicated: u64,
    /// Of those, deliveries the broker flagged as redelivered.
    pub duplicated_redelivered: u64,
    /// Of those, extra copies from republishing (no redelivered flag).
    pub duplicated_republished: u64,
    /// Fresh deliveries out of order where order is promised.
    pub reordered: u64,
    /// Delivered but never published by this run's producers.
    pub unexpected: u64,
}

/// The verdict of one producer, with the first few sequence numbers of each anomaly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProducerVerdict {
    pub producer: u32,
    #[serde(flatten)]
    pub counts: Counts,
    pub first_lost_confirmed: Vec<u32>,
    pub first_lost_unconfirmed: Vec<u32>,
    #[serde(default)]
    pub first_stranded: Vec<u32>,
    #[serde(default)]
    pub first_dead_lettered: Vec<u32>,
    /// (sequence number, deliveries)
    pub first_duplicated: Vec<(u32, u32)>,
    /// (sequence number, highest seen before it)
    pub first_reordered: Vec<(u32, u32)>,
}

/// Every sequence number of one anomaly class, for tests and debugging.
#[derive(Debug, Clone, Default)]
pub struct ProducerSets {
    pub lost_confirmed: RoaringBitmap,
    pub lost_unconfirmed: RoaringBitmap,
    pub recovered: RoaringBitmap,
    pub stranded: RoaringBitmap,
    pub dead_lettered: RoaringBitmap,
    /// Sequence number → number of deliveries, for those delivered more than once.
    pub duplicated: Vec<(u32, u32)>,
}

/// The whole verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    /// Totals over all producers (with several queues, over every queue: a message
    /// routed to k queues counts k times).
    pub totals: Counts,
    /// Distinct messages published, each once however many queues it was routed to.
    #[serde(default)]
    pub published: u64,
    /// Bodies that were not this run's messages.
    pub foreign: u64,
    /// Bodies whose checksum did not match.
    pub corrupted: u64,
    /// Every delivery, of whatever kind.
    pub deliveries: u64,
    /// Whether publisher confirms were on (without them nothing is "confirmed").
    pub confirms: bool,
    /// False under `--no-verify`: the ledgers were off, so only counts are known (sent,
    /// confirmed, delivered), and nothing was checked for loss, duplication or order.
    #[serde(default = "verified_by_default")]
    pub verified: bool,
    /// Whether order was promised and therefore checked (one consumer).
    pub order_checked: bool,
    pub producers: Vec<ProducerVerdict>,
    /// The verdict of each queue of the run (empty in the verdict of one queue): a
    /// message routed to several queues is judged in each; the totals above are the sum.
    #[serde(default)]
    pub queues: Vec<QueueVerdict>,
    /// Complete sets per producer, in the order of `producers` (not serialized: they can
    /// be large).
    #[serde(skip)]
    pub sets: Vec<ProducerSets>,
}

fn verified_by_default() -> bool {
    true
}

impl Verdict {
    /// The verdict of a run without ledgers (`--no-verify`): counts only.
    pub fn unverified(totals: Counts, deliveries: u64, confirms: bool) -> Self {
        Self {
            published: totals.attempted,
            totals,
            foreign: 0,
            corrupted: 0,
            deliveries,
            confirms,
            verified: false,
            order_checked: false,
            producers: Vec::new(),
            queues: Vec::new(),
            sets: Vec::new(),
        }
    }
}

/// What one queue of the run was, and its verdict (verdict.json `queues`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueVerdict {
    /// The queue's name on the broker.
    pub name: String,
    /// The node it was placed on (its leader, for a replicated queue), when known.
    pub node: Option<String>,
    /// classic, quorum or stream.
    #[serde(rename = "type")]
    pub queue_type: String,
    /// The same totals as the run's, for this queue alone.
    pub totals: Counts,
    pub foreign: u64,
    pub corrupted: u64,
    pub deliveries: u64,
    /// Whether order was promised here (one consumer, manual acks) and therefore checked.
    pub order_checked: bool,
    /// Per producer whose messages were routed here (or arrived here anyway).
    pub producers: Vec<ProducerVerdict>,
}

/// Everything a run recorded about its messages.
#[derive(Debug, Clone, Copy, Default)]
pub struct Evidence<'a> {
    /// What each publisher whose messages were routed here sent, and what the broker
    /// answered.
    pub publishers: &'a [&'a PublishLedger],
    /// What each live consumer received.
    pub consumers: &'a [&'a DeliveryShard],
    /// What the final read of the queue found, if one ran.
    pub final_read: Option<&'a DeliveryShard>,
    /// What the run's dead-letter queue received, if warren read one.
    pub dead_letters: Option<&'a DeadLetterShard>,
}

/// Merges the ledgers and classifies every message.
pub fn decide(evidence: Evidence<'_>, confirms: bool, order_checked: bool) -> Verdict {
    let Evidence {
        publishers,
        consumers: shards,
        final_read,
        dead_letters,
    } = evidence;
    let dead_shards = dead_letters.map_or(&[][..], |d| d.by_reason.as_slice());
    let shards_iter = || shards.iter().copied();
    let producers = producers_in(evidence);
    let producer_count = producers.len();
    let mut verdict = Verdict {
        totals: Counts::default(),
        published: publishers.iter().map(|l| u64::from(l.attempted)).sum(),
        foreign: shards_iter()
            .chain(final_read)
            .chain(dead_shards)
            .map(|s| s.foreign)
            .sum(),
        corrupted: shards_iter()
            .chain(final_read)
            .chain(dead_shards)
            .map(|s| s.corrupted)
            .sum(),
        deliveries: shards.iter().map(|s| s.deliveries).sum(),
        confirms,
        verified: true,
        order_checked,
        producers: Vec::with_capacity(producer_count),
        queues: Vec::new(),
        sets: Vec::with_capacity(producer_count),
    };
    verdict.totals.unexpected = shards_iter()
        .chain(final_read)
        .chain(dead_shards)
        .map(|s| s.unexpected)
        .sum();
    let empty = PublishLedger::default();
    for producer in producers {
        let ledger = publishers
            .iter()
            .find(|l| l.producer as usize == producer)
            .copied()
            .unwrap_or(&empty);
        let (producer_verdict, sets) = decide_producer(
            producer as u32,
            ledger,
            Evidence {
                publishers: &[],
                consumers: shards,
                final_read,
                dead_letters,
            },
            confirms,
        );
        add(&mut verdict.totals, &producer_verdict.counts);
        verdict.producers.push(producer_verdict);
        verdict.sets.push(sets);
    }
    verdict
}

/// The producers a verdict speaks of, ascending: those whose messages were routed here,
/// and any other whose messages arrived anyway (unexpected here).
fn producers_in(evidence: Evidence<'_>) -> Vec<usize> {
    let mut producers: Vec<usize> = evidence
        .publishers
        .iter()
        .map(|l| l.producer as usize)
        .collect();
    let dead_shards = evidence
        .dead_letters
        .map_or(&[][..], |d| d.by_reason.as_slice());
    for shard in evidence
        .consumers
        .iter()
        .copied()
        .chain(evidence.final_read)
        .chain(dead_shards)
    {
        producers.extend(
            shard
                .producers()
                .filter(|(_, p)| !p.seen.is_empty())
                .map(|(producer, _)| producer),
        );
    }
    producers.sort_unstable();
    producers.dedup();
    producers
}

/// Adds `c` to `total`, field by field.
pub(super) fn add(total: &mut Counts, c: &Counts) {
    total.attempted += c.attempted;
    total.confirmed += c.confirmed;
    total.nacked += c.nacked;
    total.returned += c.returned;
    total.indeterminate += c.indeterminate;
    total.republished += c.republished;
    total.delivered += c.delivered;
    total.stranded += c.stranded;
    total.dead_lettered += c.dead_lettered;
    total.dead_lettered_maxlen += c.dead_lettered_maxlen;
    total.dead_lettered_expired += c.dead_lettered_expired;
    total.dead_lettered_rejected += c.dead_lettered_rejected;
    total.dead_lettered_delivery_limit += c.dead_lettered_delivery_limit;
    total.dead_lettered_other += c.dead_lettered_other;
    total.lost_confirmed += c.lost_confirmed;
    total.lost_unconfirmed += c.lost_unconfirmed;
    total.recovered += c.recovered;
    total.duplicated += c.duplicated;
    total.duplicated_redelivered += c.duplicated_redelivered;
    total.duplicated_republished += c.duplicated_republished;
    total.reordered += c.reordered;
    total.unexpected += c.unexpected;
}

fn decide_producer(
    producer: u32,
    ledger: &PublishLedger,
    evidence: Evidence<'_>,
    confirms: bool,
) -> (ProducerVerdict, ProducerSets) {
    let Evidence {
        consumers: shards,
        final_read,
        dead_letters,
        ..
    } = evidence;
    let mut attempted = RoaringBitmap::new();
    attempted.insert_range(0..ledger.attempted);
    let confirmed = ledger.confirmed.to_bitmap();
    let returned = ledger.returned.to_bitmap();

    // Union of deliveries, and every delivery beyond the first as one entry of `extra`.
    let mut delivered = RoaringBitmap::new();
    let mut extra: Vec<u32> = Vec::new();
    let mut redelivered: Vec<u32> = Vec::new();
    let mut reordered = 0;
    let mut first_reordered = Vec::new();
    for shard in shards {
        let Some(deliveries) = shard.producer(producer as usize) else {
            continue;
        };
        let seen = deliveries.seen.to_bitmap();
        extra.extend((&delivered & &seen).iter());
        delivered |= seen;
        extra.extend_from_slice(&deliveries.again);
        redelivered.extend_from_slice(&deliveries.redelivered);
        reordered += deliveries.reordered;
        first_reordered.extend(deliveries.reorder_samples.iter().copied());
    }
    // The final read: what it found beyond the live deliveries was stranded; what it found
    // again is a duplicate (the broker redelivered what a consumer had not acknowledged).
    let mut found = RoaringBitmap::new();
    if let Some(deliveries) = final_read.and_then(|s| s.producer(producer as usize)) {
        found = deliveries.seen.to_bitmap();
        extra.extend((&delivered & &found).iter());
        extra.extend_from_slice(&deliveries.again);
        redelivered.extend_from_slice(&deliveries.redelivered);
    }
    // Dead letters: kept by the broker, moved aside; not lost.
    let dead = dead_letters.map_or_else(RoaringBitmap::new, |d| d.seen(producer as usize));
    let dead_by_reason = |reason: DeathReason| -> u64 {
        dead_letters
            .and_then(|d| d.of(reason))
            .and_then(|s| s.producer(producer as usize))
            .map_or(0, |p| (&p.seen.to_bitmap() & &attempted).len())
    };
    let kept = &(&delivered | &found) | &dead;
    first_reordered.truncate(SAMPLES);
    extra.sort_unstable();
    redelivered.sort_unstable();
    let duplicated = runs(&extra);
    let flagged = runs(&redelivered);
    let mut duplicated_redelivered = 0u64;
    let mut flags = flagged.iter().peekable();
    for (seq, extras) in &duplicated {
        while flags.next_if(|(s, _)| s < seq).is_some() {}
        if let Some((_, count)) = flags.next_if(|(s, _)| s == seq) {
            duplicated_redelivered += u64::from((*count).min(*extras));
        }
    }

    let unexpected = &kept - &attempted;
    let stranded = &(&found - &delivered) & &attempted;
    let promised = &confirmed - &returned;
    let lost_confirmed = if confirms {
        &promised - &kept
    } else {
        RoaringBitmap::new()
    };
    let unconfirmed = if confirms {
        &(&attempted - &confirmed) - &returned
    } else {
        &attempted - &returned
    };
    let lost_unconfirmed = &unconfirmed - &kept;
    let recovered = if confirms {
        &unconfirmed & &kept
    } else {
        RoaringBitmap::new()
    };

    let counts = Counts {
        attempted: attempted.len(),
        confirmed: confirmed.len(),
        nacked: ledger.nacked.len(),
        returned: returned.len(),
        indeterminate: ledger.indeterminate.len(),
        republished: ledger.republished,
        delivered: (&delivered & &attempted).len(),
        stranded: stranded.len(),
        dead_lettered: (&dead & &attempted).len(),
        dead_lettered_maxlen: dead_by_reason(DeathReason::Maxlen),
        dead_lettered_expired: dead_by_reason(DeathReason::Expired),
        dead_lettered_rejected: dead_by_reason(DeathReason::Rejected),
        dead_lettered_delivery_limit: dead_by_reason(DeathReason::DeliveryLimit),
        dead_lettered_other: dead_by_reason(DeathReason::Other),
        lost_confirmed: lost_confirmed.len(),
        lost_unconfirmed: lost_unconfirmed.len(),
        recovered: recovered.len(),
        duplicated: extra.len() as u64,
        duplicated_redelivered,
        duplicated_republished: extra.len() as u64 - duplicated_redelivered,
        reordered,
        unexpected: unexpected.len(),
    };
    let verdict = ProducerVerdict {
        producer,
        counts,
        first_lost_confirmed: lost_confirmed.iter().take(SAMPLES).collect(),
        first_lost_unconfirmed: lost_unconfirmed.iter().take(SAMPLES).collect(),
        first_stranded: stranded.iter().take(SAMPLES).collect(),
        first_dead_lettered: (&dead & &attempted).iter().take(SAMPLES).collect(),
        first_duplicated: duplicated
            .iter()
            .take(SAMPLES)
            .map(|(seq, extras)| (*seq, extras + 1))
            .collect(),
        first_reordered,
    };
    let sets = ProducerSets {
        lost_confirmed,
        lost_unconfirmed,
        recovered,
        stranded,
        dead_lettered: &dead & &attempted,
        duplicated: duplicated
            .into_iter()
            .map(|(seq, extras)| (seq, extras + 1))
            .collect(),
    };
    (verdict, sets)
}

/// Run-length counts of a sorted list: (value, occurrences).
fn runs(sorted: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &value in sorted {
        match out.last_mut() {
            Some((last, count)) if *last == value => *count += 1,
            _ => out.push((value, 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(
        producer: u32,
        attempted: u32,
        confirmed: impl IntoIterator<Item = u32>,
    ) -> PublishLedger {
        let mut ledger = PublishLedger::new(producer);
        ledger.attempted = attempted;
        for seq in confirmed {
            ledger.confirmed.insert(seq);
        }
        ledger
    }

    /// The verdict of live consumers alone (no final read, no dead letters).
    fn live_only(
        ledger: PublishLedger,
        consumers: &[DeliveryShard],
        confirms: bool,
        order: bool,
    ) -> Verdict {
        decide(
            Evidence {
                publishers: &[&ledger],
                consumers: &consumers.iter().collect::<Vec<_>>(),
                ..Evidence::default()
            },
            confirms,
            order,
        )
    }

    #[test]
    fn everything_delivered_once_is_clean() {
        let ledger = published(0, 100, 0..100);
        let mut shard = DeliveryShard::new(1);
        for seq in 0..100 {
            shard.record(0, seq, false, 0, true);
        }
        let verdict = live_only(ledger, &[shard], true, true);
        assert_eq!(verdict.totals.delivered, 100);
        assert_eq!(
            verdict.totals.lost_confirmed
                + verdict.totals.lost_unconfirmed
                + verdict.totals.duplicated,
            0
        );
    }

    #[test]
    fn losses_are_split_by_what_the_broker_promised() {
        let mut ledger = published(0, 10, 0..6); // 6..10 never confirmed
        ledger.returned.insert(5); // acked but returned: never enqueued
        let mut shard = DeliveryShard::new(1);
        for seq in [0, 1, 2, 7] {
            shard.record(0, seq, false, 0, false);
        }
        let verdict = live_only(ledger, &[shard], true, false);
        assert_eq!(
            verdict.sets[0].lost_confirmed.iter().collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert_eq!(
            verdict.sets[0].lost_unconfirmed.iter().collect::<Vec<_>>(),
            vec![6, 8, 9]
        );
        assert_eq!(
            verdict.sets[0].recovered.iter().collect::<Vec<_>>(),
            vec![7]
        );
        assert_eq!(verdict.totals.returned, 1);
    }

    #[test]
    fn without_confirms_every_missing_message_is_the_clients_risk() {
        let ledger = published(0, 5, []);
        let mut shard = DeliveryShard::new(1);
        shard.record(0, 0, false, 0, false);
        let verdict = live_only(ledger, &[shard], false, false);
        assert_eq!(
            (
                verdict.totals.lost_confirmed,
                verdict.totals.lost_unconfirmed,
                verdict.totals.recovered
            ),
            (0, 4, 0)
        );
    }

    #[test]
    fn duplicates_across_and_within_consumers_are_counted_and_split() {
        let ledger = published(0, 4, 0..4);
        let mut a = DeliveryShard::new(1);
        let mut b = DeliveryShard::new(1);
        a.record(0, 0, false, 0, false);
        a.record(0, 0, true, 0, false); // broker redelivery within a consumer
        a.record(0, 1, false, 0, false);
        b.record(0, 1, false, 1, false); // republished copy at another consumer
        b.record(0, 2, false, 0, false);
        b.record(0, 2, false, 0, false); // a second copy without the flag
        b.record(0, 2, true, 0, false); // and a redelivery
        let verdict = live_only(ledger, &[a, b], true, false);
        let t = &verdict.totals;
        assert_eq!(
            (
                t.duplicated,
                t.duplicated_redelivered,
                t.duplicated_republished
            ),
            (4, 2, 2)
        );
        assert_eq!(verdict.sets[0].duplicated, vec![(0, 2), (1, 2), (2, 3)]);
        assert_eq!(
            verdict.sets[0].lost_confirmed.iter().collect::<Vec<_>>(),
            vec![3]
        );
    }

    #[test]
    fn deliveries_never_published_are_unexpected() {
        let ledger = published(0, 2, 0..2);
        let mut shard = DeliveryShard::new(1);
        for seq in [0, 1, 9] {
            shard.record(0, seq, false, 0, false);
        }
        shard.record(4, 0, false, 0, false);
        shard.record_foreign();
        shard.record_corrupted();
        let verdict = live_only(ledger, &[shard], true, false);
        assert_eq!(verdict.totals.unexpected, 2);
        assert_eq!(
            (verdict.foreign, verdict.corrupted, verdict.deliveries),
            (1, 1, 6)
        );
        assert_eq!(verdict.totals.delivered, 2);
    }

    #[test]
    fn what_only_the_final_read_found_was_stranded_not_lost() {
        let mut ledger = published(0, 10, 0..8); // 8 and 9 never confirmed
        ledger.returned.insert(7);
        let mut live = DeliveryShard::new(1);
        for seq in 0..4 {
            live.record(0, seq, false, 0, true);
        }
        let mut final_read = DeliveryShard::new(1);
        // 3 was delivered but not acknowledged, so the broker had it again.
        for seq in [3, 4, 5, 9] {
            final_read.record(0, seq, seq == 3, 0, false);
        }
        let verdict = decide(
            Evidence {
                publishers: &[&ledger],
                consumers: &[&live],
                final_read: Some(&final_read),
                dead_letters: None,
            },
            true,
            true,
        );
        let sets = &verdict.sets[0];
        assert_eq!(sets.stranded.iter().collect::<Vec<_>>(), vec![4, 5, 9]);
        assert_eq!(sets.lost_confirmed.iter().collect::<Vec<_>>(), vec![6]);
        assert_eq!(sets.lost_unconfirmed.iter().collect::<Vec<_>>(), vec![8]);
        assert_eq!(sets.recovered.iter().collect::<Vec<_>>(), vec![9]);
        let t = &verdict.totals;
        assert_eq!((t.delivered, t.stranded), (4, 3));
        assert_eq!((t.duplicated, t.duplicated_redelivered), (1, 1));
        assert_eq!(t.reordered, 0);
    }
}
