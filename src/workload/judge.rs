//! Judging the run: the records of every thread, the publishers' ledgers, the final read
//! and the dead letters, put together per queue and handed to the verdict.

use super::Totals;
use super::final_read::FinalRead;
use super::fleet::Clients;
use super::publisher::PublisherReport;
use super::setup;
use super::thread_records::QueueRecord;
use super::topology::Topology;
use crate::ledger::{
    Counts, DeadLetterShard, DeliveryShard, PublishLedger, QueueEvidence, QueueRecords, Verdict,
};
use crate::scenario::Plan;

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
    let clients = records.clients;
    let consumers: Vec<Vec<&DeliveryShard>> = records
        .queues
        .iter()
        .map(|queue| queue.iter().map(|r| &r.shard).collect())
        .collect();
    let final_read = records
        .final_read
        .report
        .ran
        .then_some(records.final_read.shards.as_slice());
    by_queues(Judged {
        plan: clients.plan,
        topology: clients.topology,
        nodes: clients.nodes,
        node_names: records.node_names,
        ledgers: &records.ledgers.iter().collect::<Vec<_>>(),
        consumers: &consumers,
        final_read,
        dead_letters: records.dead_letters,
    })
}

/// What the verdict of a run is made from, wherever it was recorded (one process, or
/// the workers of a shared run put together).
pub(crate) struct Judged<'a> {
    pub plan: &'a Plan,
    pub topology: &'a Topology,
    /// The broker's node count, and names in the order of its URIs.
    pub nodes: usize,
    pub node_names: &'a [String],
    /// Every publisher's ledger.
    pub ledgers: &'a [&'a PublishLedger],
    /// Per queue, every consumer shard of it.
    pub consumers: &'a [Vec<&'a DeliveryShard>],
    /// Per queue, what the final read found (when it ran).
    pub final_read: Option<&'a [DeliveryShard]>,
    /// Per queue, what the dead-letter reader found.
    pub dead_letters: Option<&'a [Option<DeadLetterShard>]>,
}

/// Judges each queue on its evidence and adds the verdicts up.
pub(crate) fn by_queues(judged: Judged<'_>) -> Verdict {
    let topology = judged.topology;
    let by_queue: Vec<QueueRecords<'_>> = (0..topology.queues.len() as u32)
        .map(|queue| QueueRecords {
            publishers: judged
                .ledgers
                .iter()
                .copied()
                .filter(|l| topology.routes.judged_in(l.producer, queue))
                .collect(),
            consumers: judged
                .consumers
                .get(queue as usize)
                .cloned()
                .unwrap_or_default(),
            final_read: judged.final_read.and_then(|f| f.get(queue as usize)),
            dead_letters: judged
                .dead_letters
                .and_then(|d| d.get(queue as usize))
                .and_then(Option::as_ref),
        })
        .collect();
    crate::ledger::decide_queues(
        by_queue
            .iter()
            .zip(&topology.queues)
            .enumerate()
            .map(|(queue, (evidence, spec))| QueueEvidence {
                name: spec.name.clone(),
                node: judged
                    .node_names
                    .get(setup::home_node(queue as u32, judged.nodes))
                    .cloned(),
                queue_type: crate::scenario::serde_name(&spec.queue_type),
                evidence: evidence.evidence(),
                order_checked: super::fleet::order_promised(judged.plan, topology, queue as u32),
            })
            .collect(),
        judged.plan.publishers.confirm,
    )
}
