//! The verdict of a run with several queues: each queue is judged on its own evidence
//! (the publishers whose messages were routed to it, its consumers, its final read, its
//! dead letters), so a message routed to k queues must come out of each of them once, and
//! losing it in one is a loss even when the others delivered it. The run's verdict is the
//! exact sum of its queues'.

use super::dead_letters::DeadLetterShard;
use super::delivery::{DeliveryShard, SAMPLES};
use super::publish::PublishLedger;
use super::verdict::{Counts, Evidence, ProducerVerdict, QueueVerdict, Verdict, add, decide};

/// Everything recorded about one queue's messages.
pub struct QueueEvidence<'a> {
    pub name: String,
    pub node: Option<String>,
    pub queue_type: String,
    /// The ledgers, and shards, of this queue.
    pub evidence: Evidence<'a>,
    /// One consumer with manual acks: RabbitMQ promises it FIFO.
    pub order_checked: bool,
}

/// Judges every queue, then adds them up into the run's verdict: totals and counts add,
/// each producer's verdict is the sum of its verdicts in the queues it reached, and the
/// first few examples of each anomaly are kept.
pub fn decide_queues(queues: Vec<QueueEvidence<'_>>, confirms: bool) -> Verdict {
    let mut published: std::collections::BTreeMap<u32, u32> = Default::default();
    for queue in &queues {
        for ledger in queue.evidence.publishers {
            published.insert(ledger.producer, ledger.attempted);
        }
    }
    let mut run = Verdict {
        totals: Counts::default(),
        published: published.values().map(|&a| u64::from(a)).sum(),
        foreign: 0,
        corrupted: 0,
        deliveries: 0,
        confirms,
        verified: true,
        order_checked: !queues.is_empty() && queues.iter().all(|q| q.order_checked),
        producers: Vec::new(),
        queues: Vec::with_capacity(queues.len()),
        sets: Vec::new(),
    };
    for queue in queues {
        let verdict = decide(queue.evidence, confirms, queue.order_checked);
        add(&mut run.totals, &verdict.totals);
        run.foreign += verdict.foreign;
        run.corrupted += verdict.corrupted;
        run.deliveries += verdict.deliveries;
        for (producer, sets) in verdict.producers.iter().zip(verdict.sets) {
            let at = match run
                .producers
                .binary_search_by_key(&producer.producer, |p| p.producer)
            {
                Ok(at) => {
                    merge_producer(&mut run.producers[at], producer);
                    let into = &mut run.sets[at];
                    into.lost_confirmed |= sets.lost_confirmed;
                    into.lost_unconfirmed |= sets.lost_unconfirmed;
                    into.recovered |= sets.recovered;
                    into.stranded |= sets.stranded;
                    into.dead_lettered |= sets.dead_lettered;
                    into.duplicated.extend(sets.duplicated);
                    continue;
                }
                Err(at) => at,
            };
            run.producers.insert(at, producer.clone());
            run.sets.insert(at, sets);
        }
        run.queues.push(QueueVerdict {
            name: queue.name,
            node: queue.node,
            queue_type: queue.queue_type,
            totals: verdict.totals,
            foreign: verdict.foreign,
            corrupted: verdict.corrupted,
            deliveries: verdict.deliveries,
            order_checked: verdict.order_checked,
            producers: verdict.producers,
        });
    }
    for sets in &mut run.sets {
        sets.duplicated.sort_unstable();
    }
    run
}

/// Adds one queue's verdict of a producer to its verdict so far.
fn merge_producer(into: &mut ProducerVerdict, from: &ProducerVerdict) {
    add(&mut into.counts, &from.counts);
    // Examples only: a sequence number found in several queues is shown once.
    let extend = |into: &mut Vec<u32>, from: &[u32]| {
        into.extend_from_slice(from);
        into.sort_unstable();
        into.dedup();
        into.truncate(SAMPLES);
    };
    extend(&mut into.first_lost_confirmed, &from.first_lost_confirmed);
    extend(
        &mut into.first_lost_unconfirmed,
        &from.first_lost_unconfirmed,
    );
    extend(&mut into.first_stranded, &from.first_stranded);
    extend(&mut into.first_dead_lettered, &from.first_dead_lettered);
    let extend_pairs = |into: &mut Vec<(u32, u32)>, from: &[(u32, u32)]| {
        into.extend_from_slice(from);
        into.sort_unstable();
        into.dedup_by_key(|(seq, _)| *seq);
        into.truncate(SAMPLES);
    };
    extend_pairs(&mut into.first_duplicated, &from.first_duplicated);
    extend_pairs(&mut into.first_reordered, &from.first_reordered);
}

