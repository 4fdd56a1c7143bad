//! The final read, as Jepsen's total-queue checker ends: once publishing and the drain are
//! over and messages are still missing, the consumers' connections are closed (the broker
//! requeues what they held unacknowledged) and the run's queue is read to empty over a
//! fresh connection. A message only this read finds was stranded (held by the broker,
//! never delivered to a live consumer), not lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::link::Link;
use super::topology::Topology;
use crate::amqp::Endpoints;
use crate::amqp::{AmqpChannel, Deliveries, Delivery, Failure, FailureKind, QueueStatus, within};
use crate::events::{EventKind, EventLog};
use crate::ledger::DeliveryShard;
use crate::message::{self, DecodeError};
use crate::scenario::{Plan, QueueType};

/// Deliveries the final reader holds unacknowledged at most.
const PREFETCH: u16 = 1_000;
/// Acknowledged together (multiple) once this many have arrived.
const ACK_EVERY: u64 = 250;
/// Without a delivery for this long, the reader asks the broker whether the queue is empty.
const QUIET: Duration = Duration::from_millis(250);
/// How long one question to the broker may take.
const ASK_WITHIN: Duration = Duration::from_secs(5);
const SOURCE: &str = "final read";

/// What the final read needs.
pub struct FinalReadSetup<'a> {
    /// The broker itself (never a proxy: faults are over, and the read must not be faulted).
    pub uris: Arc<Endpoints>,
    pub topology: &'a Topology,
    /// The queues to read (indexes into the topology's): those with messages missing.
    pub queues: Vec<u32>,
    pub run_id: u64,
    pub producers: u32,
    /// How long the whole read may take.
    pub timeout: Duration,
    pub heartbeat: Duration,
    pub connection_name: String,
    pub events: EventLog,
    pub cancel: &'a CancellationToken,
}

/// How the final read went (verdict.json, summary.json and the report show it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalReadReport {
    /// Whether a final read ran (off in the scenario, not needed, or not possible).
    pub ran: bool,
    /// Every delivery it received, whatever it was.
    pub deliveries: u64,
    /// It ended with no ready message and no other consumer left on the queue.
    pub emptied: bool,
    /// How long it took.
    pub duration_ms: u64,
    /// Ready messages left in the queue after it (unknown when the broker did not say).
    pub ready_left: Option<u32>,
    /// Consumers besides the reader still on the queue at its end: their unacknowledged
    /// deliveries are neither read nor counted in `ready_left`.
    pub consumers_left: Option<u32>,
    /// Why it ended, in words.
    pub outcome: String,
}

/// The final read's deliveries and report.
pub struct FinalRead {
    /// What it found, per queue of the run (empty for a queue it did not read).
    pub shards: Vec<DeliveryShard>,
    pub report: FinalReadReport,
}

impl FinalRead {
    /// No final read: nothing found, and `why` in the report.
    pub fn skipped(queues: usize, producers: u32, why: &str) -> Self {
        Self {
            shards: vec![DeliveryShard::new(producers); queues],
            report: FinalReadReport {
                outcome: why.into(),
                ..FinalReadReport::default()
            },
        }
    }
}

/// What decides whether a final read runs.
pub struct Occasion<'a> {
    pub plan: &'a Plan,
    pub queue_type: QueueType,
    pub interrupted: bool,
    /// Expected messages the drain did not see delivered.
    pub missing: u64,
    /// Ledgers were kept (not `--no-verify`): what the read finds can be classified.
    pub verified: bool,
    /// Consumers that handed back their ledgers.
    pub consumers: usize,
}

/// What decides and makes the final read after the drain.
pub(super) struct AfterDrain<'a> {
    pub plan: &'a Plan,
    pub topology: &'a Topology,
    pub uris: &'a Arc<Endpoints>,
    pub run_id: u64,
    pub events: &'a EventLog,
    pub cancel: &'a CancellationToken,
    pub drain: &'a super::DrainResult,
    pub missing: &'a super::drain::MissingByQueue,
    pub verified: bool,
    /// A publisher or consumer failed without its ledger: there is no verdict to help.
    pub tasks_failed: bool,
}

