//! The reader of the run's dead-letter queue: from the start of the run to its end it takes
//! every message the broker moved aside (a length limit, an expiry, a delivery limit),
//! records it by its `x-death` reason, and tells the drain what it has seen. When the run
//! stops it, it reads the queue to empty before handing its record back.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::consumer::SnapshotRequest;
use super::link::Link;
use super::topology::{DeadLetters, Topology};
use crate::amqp::Endpoints;
use crate::amqp::{AmqpChannel, Deliveries, Delivery, Failure, FailureKind, within};
use crate::events::{EventKind, EventLog};
use crate::ledger::{DeadLetterShard, DeathReason};
use crate::message::{self, DecodeError};

/// Dead letters held unacknowledged at most.
const PREFETCH: u16 = 500;
/// Acknowledged together once this many have arrived, or after [`QUIET`].
const ACK_EVERY: u64 = 100;
/// A quiet moment: acknowledgements go out, and when stopping, the queue is checked.
const QUIET: Duration = Duration::from_millis(250);
/// How long one question to the broker may take.
const ASK_WITHIN: Duration = Duration::from_secs(5);
const SOURCE: &str = "dead-letter reader";

/// What the reader needs.
pub struct DeadLetterSetup {
    /// The broker itself, never a proxy: the reader is bookkeeping, not under test.
    pub uris: Arc<Endpoints>,
    /// What it reads (and declares again after a reconnection: a broker restart may
    /// have lost them).
    pub dead_letters: DeadLetters,
    /// The run's topology: a dead letter is recorded for the queue it came from.
    pub topology: Arc<Topology>,
    pub run_id: u64,
    pub producers: u32,
    pub heartbeat: Duration,
    pub connection_name: String,
    pub events: EventLog,
    /// Fired when the run is over: read what is left, then stop.
    pub stop: CancellationToken,
    /// How long reading what is left may take.
    pub finish_within: Duration,
    /// The drain's questions: what has been dead-lettered so far.
    pub snapshots: mpsc::Receiver<SnapshotRequest>,
}

/// How long reading the rest of the dead-letter queue may take at the end.
const FINISH_WITHIN: Duration = Duration::from_secs(10);

/// A reader running for the run, on the coordinator's runtime.
pub(super) struct Reading {
    /// Where the drain asks what has been dead-lettered.
    pub snapshots: mpsc::Sender<SnapshotRequest>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Vec<Option<DeadLetterShard>>>,
}

impl Reading {
    /// Starts reading the run's dead letters, when its queues have some (`None` else).
    pub fn start(
        plan: &crate::scenario::Plan,
        topology: &Arc<Topology>,
        uris: &Arc<Endpoints>,
        events: &EventLog,
        run_id: u64,
    ) -> Option<Self> {
        let dead = topology.dead_letters.as_ref()?;
        let (snapshots, snapshot_rx) = mpsc::channel(1);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(DeadLetterSetup {
            uris: uris.clone(),
            dead_letters: dead.clone(),
            topology: Arc::clone(topology),
            run_id,
            producers: plan.publishers.count,
            heartbeat: plan.consumers.heartbeat,
            connection_name: format!("warren {} dead letters", plan.name),
            events: events.clone(),
            stop: stop.clone(),
            finish_within: FINISH_WITHIN,
            snapshots: snapshot_rx,
        }));
        Some(Self {
            snapshots,
            stop,
            task,
        })
    }

    /// Reads what is left and returns every dead letter, per queue (`None` for a queue
    /// that dead-lettered nothing).
    ///
    /// # Errors
    /// [`super::WorkloadError::TaskFailed`] when the reader panicked.
    pub async fn finish(self) -> Result<Vec<Option<DeadLetterShard>>, super::WorkloadError> {
        self.stop.cancel();
        self.task
            .await
            .map_err(|error| super::WorkloadError::TaskFailed {
                task: "dead-letter reader".into(),
                reason: if error.is_panic() {
                    super::shards::panic_text(&*error.into_panic())
                } else {
                    "cancelled".into()
                },
            })
    }
}

