//! The drain: after publishing ends, wait until every message that should arrive (every
//! confirmed one; without confirms, every published one) has been delivered, checked
//! exactly against the consumers' ledgers, or until nothing more can come, or a timeout.

use futures_util::StreamExt;
use std::time::{Duration, Instant};

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::SetupChannel;
use super::consumer::SnapshotRequest;
use super::progress::Totals;
use super::topology::Topology;
use crate::ledger::PublishLedger;
use crate::scenario::routing::Routes;
use crate::scenario::{Plan, QueueType};

/// With the queue empty, this long without a new delivery means nothing more will come.
const IDLE_AFTER: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(100);

/// How the drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainEnd {
    /// Every expected message was delivered.
    Complete,
    /// The queue was empty and consumers idle, with messages still missing.
    QueueEmpty,
    /// The drain timeout passed.
    TimedOut,
    /// Ctrl-C.
    Interrupted,
}

/// The drain's outcome.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct DrainResult {
    pub end: DrainEnd,
    /// How long it took.
    pub waited_s: f64,
    /// Messages that should have arrived (a copy per queue a message was routed to), and
    /// how many of them had not when it ended.
    pub expected: u64,
    pub missing: u64,
}

/// What the drain saw missing at its end, per queue of the run.
#[derive(Debug, Clone, Default)]
pub struct MissingByQueue(pub Vec<u64>);

impl MissingByQueue {
    /// The queues with something missing.
    pub fn queues(&self) -> Vec<u32> {
        (0..self.0.len() as u32)
            .filter(|&q| self.0[q as usize] > 0)
            .collect()
    }
}

impl DrainResult {
    fn interrupted() -> Self {
        Self {
            end: DrainEnd::Interrupted,
            waited_s: 0.0,
            expected: 0,
            missing: 0,
        }
    }

    /// One line for the event log.
    pub fn describe(&self) -> String {
        format!(
            "{:?} after {:.1} s; {} of {} expected message(s) missing",
            self.end, self.waited_s, self.missing, self.expected
        )
    }
}

/// What should arrive in each queue, per producer: confirmed and not returned (with
/// confirms), else everything published and not returned, of every producer whose messages
/// were routed to that queue.
pub fn expected(
    ledgers: &[PublishLedger],
    confirms: bool,
    routes: &Routes,
) -> Vec<Vec<RoaringBitmap>> {
    let queues = routes.bindings.len();
    let by_producer = expected_by_producer(ledgers, confirms);
    (0..queues as u32)
        .map(|queue| {
            by_producer
                .iter()
                .enumerate()
                .map(|(producer, set)| {
                    if routes.judged_in(producer as u32, queue) {
                        set.clone()
                    } else {
                        RoaringBitmap::new()
                    }
                })
                .collect()
        })
        .collect()
}

/// What should arrive of each producer's messages, wherever they were routed.
fn expected_by_producer(ledgers: &[PublishLedger], confirms: bool) -> Vec<RoaringBitmap> {
    let count = ledgers
        .iter()
        .map(|l| l.producer as usize + 1)
        .max()
        .unwrap_or(0);
    let mut expected = vec![RoaringBitmap::new(); count];
    for ledger in ledgers {
        let set = if confirms {
            ledger.confirmed.to_bitmap()
        } else {
            let mut all = RoaringBitmap::new();
            all.insert_range(0..ledger.attempted);
            all
        };
        expected[ledger.producer as usize] = set - ledger.returned.to_bitmap();
    }
    expected
}

/// What the drain waits for.
enum Expected {
    /// These sequence numbers, per queue and producer (checked exactly against what
    /// consumers saw).
    Messages(Vec<Vec<RoaringBitmap>>),
    /// This many first deliveries (`--no-verify`: no ledgers to check against).
    Count(u64),
    /// Unknown here: one worker of several cannot know what the others' consumers
    /// received, so it drains until the queues are empty and its consumers idle (after
    /// every worker has finished publishing); the merged verdict counts exactly.
    Elsewhere,
}

