//! One consumer: prefetch, manual acknowledgements (one by one or `multiple` every K) or
//! automatic ones, reconnection after failures, an optional processing delay and an
//! optional crash (the channel closed without acknowledging, every K deliveries) to
//! exercise redelivery. Every delivery is recorded in its thread's ledger of the consumer's queue.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::link::Link;
use super::progress::ConsumerCounters;
use super::thread_records::{Seen, SharedRecords};
use super::topology::Topology;
use crate::amqp::{
    AmqpChannel, Deliveries, Delivery, Failure, FailureKind, OPEN_WITHIN, StreamStart, within,
};
use crate::events::{EventKind, EventLog};
use crate::message::{self, DecodeError};
use crate::metrics::Clock;
use crate::metrics::activity::Activity;
use crate::precise_timer::PreciseTimer;
use crate::scenario::{AckMode, ConsumerPlan, QueueType};

/// A partial batch of acknowledgements waits at most this long for more deliveries.
const ACK_FLUSH_AFTER: Duration = Duration::from_millis(100);

/// Deliberate mistakes for testing the checker itself: a checker that cannot fail is
/// worth nothing. Not reachable from scenario files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sabotage {
    /// Acknowledge every Kth delivery without recording it.
    pub drop_every: Option<u64>,
    /// Record every Kth delivery twice.
    pub double_every: Option<u64>,
    /// After K deliveries, stop reading: what comes after is neither recorded nor
    /// acknowledged (a consumer that hangs), for the final read to find.
    pub stop_after: Option<u64>,
    /// Panic at the Kth delivery (a task that dies without handing back its ledger).
    pub panic_at: Option<u64>,
    /// Reject every Kth delivery without requeueing (and without recording it): the
    /// broker dead-letters it.
    pub reject_every: Option<u64>,
}

/// A request for what a task has seen so far.
pub type SnapshotRequest = oneshot::Sender<Seen>;

/// Everything one consumer task needs.
pub struct ConsumerSetup {
    pub index: u32,
    /// The queue it reads (an index into the topology's queues).
    pub queue: u32,
    pub plan: ConsumerPlan,
    pub topology: Arc<Topology>,
    pub link: Arc<Link>,
    pub run_id: u64,
    pub clock: Clock,
    /// FIFO is promised (one consumer): reorders are counted.
    pub order_promised: bool,
    pub counters: Arc<ConsumerCounters>,
    pub events: EventLog,
    pub cancel: CancellationToken,
    /// Told once the first basic.consume succeeded.
    pub ready: Option<oneshot::Sender<()>>,
    pub sabotage: Sabotage,
    /// Record every delivery in the ledger shard (off under `--no-verify`: counts only,
    /// and a delivery is fresh unless the broker flags it redelivered).
    pub verify: bool,
    /// Each worker's attempt (one entry in a run of one process): producer `p`'s messages
    /// come from worker `p mod len`, and a message of another attempt of that worker is
    /// not this run's.
    pub worker_attempts: Arc<[u8]>,
}

/// What a consumer hands back when it ends.
pub struct ConsumerReport {
    /// Every delivery it received, whatever it was.
    pub deliveries: u64,
    /// Deliveries the sabotage dropped, doubled or rejected: (producer, sequence number).
    pub sabotaged_dropped: Vec<(u32, u64)>,
    pub sabotaged_doubled: Vec<(u32, u64)>,
    pub sabotaged_rejected: Vec<(u32, u64)>,
    /// Clock reading of the last delivery of one of this run's messages (0 if none).
    pub last_delivery_ns: u64,
    /// When first deliveries came (gaps only), for recovery times.
    pub activity: Activity,
}

/// How long a consumer the broker cancelled waits to see whether its channel closes too
/// (a broker shutting down) before it asks about the queue.
const CANCEL_SETTLES_WITHIN: Duration = Duration::from_secs(1);

enum End {
    Cancelled,
    Failed(Failure),
    /// The channel is given up on purpose and a new one opened, for the reason recorded:
    /// a crash (`crash_every`), a hole in the delivery tags, a stall.
    Reopen(EventKind, String),
    /// The broker cancelled the consumer (basic.cancel): its queue was deleted, or
    /// crashed, or a stream's member went away.
    CancelledByBroker,
}

struct Consumer {
    setup: ConsumerSetup,
    source: String,
    /// Its thread's records: seconds, and the ledger of its queue.
    records: SharedRecords,
    /// Every delivery it received.
    deliveries: u64,
    report_dropped: Vec<(u32, u64)>,
    report_doubled: Vec<(u32, u64)>,
    report_rejected: Vec<(u32, u64)>,
    fresh: u64,
    last_delivery_ns: u64,
    /// Clock reading of the last delivery of any kind, for the stall check.
    last_arrival_ns: u64,
    activity: Activity,
    /// Where the next subscription reads from, on a stream queue: the first offset at
    /// the start, then the one after the last delivery (a stream never redelivers; the
    /// consumer resumes).
    stream_next: Option<StreamStart>,
}