/// The final read of the queues with messages missing, when one is needed and possible.
pub(super) async fn after_drain(phase: AfterDrain<'_>) -> FinalRead {
    let plan = phase.plan;
    let queues = phase.topology.queues.len();
    let producers = plan.publishers.count;
    if phase.tasks_failed {
        return FinalRead::skipped(queues, producers, "a task failed");
    }
    let why_not = why_not(Occasion {
        plan,
        queue_type: plan.topology.queue_type,
        interrupted: phase.cancel.is_cancelled(),
        missing: phase.drain.missing,
        verified: phase.verified,
        consumers: plan.consumers.count as usize,
    });
    if let Some(why) = why_not {
        return FinalRead::skipped(queues, producers, why);
    }
    read(FinalReadSetup {
        uris: phase.uris.clone(),
        topology: phase.topology,
        queues: phase.missing.queues(),
        run_id: phase.run_id,
        producers,
        timeout: plan.final_read.unwrap_or_default(),
        heartbeat: plan.consumers.heartbeat,
        connection_name: format!("warren {} final read", plan.name),
        events: phase.events.clone(),
        cancel: phase.cancel,
    })
    .await
}

/// Why no final read is needed or possible, or `None` when one should run.
pub fn why_not(occasion: Occasion<'_>) -> Option<&'static str> {
    if occasion.plan.final_read.is_none() {
        Some("off in the scenario")
    } else if occasion.queue_type == QueueType::Stream {
        Some("a stream is not read to empty")
    } else if occasion.interrupted {
        Some("interrupted")
    } else if !occasion.verified {
        Some("verification off")
    } else if occasion.missing == 0 {
        Some("nothing was missing")
    } else if occasion.consumers == 0 {
        Some("no consumer")
    } else {
        None
    }
}

/// Reads the setup's queues to empty, one after another, all within the setup's timeout.
pub async fn read(setup: FinalReadSetup<'_>) -> FinalRead {
    let started = Instant::now();
    let link = Link::new(
        setup.connection_name.clone(),
        setup.uris.clone(),
        0,
        setup.heartbeat,
        setup.events.clone(),
    );
    let mut reader = Reader {
        shard: DeliveryShard::new(setup.producers),
        run_id: setup.run_id,
        last_status: None,
    };
    let mut shards = vec![DeliveryShard::new(setup.producers); setup.topology.queues.len()];
    let deadline = tokio::time::Instant::now() + setup.timeout;
    let mut outcome = Ok(());
    let (mut ready_left, mut consumers_left) = (Some(0u32), Some(0u32));
    for &queue in &setup.queues {
        let name = &setup.topology.queues[queue as usize].name;
        reader.last_status = None;
        let read = if outcome.is_ok() {
            tokio::select! {
                () = setup.cancel.cancelled() => Err("interrupted".to_string()),
                () = tokio::time::sleep_until(deadline) => Err(format!(
                    "timed out after {} s",
                    setup.timeout.as_secs_f64()
                )),
                result = reader.run(&link, name, &setup) => result.map_err(|f| f.message),
            }
        } else {
            Err("not read: an earlier queue's read failed".into())
        };
        // What is left, asked on a channel of its own (the reader's may be gone).
        let status = within(ASK_WITHIN, "asking about the queue", async {
            let leased = link
                .lease(None, setup.cancel)
                .await
                .ok_or_else(|| Failure {
                    kind: FailureKind::ConnectionLost,
                    message: "interrupted".into(),
                })?;
            let channel = leased.connection.open_channel().await?;
            let status = channel.queue_status(name).await;
            channel.close().await;
            status
        })
        .await
        .ok()
        .or(reader.last_status);
        ready_left = ready_left.zip(status).map(|(sum, s)| sum + s.ready);
        consumers_left = consumers_left.zip(status).map(|(sum, s)| sum + s.consumers);
        shards[queue as usize] =
            std::mem::replace(&mut reader.shard, DeliveryShard::new(setup.producers));
        if let (Err(why), Ok(())) = (read, &outcome) {
            outcome = Err(if setup.topology.queues.len() > 1 {
                format!("queue {name}: {why}")
            } else {
                why
            });
        }
    }
    link.close().await;
    let report = FinalReadReport {
        ran: true,
        deliveries: shards.iter().map(|s| s.deliveries).sum(),
        emptied: outcome.is_ok(),
        duration_ms: started.elapsed().as_millis() as u64,
        ready_left,
        consumers_left,
        outcome: match outcome {
            Ok(()) if setup.queues.len() == 1 => "the queue was read to empty".into(),
            Ok(()) => format!("{} queues were read to empty", setup.queues.len()),
            Err(why) => why,
        },
    };
    setup.events.record(
        SOURCE,
        EventKind::FinalRead,
        format!(
            "{} deliveries in {} ms; {}",
            report.deliveries, report.duration_ms, report.outcome
        ),
    );
    FinalRead { shards, report }
}

struct Reader {
    shard: DeliveryShard,
    run_id: u64,
    /// The broker's last answer about the queue.
    last_status: Option<QueueStatus>,
}

impl Reader {
    /// Consumes until the queue is empty and nobody else holds its messages; reconnects
    /// when the connection fails (the caller's deadline bounds it all).
    async fn run(
        &mut self,
        link: &Link,
        queue: &str,
        setup: &FinalReadSetup<'_>,
    ) -> Result<(), Failure> {
        let mut failed_generation = None;
        loop {
            let Some(leased) = link.lease(failed_generation, setup.cancel).await else {
                return Err(Failure {
                    kind: FailureKind::ConnectionLost,
                    message: "interrupted".into(),
                });
            };
            let opened = within(ASK_WITHIN, "opening the final read", async {
                let channel = leased.connection.open_channel().await?;
                channel.qos(PREFETCH).await?;
                let deliveries = channel
                    .consume(queue, "warren-final-read", false, None)
                    .await?;
                Ok((channel, deliveries))
            })
            .await;
            let result = match opened {
                Ok((channel, deliveries)) => {
                    let result = self.drain(&channel, deliveries, queue).await;
                    channel.close().await;
                    result
                }
                Err(failure) => Err(failure),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(failure) if failure.kind == FailureKind::Refused => return Err(failure),
                Err(failure) => {
                    setup
                        .events
                        .record(SOURCE, EventKind::ConnectionLost, failure.message.clone());
                    failed_generation = Some(leased.generation);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Takes deliveries until a quiet moment finds the queue empty with no other consumer.
    async fn drain(
        &mut self,
        channel: &AmqpChannel,
        deliveries: Deliveries,
        queue: &str,
    ) -> Result<(), Failure> {
        // The reader itself is one of the consumers.
        let status = read_to_empty(channel, deliveries, queue, 1, |delivery| {
            self.record(&delivery.body, delivery.redelivered);
        })
        .await;
        match status {
            Ok(status) => {
                self.last_status = Some(status);
                Ok(())
            }
            Err(failure) => Err(failure),
        }
    }

    /// Records one delivery: the final reader never reorders or crashes, so order is not
    /// checked and duplicates are the broker's redeliveries.
    fn record(&mut self, body: &[u8], redelivered: bool) {
        match message::decode(body, self.run_id) {
            Ok(header) => {
                self.shard.record(
                    header.producer,
                    header.seq,
                    redelivered,
                    header.attempt,
                    false,
                );
            }
            Err(DecodeError::Corrupted) => self.shard.record_corrupted(),
            Err(DecodeError::Foreign | DecodeError::OtherRun) => self.shard.record_foreign(),
        }
    }
}

/// Takes deliveries from `queue`, acknowledging them in batches, until a quiet moment finds
/// it without a ready message and with at most `consumers` consumers on it (the reader's
/// own included); returns what the broker said then. Shared by the final read and the
/// dead-letter reader.
///
/// # Errors
/// The channel's failure; the broker cancelling the consumer is `Refused`.
pub(super) async fn read_to_empty(
    channel: &AmqpChannel,
    mut deliveries: Deliveries,
    queue: &str,
    consumers: u32,
    mut record: impl FnMut(&Delivery),
) -> Result<QueueStatus, Failure> {
    let mut unacked = 0u64;
    let mut last_tag = 0u64;
    loop {
        match tokio::time::timeout(QUIET, deliveries.next()).await {
            Ok(Some(Ok(delivery))) => {
                record(&delivery);
                unacked += 1;
                last_tag = delivery.tag;
                if unacked >= ACK_EVERY {
                    channel.ack(last_tag, true).await?;
                    unacked = 0;
                }
            }
            Ok(Some(Err(failure))) => return Err(failure),
            Ok(None) => {
                return Err(Failure {
                    kind: FailureKind::Refused,
                    message: format!("the broker cancelled the reader of queue {queue}"),
                });
            }
            Err(_quiet) => {
                if unacked > 0 {
                    channel.ack(last_tag, true).await?;
                    unacked = 0;
                }
                let status = within(
                    ASK_WITHIN,
                    "asking about the queue",
                    channel.queue_status(queue),
                )
                .await?;
                if status.ready == 0 && status.consumers <= consumers {
                    return Ok(status);
                }
            }
        }
    }
}