impl Expected {
    fn total(&self) -> u64 {
        match self {
            Self::Messages(queues) => queues.iter().flatten().map(RoaringBitmap::len).sum(),
            Self::Count(count) => *count,
            Self::Elsewhere => 0,
        }
    }

    /// Expected messages not delivered yet, per queue: asked exactly of every consumer,
    /// or counted (then all on the first queue).
    async fn missing(
        &self,
        snapshots: &[tokio::sync::mpsc::Sender<SnapshotRequest>],
        fresh: u64,
    ) -> MissingByQueue {
        match self {
            Self::Messages(sets) => missing(sets, snapshots).await,
            Self::Count(count) => MissingByQueue(vec![count.saturating_sub(fresh)]),
            Self::Elsewhere => MissingByQueue::default(),
        }
    }
}

/// What the drain works with.
struct DrainInputs<'a> {
    pub expected: Expected,
    pub snapshots: &'a [tokio::sync::mpsc::Sender<SnapshotRequest>],
    pub totals: &'a (dyn Fn() -> Totals + Sync),
    pub setup: &'a SetupChannel,
    /// The run's queues, by name.
    pub queues: &'a [String],
    /// The queue empties as messages are consumed, so an empty queue and idle consumers
    /// mean nothing more will come. Not so for a stream, which keeps every message: its
    /// drain waits for every message or the timeout.
    pub queue_empties: bool,
    pub timeout: Duration,
    /// A consumer's processing delay: idleness is only judged over several of them.
    pub processing_delay: Duration,
    pub cancel: &'a CancellationToken,
    pub on_tick: &'a mut (dyn FnMut(Totals) + Send),
}

/// What the drain after publishing works with.
pub(super) struct DrainPhase<'a> {
    pub plan: &'a Plan,
    pub topology: &'a Topology,
    /// The publishers' ledgers (what should arrive).
    pub ledgers: &'a [PublishLedger],
    /// Ledgers were kept: the drain checks exactly; else it counts.
    pub verify: bool,
    /// One worker of several: what should arrive is known only to the merge.
    pub shared: bool,
    pub snapshots: &'a [tokio::sync::mpsc::Sender<SnapshotRequest>],
    pub totals: &'a (dyn Fn() -> Totals + Sync),
    pub setup: &'a SetupChannel,
    pub cancel: &'a CancellationToken,
    pub on_tick: &'a mut (dyn FnMut(Totals) + Send),
}

/// The drain of a run whose publishing has ended (nothing when interrupted).
pub(super) async fn after_publishing(phase: DrainPhase<'_>) -> (DrainResult, MissingByQueue) {
    if phase.cancel.is_cancelled() {
        return (DrainResult::interrupted(), MissingByQueue::default());
    }
    let plan = phase.plan;
    let expected = if phase.shared {
        Expected::Elsewhere
    } else if phase.verify {
        Expected::Messages(expected(
            phase.ledgers,
            plan.publishers.confirm,
            &phase.topology.routes,
        ))
    } else if plan.publishers.confirm {
        Expected::Count((phase.totals)().confirmed)
    } else {
        Expected::Count(phase.ledgers.iter().map(|l| u64::from(l.attempted)).sum())
    };
    let queues: Vec<String> = phase
        .topology
        .queues
        .iter()
        .map(|q| q.name.clone())
        .collect();
    drain(DrainInputs {
        expected,
        snapshots: phase.snapshots,
        totals: phase.totals,
        setup: phase.setup,
        queues: &queues,
        queue_empties: plan.topology.queue_type != QueueType::Stream,
        timeout: plan.drain_timeout,
        processing_delay: plan.consumers.processing_delay.unwrap_or_default(),
        cancel: phase.cancel,
        on_tick: phase.on_tick,
    })
    .await
}