/// Runs a consumer until `cancel` fires, recording into its thread's `records`.
pub async fn run(setup: ConsumerSetup, records: SharedRecords) -> ConsumerReport {
    let mut consumer = Consumer {
        source: format!("consumer {}", setup.index),
        records,
        deliveries: 0,
        report_dropped: Vec::new(),
        report_doubled: Vec::new(),
        report_rejected: Vec::new(),
        fresh: 0,
        last_delivery_ns: 0,
        last_arrival_ns: 0,
        activity: Activity::default(),
        stream_next: (setup.topology.queues[setup.queue as usize].queue_type == QueueType::Stream)
            .then_some(StreamStart::First),
        setup,
    };
    consumer.run().await;
    ConsumerReport {
        deliveries: consumer.deliveries,
        sabotaged_dropped: consumer.report_dropped,
        sabotaged_doubled: consumer.report_doubled,
        sabotaged_rejected: consumer.report_rejected,
        last_delivery_ns: consumer.last_delivery_ns,
        activity: consumer.activity,
    }
}

impl Consumer {
    /// The name of the queue this consumer reads.
    fn queue_name(&self) -> &str {
        &self.setup.topology.queues[self.setup.queue as usize].name
    }

    async fn run(&mut self) {
        let cancel = self.setup.cancel.clone();
        let mut failed_generation = None;
        loop {
            let Some(leased) = self.setup.link.lease(failed_generation, &cancel).await else {
                return;
            };
            let (channel, deliveries) = match self.open(&leased.connection).await {
                Ok(opened) => opened,
                Err(failure) => {
                    let refused = failure.kind == FailureKind::Refused;
                    self.setup.events.record(
                        &self.source,
                        if refused {
                            EventKind::Refused
                        } else {
                            EventKind::ChannelClosed
                        },
                        failure.message,
                    );
                    if refused {
                        return;
                    }
                    failed_generation = Some(leased.generation);
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                    continue;
                }
            };
            if let Some(ready) = self.setup.ready.take() {
                let _ = ready.send(());
            }
            match self.session(&channel, deliveries).await {
                End::Cancelled => {
                    channel.close().await;
                    return;
                }
                End::Reopen(kind, detail) => {
                    self.setup.events.record(&self.source, kind, detail);
                    channel.close().await;
                    failed_generation = None;
                }
                End::CancelledByBroker => {
                    let (kind, detail) = self.why_cancelled(&channel).await;
                    self.setup.events.record(&self.source, kind, detail);
                    channel.close().await;
                    failed_generation = None;
                }
                End::Failed(failure) => {
                    let lost = failure.kind == FailureKind::ConnectionLost;
                    self.setup.events.record(
                        &self.source,
                        if lost {
                            EventKind::ConnectionLost
                        } else {
                            EventKind::ChannelClosed
                        },
                        failure.message,
                    );
                    channel.close().await;
                    failed_generation = lost.then_some(leased.generation);
                }
            }
        }
    }

    /// Why the broker cancelled this consumer: a passive declare of the queue gives the
    /// broker's own words when the queue is gone (`404 NOT_FOUND - no queue ...`, or
    /// `... has crashed and failed to restart`). The consumer then declares the queue
    /// again, as a recovering client would; what the queue held is lost, and the verdict
    /// counts it.
    async fn why_cancelled(&self, channel: &AmqpChannel) -> (EventKind, String) {
        let queue = self.queue_name();
        // A broker shutting down cancels consumers just before it closes their
        // connections; asking it about the queue then holds up its shutdown (a restart
        // took 20 s instead of 5). The question waits for that second to pass.
        let settle = tokio::time::Instant::now() + CANCEL_SETTLES_WITHIN;
        while channel.is_open() && tokio::time::Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !channel.is_open() {
            return (
                EventKind::ChannelClosed,
                format!("the broker cancelled the consumer and closed the channel (queue {queue})"),
            );
        }
        match within(
            OPEN_WITHIN,
            "checking the queue",
            channel.ready_messages(queue),
        )
        .await
        {
            Err(failure) if failure.kind == FailureKind::Refused => (
                EventKind::QueueDeleted,
                format!(
                    "the broker cancelled the consumer; queue {queue} is gone: {}",
                    failure.message
                ),
            ),
            Err(failure) => (
                EventKind::ChannelClosed,
                format!(
                    "the broker cancelled the consumer; checking queue {queue} failed: {}",
                    failure.message
                ),
            ),
            Ok(_) => (
                EventKind::ChannelClosed,
                format!("the broker cancelled the consumer; queue {queue} is still there"),
            ),
        }
    }