/// Reads dead letters until stopped, then to empty; returns what it found, per queue.
pub async fn run(mut setup: DeadLetterSetup) -> Vec<Option<DeadLetterShard>> {
    let link = Link::new(
        setup.connection_name.clone(),
        setup.uris.clone(),
        0,
        setup.heartbeat,
        setup.events.clone(),
    );
    let mut reader = Reader {
        shards: vec![None; setup.topology.queues.len().max(1)],
        producers: setup.producers,
        topology: Arc::clone(&setup.topology),
        run_id: setup.run_id,
    };
    let never = CancellationToken::new();
    let mut failed_generation = None;
    let mut emptied = false;
    while !setup.stop.is_cancelled() {
        let leased = tokio::select! {
            () = setup.stop.cancelled() => break,
            leased = link.lease(failed_generation, &never) => leased,
        };
        let Some(leased) = leased else { break };
        let opened = within(ASK_WITHIN, "opening the dead-letter queue", async {
            let channel = leased.connection.open_channel().await?;
            channel.qos(PREFETCH).await?;
            setup.dead_letters.declare(&channel).await?;
            let deliveries = channel
                .consume_dead_letters(&setup.dead_letters.queue.name, "warren-dead-letters")
                .await?;
            Ok((channel, deliveries))
        })
        .await;
        let failure = match opened {
            Ok((channel, deliveries)) => {
                let result = reader.session(&channel, deliveries, &mut setup).await;
                channel.close().await;
                match result {
                    Ok(()) => {
                        emptied = true;
                        break;
                    }
                    Err(failure) => failure,
                }
            }
            Err(failure) => failure,
        };
        setup
            .events
            .record(SOURCE, EventKind::ChannelClosed, failure.message);
        failed_generation = Some(leased.generation);
        tokio::select! {
            () = setup.stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    // Stopped while reconnecting: one more pass reads what is left.
    if !emptied {
        let finish = async {
            let leased = link.lease(None, &never).await?;
            let channel = leased.connection.open_channel().await.ok()?;
            channel.qos(PREFETCH).await.ok()?;
            let deliveries = channel
                .consume_dead_letters(&setup.dead_letters.queue.name, "warren-dead-letters-last")
                .await
                .ok()?;
            let result = reader
                .read_to_empty(&channel, deliveries, &setup.dead_letters.queue.name)
                .await;
            channel.close().await;
            result.ok()
        };
        let _ = tokio::time::timeout(setup.finish_within, finish).await;
    }
    link.close().await;
    reader.shards
}

struct Reader {
    /// Per queue, made at its first dead letter.
    shards: Vec<Option<DeadLetterShard>>,
    producers: u32,
    topology: Arc<Topology>,
    run_id: u64,
}

impl Reader {
    /// Takes dead letters and answers the drain until stopped; then reads to empty.
    /// `Ok` when the queue was read to empty after the stop.
    async fn session(
        &mut self,
        channel: &AmqpChannel,
        mut deliveries: Deliveries,
        setup: &mut DeadLetterSetup,
    ) -> Result<(), Failure> {
        let mut unacked = 0u64;
        let mut last_tag = 0u64;
        loop {
            tokio::select! {
                () = setup.stop.cancelled() => {
                    if unacked > 0 {
                        channel.ack(last_tag, true).await?;
                    }
                    return tokio::time::timeout(
                        setup.finish_within,
                        self.read_to_empty(channel, deliveries, &setup.dead_letters.queue.name),
                    )
                    .await
                    .unwrap_or(Ok(()));
                }
                Some(request) = setup.snapshots.recv() => {
                    let _ = request.send(
                        self.shards
                            .iter()
                            .enumerate()
                            .filter_map(|(queue, shard)| {
                                shard.as_ref().map(|shard| (queue as u32, shard.snapshot()))
                            })
                            .collect(),
                    );
                }
                item = tokio::time::timeout(QUIET, deliveries.next()) => match item {
                    Ok(Some(Ok(delivery))) => {
                        last_tag = delivery.tag;
                        self.record(&delivery);
                        unacked += 1;
                        if unacked >= ACK_EVERY {
                            channel.ack(last_tag, true).await?;
                            unacked = 0;
                        }
                    }
                    Ok(Some(Err(failure))) => return Err(failure),
                    Ok(None) => return Err(Failure {
                        kind: FailureKind::ChannelClosed,
                        message: format!(
                            "the broker cancelled the consumer of {}",
                            setup.dead_letters.queue.name
                        ),
                    }),
                    Err(_quiet) if unacked > 0 => {
                        channel.ack(last_tag, true).await?;
                        unacked = 0;
                    }
                    Err(_quiet) => {}
                },
            }
        }
    }

    /// Reads until a quiet moment finds the queue without ready messages (the consumer
    /// that read it during the run may still be counted as it closes).
    async fn read_to_empty(
        &mut self,
        channel: &AmqpChannel,
        deliveries: Deliveries,
        queue: &str,
    ) -> Result<(), Failure> {
        super::final_read::read_to_empty(channel, deliveries, queue, u32::MAX, |delivery| {
            self.record(delivery)
        })
        .await
        .map(|_| ())
    }

    fn record(&mut self, delivery: &Delivery) {
        // One queue: whatever came is its. Several: the queue the broker names; a dead
        // letter from a queue not of the run is foreign (kept on the first queue's record).
        let queue = match delivery.death_queue.as_deref() {
            _ if self.topology.queues.len() <= 1 => Some(0),
            Some(name) => self.topology.queue_index(name).map(|q| q as usize),
            None => None,
        };
        let producers = self.producers;
        let shard = self.shards[queue.unwrap_or(0)]
            .get_or_insert_with(|| DeadLetterShard::new(producers))
            .reason(DeathReason::from_header(delivery.death_reason.as_deref()));
        if queue.is_none() {
            shard.record_foreign();
            return;
        }
        match message::decode(&delivery.body, self.run_id) {
            Ok(header) => {
                shard.record(header.producer, header.seq, false, header.attempt, false);
            }
            Err(DecodeError::Corrupted) => shard.record_corrupted(),
            Err(DecodeError::Foreign | DecodeError::OtherRun) => shard.record_foreign(),
        }
    }
}