/// Waits as described in the module documentation; says what was missing at the end.
async fn drain(inputs: DrainInputs<'_>) -> (DrainResult, MissingByQueue) {
    let started = Instant::now();
    let expected_total = inputs.expected.total();
    let mut last_fresh = (inputs.totals)().fresh;
    let mut last_change = Instant::now();
    let mut last_tick = Instant::now();
    let result = |end, missing: MissingByQueue| {
        let result = DrainResult {
            end,
            waited_s: started.elapsed().as_secs_f64(),
            expected: expected_total,
            missing: missing.0.iter().sum(),
        };
        (result, missing)
    };
    loop {
        if inputs.cancel.is_cancelled() {
            return result(
                DrainEnd::Interrupted,
                inputs
                    .expected
                    .missing(inputs.snapshots, (inputs.totals)().fresh)
                    .await,
            );
        }
        let totals = (inputs.totals)();
        let knowable = !matches!(inputs.expected, Expected::Elsewhere);
        if knowable && totals.fresh >= expected_total {
            let missing = inputs
                .expected
                .missing(inputs.snapshots, (inputs.totals)().fresh)
                .await;
            if missing.0.iter().all(|m| *m == 0) {
                return result(DrainEnd::Complete, missing);
            }
        }
        if totals.fresh != last_fresh {
            last_fresh = totals.fresh;
            last_change = Instant::now();
        } else if inputs.queue_empties
            && last_change.elapsed() >= IDLE_AFTER.max(inputs.processing_delay * 3)
            && all_empty(
                inputs.setup,
                inputs.queues,
                inputs
                    .timeout
                    .saturating_sub(started.elapsed())
                    .max(Duration::from_secs(1)),
            )
            .await
        {
            return result(
                DrainEnd::QueueEmpty,
                inputs
                    .expected
                    .missing(inputs.snapshots, (inputs.totals)().fresh)
                    .await,
            );
        }
        if started.elapsed() >= inputs.timeout {
            return result(
                DrainEnd::TimedOut,
                inputs
                    .expected
                    .missing(inputs.snapshots, (inputs.totals)().fresh)
                    .await,
            );
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            (inputs.on_tick)(totals);
            last_tick = Instant::now();
        }
        tokio::select! {
            () = inputs.cancel.cancelled() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Whether every queue is without ready messages, asked within `bound`.
async fn all_empty(setup: &SetupChannel, queues: &[String], bound: Duration) -> bool {
    let asked = crate::amqp::within(bound, "checking the queues", async {
        for queue in queues {
            if setup.ready_messages(queue).await? > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    });
    matches!(asked.await, Ok(true))
}

/// Expected messages no consumer has seen yet, per queue, asked exactly of every consumer
/// (and the dead-letter reader): all at once, within one 5 s bound. A consumer that cannot answer now (reconnecting, or its
/// request queue full) is not waited for: asked one after another with 5 s each, 500
/// consumers stuck reconnecting once held the drain for minutes past its timeout.
async fn missing(
    expected: &[Vec<RoaringBitmap>],
    snapshots: &[tokio::sync::mpsc::Sender<SnapshotRequest>],
) -> MissingByQueue {
    let mut seen: Vec<Vec<RoaringBitmap>> = expected
        .iter()
        .map(|producers| vec![RoaringBitmap::new(); producers.len()])
        .collect();
    let answers: Vec<_> = snapshots
        .iter()
        .filter_map(|sender| {
            let (reply, answer) = oneshot::channel();
            sender.try_send(reply).ok().map(|()| answer)
        })
        .collect();
    let mut answers: futures_util::stream::FuturesUnordered<_> = answers.into_iter().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, answers.next()).await {
        for (queue, sets) in answer.into_iter().flatten() {
            let Some(seen) = seen.get_mut(queue as usize) else {
                continue;
            };
            for (producer, set) in sets.into_iter().enumerate().take(seen.len()) {
                seen[producer] |= set;
            }
        }
    }
    MissingByQueue(
        expected
            .iter()
            .zip(&seen)
            .map(|(expected, seen)| {
                expected
                    .iter()
                    .zip(seen)
                    .map(|(expected, seen)| (expected - seen).len())
                    .sum()
            })
            .collect(),
    )
}