/// One queue's records, owned as references: the ledgers of the producers whose messages
/// were routed to it, and the shards recorded for it.
pub struct QueueRecords<'a> {
    pub publishers: Vec<&'a PublishLedger>,
    pub consumers: Vec<&'a DeliveryShard>,
    pub final_read: Option<&'a DeliveryShard>,
    pub dead_letters: Option<&'a DeadLetterShard>,
}

impl<'a> QueueRecords<'a> {
    /// The records as evidence.
    pub fn evidence(&'a self) -> Evidence<'a> {
        Evidence {
            publishers: &self.publishers,
            consumers: &self.consumers,
            final_read: self.final_read,
            dead_letters: self.dead_letters,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(producer: u32, confirmed: u32) -> PublishLedger {
        let mut ledger = PublishLedger::new(producer);
        ledger.attempted = confirmed;
        for seq in 0..confirmed {
            ledger.confirmed.insert(seq);
        }
        ledger
    }

    fn delivered(
        producers: u32,
        producer: u32,
        seqs: impl IntoIterator<Item = u64>,
    ) -> DeliveryShard {
        let mut shard = DeliveryShard::new(producers);
        for seq in seqs {
            shard.record(producer, seq, false, 0, true);
        }
        shard
    }

    fn queue<'a>(name: &str, records: &'a QueueRecords<'a>) -> QueueEvidence<'a> {
        QueueEvidence {
            name: name.into(),
            node: None,
            queue_type: "classic".into(),
            evidence: records.evidence(),
            order_checked: true,
        }
    }

    #[test]
    fn a_message_lost_in_one_queue_of_a_fanout_is_lost_there_only() {
        let publisher = ledger(0, 10);
        let full = delivered(1, 0, 0..10);
        let partial = delivered(1, 0, (0..10).filter(|s| *s != 4));
        let a = QueueRecords {
            publishers: vec![&publisher],
            consumers: vec![&full],
            final_read: None,
            dead_letters: None,
        };
        let b = QueueRecords {
            publishers: vec![&publisher],
            consumers: vec![&partial],
            final_read: None,
            dead_letters: None,
        };
        let verdict = decide_queues(vec![queue("a", &a), queue("b", &b)], true);
        assert_eq!(verdict.queues[0].totals.lost_confirmed, 0);
        assert_eq!(verdict.queues[1].totals.lost_confirmed, 1);
        assert_eq!(verdict.totals.lost_confirmed, 1);
        assert_eq!(verdict.totals.confirmed, 20, "a copy per queue");
        assert_eq!(verdict.published, 10, "each message once");
        assert_eq!(verdict.totals.delivered, 19);
        assert_eq!(verdict.producers.len(), 1);
        assert_eq!(verdict.producers[0].first_lost_confirmed, vec![4]);
        assert_eq!(
            verdict.sets[0].lost_confirmed.iter().collect::<Vec<_>>(),
            vec![4]
        );
    }

    #[test]
    fn a_message_in_the_wrong_queue_is_unexpected_there_and_lost_where_it_belonged() {
        let p0 = ledger(0, 3);
        let p1 = ledger(1, 3);
        let q0 = delivered(2, 0, 0..3);
        let mut q1 = delivered(2, 1, 0..2);
        q1.record(0, 2, false, 0, true);
        let a = QueueRecords {
            publishers: vec![&p0],
            consumers: vec![&q0],
            final_read: None,
            dead_letters: None,
        };
        let b = QueueRecords {
            publishers: vec![&p1],
            consumers: vec![&q1],
            final_read: None,
            dead_letters: None,
        };
        let verdict = decide_queues(vec![queue("a", &a), queue("b", &b)], true);
        assert_eq!(verdict.queues[1].totals.unexpected, 1);
        assert_eq!(verdict.queues[1].totals.lost_confirmed, 1);
        assert_eq!(verdict.queues[0].producers.len(), 1);
        assert_eq!(verdict.queues[1].producers.len(), 2);
        assert_eq!(verdict.totals.attempted, 6);
        let sum: u64 = verdict.queues.iter().map(|q| q.totals.delivered).sum();
        assert_eq!(verdict.totals.delivered, sum);
    }
}
