//! Judging the run: the records of every thread, the publishers' ledgers, the final read
//! and the dead letters, put together per queue and handed to the verdict.

use super::Totals;
use super::final_read::FinalRead;
use super::fleet::Clients;
use super::publisher::PublisherReport;
use super::setup;
use super::thread_records::QueueRecord;
use crate::ledger::{Counts, DeadLetterShard, PublishLedger, QueueEvidence, QueueRecords, Verdict};

/// Per queue, the records of the threads that had a consumer of it.
pub(super) fn by_queue(
    threads: Vec<Vec<Option<QueueRecord>>>,
    queues: usize,
) -> Vec<Vec<QueueRecord>> {
    let mut by_queue: Vec<Vec<QueueRecord>> = (0..queues).map(|_| Vec::new()).collect();
    for thread in threads {
        for (queue, record) in thread.into_iter().enumerate() {
            if let (Some(record), Some(into)) = (record, by_queue.get_mut(queue)) {
                into.push(record);
            }
        }
    }
    by_queue
}

/// Everything the verdict is made from.
pub(super) struct Records<'a> {
    pub clients: &'a Clients<'a>,
    pub ledgers: &'a [PublishLedger],
    pub publishers: &'a [PublisherReport],
    /// Per queue, the threads' records of it.
    pub queues: &'a [Vec<QueueRecord>],
    pub final_read: &'a FinalRead,
    /// Per queue, what the dead-letter reader found.
    pub dead_letters: Option<&'a [Option<DeadLetterShard>]>,
    /// The broker's node names, in the order of its URIs.
    pub node_names: &'a [String],
    /// `--no-verify`: no ledgers were kept; the live totals at the end of the drain are
    /// all there is.
    pub unverified: Option<Totals>,
}

/// The verdict: judged per queue, or only counted under `--no-verify`.
pub(super) fn decide(records: Records<'_>) -> Verdict {
    let Some(totals) = records.unverified else {
        return verdict(records);
    };
    let ledgers = records.ledgers;
    Verdict::unverified(
        Counts {
            attempted: ledgers.iter().map(|l| u64::from(l.attempted)).sum(),
            confirmed: records.publishers.iter().map(|r| r.acked).sum(),
            republished: ledgers.iter().map(|l| l.republished).sum(),
            delivered: totals.fresh,
            ..Counts::default()
        },
        totals.deliveries,
        records.clients.plan.publishers.confirm,
    )
}

/// The run's verdict: each queue judged on the ledgers of the publishers routed to it
/// and the records of its consumers, its final read and its dead letters.
fn verdict(records: Records<'_>) -> Verdict {
    let topology = records.clients.topology;
    let by_queue: Vec<QueueRecords<'_>> = (0..topology.queues.len() as u32)
        .map(|queue| QueueRecords {
            publishers: records
                .ledgers
                .iter()
                .filter(|l| topology.routes.judged_in(l.producer, queue))
                .collect(),
            consumers: records.queues[queue as usize]
                .iter()
                .map(|r| &r.shard)
                .collect(),
            final_read: records
                .final_read
                .report
                .ran
                .then(|| &records.final_read.shards[queue as usize]),
            dead_letters: records
                .dead_letters
                .and_then(|d| d[queue as usize].as_ref()),
        })
        .collect();
    crate::ledger::decide_queues(
        by_queue
            .iter()
            .zip(&topology.queues)
            .enumerate()
            .map(|(queue, (evidence, spec))| QueueEvidence {
                name: spec.name.clone(),
                node: records
                    .node_names
                    .get(setup::home_node(queue as u32, records.clients.nodes))
                    .cloned(),
                queue_type: crate::scenario::serde_name(&spec.queue_type),
                evidence: evidence.evidence(),
                order_checked: records.clients.order_promised(queue as u32),
            })
            .collect(),
        records.clients.plan.publishers.confirm,
    )
}
