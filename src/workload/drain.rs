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
use crate::ledger::PublishLedger;

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
    /// Messages that should have arrived, and how many of them had not when it ended.
    pub expected: u64,
    pub missing: u64,
}

impl DrainResult {
    pub(super) fn interrupted() -> Self {
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

/// What should arrive, per producer: confirmed and not returned (with confirms), else
/// everything published and not returned.
pub fn expected(ledgers: &[PublishLedger], confirms: bool) -> Vec<RoaringBitmap> {
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
pub(super) enum Expected {
    /// These sequence numbers, per producer (checked exactly against what consumers saw).
    Messages(Vec<RoaringBitmap>),
    /// This many first deliveries (`--no-verify`: no ledgers to check against).
    Count(u64),
}

impl Expected {
    fn total(&self) -> u64 {
        match self {
            Self::Messages(sets) => sets.iter().map(RoaringBitmap::len).sum(),
            Self::Count(count) => *count,
        }
    }

    /// Expected messages not delivered yet: asked exactly of every consumer, or counted.
    async fn missing(
        &self,
        snapshots: &[tokio::sync::mpsc::Sender<SnapshotRequest>],
        fresh: u64,
    ) -> u64 {
        match self {
            Self::Messages(sets) => missing(sets, snapshots).await,
            Self::Count(count) => count.saturating_sub(fresh),
        }
    }
}

/// What the drain works with.
pub(super) struct DrainInputs<'a> {
    pub expected: Expected,
    pub snapshots: &'a [tokio::sync::mpsc::Sender<SnapshotRequest>],
    pub totals: &'a (dyn Fn() -> Totals + Sync),
    pub setup: &'a SetupChannel,
    pub queue: &'a str,
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

/// Waits as described in the module documentation.
pub(super) async fn drain(inputs: DrainInputs<'_>) -> DrainResult {
    let started = Instant::now();
    let expected_total = inputs.expected.total();
    let mut last_fresh = (inputs.totals)().fresh;
    let mut last_change = Instant::now();
    let mut last_tick = Instant::now();
    let result = |end, missing| DrainResult {
        end,
        waited_s: started.elapsed().as_secs_f64(),
        expected: expected_total,
        missing,
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
        if totals.fresh >= expected_total {
            let missing = inputs
                .expected
                .missing(inputs.snapshots, (inputs.totals)().fresh)
                .await;
            if missing == 0 {
                return result(DrainEnd::Complete, 0);
            }
        }
        if totals.fresh != last_fresh {
            last_fresh = totals.fresh;
            last_change = Instant::now();
        } else if inputs.queue_empties
            && last_change.elapsed() >= IDLE_AFTER.max(inputs.processing_delay * 3)
            && matches!(
                crate::amqp::within(
                    inputs
                        .timeout
                        .saturating_sub(started.elapsed())
                        .max(Duration::from_secs(1)),
                    "checking the queue",
                    inputs.setup.ready_messages(inputs.queue)
                )
                .await,
                Ok(0)
            )
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

/// Expected messages no consumer has seen yet, asked exactly of every consumer: all at
/// once, within one 5 s bound. A consumer that cannot answer now (reconnecting, or its
/// request queue full) is not waited for: asked one after another with 5 s each, 500
/// consumers stuck reconnecting once held the drain for minutes past its timeout.
async fn missing(
    expected: &[RoaringBitmap],
    snapshots: &[tokio::sync::mpsc::Sender<SnapshotRequest>],
) -> u64 {
    let mut seen: Vec<RoaringBitmap> = vec![RoaringBitmap::new(); expected.len()];
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
        if let Ok(sets) = answer {
            for (producer, set) in sets.into_iter().enumerate().take(seen.len()) {
                seen[producer] |= set;
            }
        }
    }
    expected
        .iter()
        .zip(&seen)
        .map(|(expected, seen)| (expected - seen).len())
        .sum()
}