    async fn open(
        &self,
        connection: &crate::amqp::AmqpConnection,
    ) -> Result<(AmqpChannel, Deliveries), Failure> {
        within(OPEN_WITHIN, "opening a channel", async {
            let channel = connection.open_channel().await?;
            let manual = self.setup.plan.ack == AckMode::Manual;
            if manual {
                channel.qos(self.setup.plan.prefetch).await?;
            }
            self.setup
                .topology
                .declare(&channel, self.setup.queue)
                .await?;
            let tag = format!("warren-consumer-{}", self.setup.index);
            let deliveries = channel
                .consume(self.queue_name(), &tag, !manual, self.stream_next)
                .await?;
            Ok((channel, deliveries))
        })
        .await
    }

    async fn session(&mut self, channel: &AmqpChannel, mut deliveries: Deliveries) -> End {
        let manual = self.setup.plan.ack == AckMode::Manual;
        let batch = u64::from(self.setup.plan.multiple_ack_every);
        let crash_every = self.setup.plan.crash_every;
        let mut unacked: u64 = 0;
        let mut last_tag = 0;
        let mut since_open: u64 = 0;
        // Delivery tags on a channel are consecutive from 1: a skip is a hole in the stream.
        let mut next_tag: u64 = 1;
        // When something last arrived, on the run's clock (`handle` reads it anyway).
        self.last_arrival_ns = self.setup.clock.now_ns();
        let stall_ns = self.setup.plan.stall_timeout.as_nanos() as u64;
        let stall_timeout = self.setup.plan.stall_timeout;
        let mut acks = FuturesUnordered::new();
        let flush = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(flush);
        let mut timer = PreciseTimer::new();
        // Hands quiet seconds over too.
        let mut second = tokio::time::interval(Duration::from_secs(1));
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // One wait for the run's cancellation for the whole session, not one per delivery.
        let cancel = self.setup.cancel.clone();
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);
        loop {
            tokio::select! {
                biased;
                () = &mut cancelled => {
                    if unacked > 0 {
                        let _ = channel.ack(last_tag, true).await;
                    }
                    return End::Cancelled;
                }
                Some(result) = acks.next(), if !acks.is_empty() => {
                    if let Err(failure) = result {
                        return End::Failed(failure);
                    }
                }
                item = deliveries.next() => {
                    let delivery = match item {
                        Some(Ok(delivery)) => delivery,
                        Some(Err(failure)) => return End::Failed(failure),
                        None => return End::CancelledByBroker,
                    };
                    if self.stopped() {
                        self.last_arrival_ns = self.setup.clock.now_ns();
                        continue;
                    }
                    let tag = delivery.tag;
                    let hole = tag.saturating_sub(next_tag);
                    next_tag = tag + 1;
                    if let Some(offset) = delivery.stream_offset {
                        self.stream_next = Some(StreamStart::Offset(offset + 1));
                    }
                    if !self.handle(delivery) {
                        // The sabotage only: off the hot path.
                        if let Err(failure) = channel.reject(tag).await {
                            return End::Failed(failure);
                        }
                        continue;
                    }
                    if hole > 0 && manual {
                        // Never acknowledge across the hole: what came before it, then this
                        // one alone; the broker redelivers the missing ones on a new channel.
                        if unacked > 0 {
                            let _ = channel.ack(last_tag, true).await;
                        }
                        let _ = channel.ack(tag, false).await;
                        return End::Reopen(
                            EventKind::StreamHole,
                            format!("{hole} deliveries never arrived; reopening the channel so the broker delivers them again"),
                        );
                    }
                    if hole > 0 {
                        self.setup.events.record(
                            &self.source,
                            EventKind::StreamHole,
                            format!("{hole} deliveries never arrived (automatic acknowledgement: the broker will not deliver them again)"),
                        );
                    }
                    if let Some(delay) = self.setup.plan.processing_delay {
                        // To the microsecond: tokio's timer would round a 200 µs delay up
                        // to the next millisecond tick.
                        timer.sleep_until(std::time::Instant::now() + delay).await;
                    }
                    since_open += 1;
                    if crash_every.is_some_and(|k| since_open >= k) {
                        return End::Reopen(
                            EventKind::ConsumerCrash,
                            "channel closed without acknowledging".into(),
                        );
                    }
                    if manual {
                        unacked += 1;
                        last_tag = tag;
                        if unacked >= batch {
                            acks.push(channel.ack(last_tag, batch > 1));
                            unacked = 0;
                        } else if unacked == 1 {
                            // A batch begins: it goes out within the flush time even if
                            // it never fills (acked at once, a message sets no timer).
                            flush.as_mut().reset(tokio::time::Instant::now() + ACK_FLUSH_AFTER);
                        }
                    }
                }
                () = &mut flush, if unacked > 0 => {
                    acks.push(channel.ack(last_tag, true));
                    unacked = 0;
                }
                _ = second.tick() => {
                    let now_ns = self.setup.clock.now_ns();
                    if manual && !self.stopped() && now_ns.saturating_sub(self.last_arrival_ns) >= stall_ns {
                        if let Some(why) = self.stalled(channel, stall_timeout).await {
                            return End::Reopen(
                                EventKind::ConsumerStalled,
                                format!("{why}; reopening the channel"),
                            );
                        }
                        self.last_arrival_ns = self.setup.clock.now_ns();
                    }
                }
            }
        }
    }

    /// Whether the sabotage made this consumer stop reading.
    fn stopped(&self) -> bool {
        self.setup
            .sabotage
            .stop_after
            .is_some_and(|k| self.deliveries >= k)
    }

    /// After a quiet `stall_timeout`: why this consumer is stalled, if it is (its queue
    /// holds ready messages the broker does not send it, or the broker does not answer).
    async fn stalled(&self, channel: &AmqpChannel, stall_timeout: Duration) -> Option<String> {
        let queue = self.queue_name();
        let quiet = stall_timeout.as_secs_f64();
        match within(
            stall_timeout.min(OPEN_WITHIN),
            "checking the queue",
            channel.queue_status(queue),
        )
        .await
        {
            Ok(status) if status.ready > 0 => Some(format!(
                "nothing arrived for {quiet:.1} s while queue {queue} held {} ready message(s)",
                status.ready
            )),
            Ok(_) => None,
            Err(failure) => Some(format!(
                "nothing arrived for {quiet:.1} s and checking queue {queue} failed: {}",
                failure.message
            )),
        }
    }

    /// Records one delivery in its thread's ledger of the queue and in the seconds'
    /// counts and histograms. False when the sabotage rejects it instead.
    #[inline]
    fn handle(&mut self, delivery: Delivery) -> bool {
        let now_ns = self.setup.clock.now_ns();
        self.last_arrival_ns = now_ns;
        self.deliveries += 1;
        if delivery.redelivered {
            self.setup.counters.redelivered.bump();
        }
        let count = self.deliveries;
        let mut records = self.records.borrow_mut();
        records.recorder.tick(now_ns);
        records.recorder.counts.deliveries += 1;
        let second = records.recorder.second();
        let queue = self.setup.queue;
        let decoded = message::decode(&delivery.body, self.setup.run_id).and_then(|header| {
            let attempts = &self.setup.worker_attempts;
            let worker = header.producer as usize % attempts.len().max(1);
            match attempts.get(worker) {
                Some(&attempt) if attempt != header.worker_attempt => Err(DecodeError::OtherRun),
                _ => Ok(header),
            }
        });
        match decoded {
            Ok(header) => {
                let sabotage = self.setup.sabotage;
                assert!(
                    sabotage.panic_at != Some(count),
                    "sabotage: consumer {} panics at delivery {count}",
                    self.setup.index
                );
                if sabotage.reject_every.is_some_and(|k| count % k == 0) {
                    records.queue(queue).shard.deliveries += 1;
                    self.report_rejected.push((header.producer, header.seq));
                    return false;
                }
                if sabotage.drop_every.is_some_and(|k| count % k == 0) {
                    records.queue(queue).shard.deliveries += 1;
                    self.report_dropped.push((header.producer, header.seq));
                } else {
                    let record = records.queue(queue);
                    let fresh = if self.setup.verify {
                        record.shard.record(
                            header.producer,
                            header.seq,
                            delivery.redelivered,
                            header.attempt,
                            self.setup.order_promised,
                        )
                    } else {
                        record.shard.deliveries += 1;
                        !delivery.redelivered
                    };
                    if fresh {
                        record
                            .series
                            .record(second, now_ns.saturating_sub(header.intended_ns) / 1_000);
                        self.fresh += 1;
                        self.last_delivery_ns = now_ns;
                        self.activity.note(now_ns);
                        records.recorder.counts.delivered += 1;
                        records.recorder.latencies.record_delivery(
                            header.intended_ns,
                            header.sent_ns,
                            now_ns,
                        );
                    } else {
                        records.recorder.counts.duplicates += 1;
                    }
                    if sabotage.double_every.is_some_and(|k| count % k == 0) {
                        records.queue(queue).shard.record(
                            header.producer,
                            header.seq,
                            false,
                            header.attempt,
                            self.setup.order_promised,
                        );
                        self.report_doubled.push((header.producer, header.seq));
                    }
                }
            }
            Err(DecodeError::Corrupted) => records.queue(queue).shard.record_corrupted(),
            Err(DecodeError::Foreign | DecodeError::OtherRun) => {
                records.queue(queue).shard.record_foreign();
            }
        }
        drop(records);
        self.setup.counters.deliveries.set(self.deliveries);
        self.setup.counters.fresh.set(self.fresh);
        true
    }
}
