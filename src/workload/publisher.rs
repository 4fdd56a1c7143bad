//! One publisher: a channel in confirm mode with up to `max_in_flight` publishes awaiting
//! the broker's answer at once (pipelined, never publish-then-wait), open-loop pacing,
//! and the reliable recipe's failure handling: on a lost connection, a closed channel, a
//! nack or a confirm timeout, unconfirmed messages are republished with the same sequence
//! numbers (at-least-once) or dropped, per the scenario.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;

use super::inflight::{InFlight, Window};
use super::link::Link;
use super::pacing::{Pace, Sizes};
use super::progress::PublisherCounters;
use super::thread_records::SharedRecords;
use super::topology::Topology;
use crate::amqp::{
    AmqpChannel, Failure, FailureKind, OPEN_WITHIN, PublishOutcome, PublishTarget, within,
};
use crate::deadline::PublishingDeadline;
use crate::events::{EventKind, EventLog};
use crate::ledger::PublishLedger;
use crate::message::{self, HEADER_LEN, Header};
use crate::metrics::Clock;
use crate::metrics::activity::Activity;
use crate::precise_timer::PreciseTimer;
use crate::scenario::{OnFailure, PublisherPlan};

/// With no deadline, how long a publisher tries to reconnect before it gives up.
const RECONNECT_GIVE_UP: Duration = Duration::from_secs(300);

/// Without confirms, how many publishes may wait to be handed to the connection.
const UNCONFIRMED_PIPELINE: usize = 256;
/// After a nack, a republishing publisher holds off sending this long, doubling with
/// every nack burst up to the cap and back to the start after a second without nacks: a
/// broker that refuses messages (a full queue, a queue without a leader) is not asked
/// again at once.
/// The shortest sleep between two sends of a paced publisher: messages due sooner are sent
/// together on the next wake-up, at most this late. Below 10,000 msg/s per publisher every
/// message gets its own wake-up at its due time; above, wake-ups stay at 10,000 a second.
const WAKE_QUANTUM_NS: u64 = 100_000;
const NACK_BACKOFF_START: Duration = Duration::from_millis(10);
/// How late a paced message due before the deadline may be, once the deadline has passed,
/// and still be sent: a publisher woken a little late by a busy CPU sends the run's last
/// messages rather than dropping them, while one that fell behind (a throttled network, a
/// blocked connection) stops at the deadline, as the duration promised, instead of
/// catching up after it.
const LATE_GRACE_NS: u64 = 500_000_000;
const NACK_BACKOFF_CAP: Duration = Duration::from_secs(1);

/// Everything one publisher task needs.
pub struct PublisherSetup {
    pub producer: u32,
    /// This worker's attempt, written into every message (0 in a run of one process).
    pub worker_attempt: u8,
    pub plan: PublisherPlan,
    pub topology: Arc<Topology>,
    pub link: Arc<Link>,
    pub run_id: u64,
    pub clock: Clock,
    pub sizes: Sizes,
    /// When message 0 is due, and the rate of this publisher.
    pub pace: Pace,
    /// No new message after this (it may move while faults hold it).
    pub deadline: Option<PublishingDeadline>,
    /// No new message after this many.
    pub messages: Option<u64>,
    /// After the deadline, how long unconfirmed messages may still be retried.
    pub finish_within: Duration,
    pub counters: Arc<PublisherCounters>,
    pub events: EventLog,
    pub cancel: CancellationToken,
    /// Keep the ledger of confirmed messages (off under `--no-verify`: counts only).
    pub verify: bool,
}

/// What a publisher hands back when it ends.
pub struct PublisherReport {
    pub ledger: PublishLedger,
    /// Confirms received (acks), counted whether or not the ledger is kept.
    pub acked: u64,
    /// When it sent its last new message (the end of its publishing phase).
    pub publishing_ended: Option<Instant>,
    /// When the broker confirmed messages (gaps only), for recovery times.
    pub activity: Activity,
}

/// A message waiting to be published (again).
#[derive(Debug, Clone, Copy)]
struct Pending {
    seq: u32,
    attempt: u16,
    intended_ns: u64,
}

/// How a channel session ended.
enum End {
    /// Every message answered and nothing more to send.
    Finished,
    Cancelled,
    Failed(Failure),
}

struct Publisher {
    setup: PublisherSetup,
    source: String,
    ledger: PublishLedger,
    /// Its thread's records: the seconds' counts and histograms.
    records: SharedRecords,
    target: PublishTarget,
    /// Sequence number of the next new message.
    next_seq: u32,
    generating: bool,
    publishing_ended: Option<Instant>,
    retry: VecDeque<Pending>,
    window: Window,
    /// Bodies to reuse: only the header changes between messages.
    spare: Vec<Vec<u8>>,
    sent: u64,
    /// Acks received.
    acked: u64,
    activity: Activity,
    /// No message is sent before this clock reading (a nack backoff).
    hold_until_ns: u64,
    nack_backoff: Duration,
    /// Wakes the publisher when its next message is due, to the microsecond.
    timer: PreciseTimer,
}

/// Whether the message due at `due_ns` (`None`: unpaced, due now) is past the run's
/// `deadline`, read at `now_ns`: after the deadline, a paced message due before it is still
/// sent when it is at most [`LATE_GRACE_NS`] late.
fn out_of_time(due_ns: Option<u64>, now_ns: u64, deadline: u64) -> bool {
    match due_ns {
        Some(due) if due >= deadline => true,
        Some(due) => now_ns >= deadline && now_ns - due > LATE_GRACE_NS,
        None => now_ns >= deadline,
    }
}

/// Runs a publisher until its messages are all answered, it gives up, or `cancel` fires,
/// recording into its thread's `records`.
pub async fn run(setup: PublisherSetup, records: SharedRecords) -> PublisherReport {
    let window_size = if setup.plan.confirm {
        setup.plan.max_in_flight as usize
    } else {
        UNCONFIRMED_PIPELINE
    };
    let topology = setup.topology.clone();
    let mut publisher = Publisher {
        source: format!("publisher {}", setup.producer),
        ledger: PublishLedger::new(setup.producer),
        records,
        target: PublishTarget::new(
            &topology.exchange,
            topology.routing_key(setup.producer),
            setup.plan.mandatory,
            setup.plan.persistent,
        ),
        next_seq: 0,
        generating: true,
        publishing_ended: None,
        retry: VecDeque::new(),
        window: Window::new(window_size * 2),
        spare: Vec::with_capacity(window_size),
        sent: 0,
        acked: 0,
        activity: Activity::default(),
        hold_until_ns: 0,
        nack_backoff: NACK_BACKOFF_START,
        timer: PreciseTimer::new(),
        setup,
    };
    publisher.run().await;
    publisher
        .setup
        .counters
        .failures
        .set(publisher.ledger.indeterminate.len());
    PublisherReport {
        ledger: publisher.ledger,
        acked: publisher.acked,
        publishing_ended: publisher.publishing_ended,
        activity: publisher.activity,
    }
}

impl Publisher {
    async fn run(&mut self) {
        let cancel = self.setup.cancel.clone();
        let mut failed_generation = None;
        loop {
            if self.finish_deadline_passed() {
                self.abandon_all("the finishing time after the end of publishing ran out");
                return;
            }
            // A run bounded by a message count has no finishing time while it publishes:
            // it gives up after a long time without any connection instead.
            let give_up = self
                .give_up_at()
                .or_else(|| Some(tokio::time::Instant::now() + RECONNECT_GIVE_UP));
            // Owing nothing (no message to retry), a publisher whose time is up is done,
            // even while it waits for a connection.
            let done_at = self
                .setup
                .deadline
                .clone()
                .filter(|_| self.retry.is_empty());
            let leased = tokio::select! {
                leased = self.setup.link.lease(failed_generation, &cancel) => leased,
                () = passed(done_at.as_ref()), if done_at.is_some() => {
                    self.stop_generating();
                    return;
                }
                () = sleep_until(give_up), if give_up.is_some() => {
                    self.abandon_all("no connection before the finishing time ran out");
                    return;
                }
            };
            let Some(leased) = leased else { return };
            let channel = match self.open(&leased.connection).await {
                Ok(channel) => channel,
                Err(failure) => {
                    failed_generation = self.on_setup_failure(&failure, leased.generation).await;
                    if failure.kind == FailureKind::Refused {
                        return;
                    }
                    continue;
                }
            };
            match self.session(&channel).await {
                End::Finished => {
                    channel.close().await;
                    return;
                }
                End::Cancelled => {
                    self.unanswered_at_failure(false);
                    return;
                }
                End::Failed(failure) => {
                    let kind = if failure.kind == FailureKind::ConnectionLost {
                        EventKind::ConnectionLost
                    } else {
                        EventKind::ChannelClosed
                    };
                    self.setup
                        .events
                        .record(&self.source, kind, failure.message.clone());
                    self.unanswered_at_failure(true);
                    channel.close().await;
                    failed_generation =
                        (failure.kind == FailureKind::ConnectionLost).then_some(leased.generation);
                }
            }
        }
    }

    async fn open(&self, connection: &crate::amqp::AmqpConnection) -> Result<AmqpChannel, Failure> {
        within(OPEN_WITHIN, "opening a channel", async {
            let channel = connection.open_channel().await?;
            if self.setup.plan.confirm {
                channel.confirm_select().await?;
            }
            let topology = &self.setup.topology;
            topology
                .declare(&channel, topology.queue_of_publisher(self.setup.producer))
                .await?;
            Ok(channel)
        })
        .await
    }

    async fn on_setup_failure(&mut self, failure: &Failure, generation: u64) -> Option<u64> {
        let kind = if failure.kind == FailureKind::Refused {
            EventKind::Refused
        } else {
            EventKind::ChannelClosed
        };
        self.setup
            .events
            .record(&self.source, kind, failure.message.clone());
        if failure.kind == FailureKind::Refused {
            self.abandon_all("the broker refused the topology");
            return None;
        }
        tokio::select! {
            () = self.setup.cancel.cancelled() => {}
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        Some(generation)
    }

    /// One channel's life: send while the window has room and messages are due; take the
    /// broker's answers as they come.
    async fn session(&mut self, channel: &AmqpChannel) -> End {
        let window_size = if self.setup.plan.confirm {
            self.setup.plan.max_in_flight as usize
        } else {
            UNCONFIRMED_PIPELINE
        };
        let confirm_timeout_ns = self.setup.plan.confirm_timeout.as_nanos() as u64;
        let target = self.target.clone();
        let mut inflight = FuturesUnordered::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // One wait for the run's cancellation for the whole session: made anew each turn,
        // it took the token's lock three times per message.
        let cancel = self.setup.cancel.clone();
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);
        loop {
            let now_ns = self.setup.clock.now_ns();
            while inflight.len() < window_size && !self.window.is_full() {
                let Some(pending) = self.next_message(now_ns) else {
                    break;
                };
                let body = self.body_for(pending, now_ns);
                let id = self.window.push(InFlight::new(
                    pending.seq,
                    pending.attempt,
                    pending.intended_ns,
                    now_ns,
                ));
                inflight.push(publish(channel, &target, body, id));
            }
            self.setup.counters.sent.set(self.sent);
            self.setup.counters.in_flight.set(inflight.len() as u64);
            if inflight.is_empty() && !self.generating && self.retry.is_empty() {
                return End::Finished;
            }
            let wake = self.next_wake(
                inflight.len() < window_size && !self.window.is_full(),
                now_ns,
            );
            tokio::select! {
                biased;
                () = &mut cancelled => return End::Cancelled,
                Some((id, result, body)) = inflight.next(), if !inflight.is_empty() => {
                    self.spare.push(body);
                    match result {
                        Ok(outcome) => self.settle(id, outcome),
                        Err(failure) => return End::Failed(failure),
                    }
                }
                () = self.timer.sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
                _ = tick.tick() => {
                    let now_ns = self.setup.clock.now_ns();
                    if self.window.oldest_sent_ns().is_some_and(|sent| now_ns.saturating_sub(sent) > confirm_timeout_ns) {
                        self.setup.events.record(&self.source, EventKind::ConfirmTimeout, format!("no confirm within {} ms", confirm_timeout_ns / 1_000_000));
                        // A broker that stopped answering: the connection is as good as lost.
                        return End::Failed(Failure { kind: FailureKind::ConnectionLost, message: "confirm timeout".into() });
                    }
                    if self.finish_deadline_passed() {
                        return End::Failed(Failure { kind: FailureKind::ChannelClosed, message: "finishing time ran out".into() });
                    }
                    if self.setup.plan.mandatory && !self.setup.plan.confirm {
                        self.collect_returns(channel).await;
                    }
                }
            }
        }
    }

    /// The next message to send now, if any: republishes first, then a new message if due.
    #[inline]
    fn next_message(&mut self, now_ns: u64) -> Option<Pending> {
        if now_ns < self.hold_until_ns {
            return None;
        }
        if let Some(pending) = self.retry.pop_front() {
            return Some(pending);
        }
        if !self.generating {
            return None;
        }
        let seq = self.next_seq;
        let out_of_messages = self
            .setup
            .messages
            .is_some_and(|limit| u64::from(seq) >= limit)
            || seq == u32::MAX;
        let due_ns = self.setup.pace.due_ns(u64::from(seq));
        let out_of_time = self
            .setup
            .deadline
            .as_ref()
            .is_some_and(|deadline| out_of_time(due_ns, now_ns, deadline.ns()));
        if out_of_messages || out_of_time {
            self.stop_generating();
            return None;
        }
        let intended_ns = match due_ns {
            Some(due) if due > now_ns => return None,
            Some(due) => due,
            None => now_ns,
        };
        self.next_seq += 1;
        self.ledger.attempted = self.next_seq;
        Some(Pending {
            seq,
            attempt: 0,
            intended_ns,
        })
    }

    fn stop_generating(&mut self) {
        if self.generating {
            self.generating = false;
            // A deadline that passed while disconnected ended publishing then, not now.
            let now = Instant::now();
            self.publishing_ended = Some(self.deadline().map_or(now, |deadline| deadline.min(now)));
        }
    }

    /// When to wake up to send the next new message (or to stop on time), at the earliest
    /// one quantum after `now_ns`.
    fn next_wake(&self, has_room: bool, now_ns: u64) -> Option<Instant> {
        let earliest = self.setup.clock.instant_at(now_ns + WAKE_QUANTUM_NS);
        self.next_due(has_room, now_ns).map(|due| due.max(earliest))
    }

    /// When the next thing is due: the end of a backoff, the next message, the deadline.
    fn next_due(&self, has_room: bool, now_ns: u64) -> Option<Instant> {
        if has_room && self.hold_until_ns > now_ns {
            return Some(self.setup.clock.instant_at(self.hold_until_ns));
        }
        if !self.generating || !has_room || !self.retry.is_empty() {
            return None;
        }
        let due = self
            .setup
            .pace
            .due_ns(u64::from(self.next_seq))
            .map(|ns| self.setup.clock.instant_at(ns));
        match (due, self.deadline()) {
            (Some(due), Some(deadline)) => Some(due.min(deadline)),
            (Some(due), None) => Some(due),
            (None, Some(deadline)) if Instant::now() >= deadline => Some(deadline),
            _ => None,
        }
    }

    /// A body for `pending`, reusing a spare buffer: payload pattern once, header each time.
    #[inline]
    fn body_for(&mut self, pending: Pending, now_ns: u64) -> Vec<u8> {
        let size = self
            .setup
            .sizes
            .size(self.setup.producer, pending.seq)
            .max(HEADER_LEN);
        let mut body = self.spare.pop().unwrap_or_default();
        if body.len() != size {
            body.resize(size, 0);
            message::fill_payload(
                &mut body[HEADER_LEN..],
                self.setup.run_id ^ u64::from(self.setup.producer),
            );
        }
        let header = Header {
            run_id: self.setup.run_id,
            producer: self.setup.producer,
            seq: u64::from(pending.seq),
            attempt: pending.attempt,
            worker_attempt: self.setup.worker_attempt,
            intended_ns: pending.intended_ns,
            sent_ns: now_ns,
        };
        message::encode(&mut body, &header);
        self.sent += 1;
        {
            let mut records = self.records.borrow_mut();
            records.recorder.tick(now_ns);
            records.recorder.counts.sent += 1;
        }
        if pending.attempt > 0 {
            self.ledger.republished += 1;
            self.setup.counters.republished.bump();
        }
        body
    }

    /// Records the broker's answer to message `id`.
    #[inline]
    fn settle(&mut self, id: u64, outcome: PublishOutcome) {
        let entry = self.window.complete(id);
        match outcome {
            PublishOutcome::Acked => {
                self.acked += 1;
                if self.setup.verify {
                    self.ledger.confirmed.insert(entry.seq);
                }
                let now_ns = self.setup.clock.now_ns();
                let mut records = self.records.borrow_mut();
                records.recorder.tick(now_ns);
                records.recorder.counts.confirmed += 1;
                records
                    .recorder
                    .latencies
                    .record_confirm(entry.sent_ns, now_ns);
                drop(records);
                self.activity.note(now_ns);
                self.setup.counters.confirmed.set(self.acked);
            }
            PublishOutcome::Returned { acked } => {
                self.records.borrow_mut().recorder.counts.returned += 1;
                self.setup.counters.returned.bump();
                self.ledger.returned.insert(entry.seq);
                if acked {
                    self.ledger.confirmed.insert(entry.seq);
                } else {
                    self.ledger.nacked.insert(entry.seq);
                }
            }
            PublishOutcome::Nacked => {
                self.records.borrow_mut().recorder.counts.nacked += 1;
                self.setup.counters.nacked.bump();
                self.ledger.nacked.insert(entry.seq);
                let now_ns = self.setup.clock.now_ns();
                // Nacks of one burst (answers to what was sent before the hold) count once.
                if self.setup.plan.on_failure == OnFailure::Republish
                    && now_ns >= self.hold_until_ns
                {
                    // A second without nacks after the last hold starts the backoff afresh.
                    if now_ns - self.hold_until_ns > NACK_BACKOFF_CAP.as_nanos() as u64 {
                        self.nack_backoff = NACK_BACKOFF_START;
                    }
                    self.hold_until_ns = now_ns + self.nack_backoff.as_nanos() as u64;
                    self.nack_backoff = (self.nack_backoff * 2).min(NACK_BACKOFF_CAP);
                }
                self.retry_or_drop(&[entry]);
            }
            PublishOutcome::Sent => {}
        }
    }

    /// After a failure: every unanswered message is indeterminate (with confirms), then
    /// republished or dropped. Without `failed` (cancelled) they are only recorded.
    fn unanswered_at_failure(&mut self, failed: bool) {
        let unanswered = self.window.take_unanswered();
        if self.setup.plan.confirm {
            for entry in &unanswered {
                self.ledger.indeterminate.insert(entry.seq);
            }
        }
        if failed {
            self.retry_or_drop(&unanswered);
        }
    }

    fn retry_or_drop(&mut self, entries: &[InFlight]) {
        if entries.is_empty() {
            return;
        }
        match self.setup.plan.on_failure {
            OnFailure::Republish if !self.finish_deadline_passed() => {
                for entry in entries {
                    let attempt = entry.attempt.saturating_add(1);
                    self.retry.push_back(Pending {
                        seq: entry.seq,
                        attempt,
                        intended_ns: entry.intended_ns,
                    });
                }
                self.setup.events.record(
                    &self.source,
                    EventKind::Republishing,
                    format!("{} unconfirmed message(s)", entries.len()),
                );
            }
            _ => {
                self.ledger.abandoned += entries.len() as u64;
                self.setup.events.record(
                    &self.source,
                    EventKind::Dropped,
                    format!("{} unconfirmed message(s)", entries.len()),
                );
            }
        }
    }

    fn abandon_all(&mut self, why: &str) {
        self.stop_generating();
        let mut count = self.retry.len() as u64;
        self.retry.clear();
        for entry in self.window.take_unanswered() {
            if self.setup.plan.confirm {
                self.ledger.indeterminate.insert(entry.seq);
            }
            count += 1;
        }
        if count > 0 {
            self.ledger.abandoned += count;
            self.setup.events.record(
                &self.source,
                EventKind::Dropped,
                format!("{count} message(s): {why}"),
            );
        }
    }

    /// The deadline now.
    fn deadline(&self) -> Option<Instant> {
        self.setup
            .deadline
            .as_ref()
            .map(PublishingDeadline::instant)
    }

    fn finish_deadline_passed(&self) -> bool {
        self.give_up_at()
            .is_some_and(|at| tokio::time::Instant::now() > at)
    }

    /// When unconfirmed messages stop being retried: `finish_within` after publishing ended
    /// (or after the deadline, if that comes first).
    fn give_up_at(&self) -> Option<tokio::time::Instant> {
        let ended = match (self.publishing_ended, self.deadline()) {
            (Some(ended), Some(deadline)) => Some(ended.min(deadline)),
            (ended, deadline) => ended.or(deadline),
        };
        ended.map(|at| (at + self.setup.finish_within).into())
    }

    /// Without confirms, returned messages only show up here.
    async fn collect_returns(&mut self, channel: &AmqpChannel) {
        if let Ok(bodies) = channel.take_returned().await {
            for body in bodies {
                if let Ok(header) = message::decode(&body, self.setup.run_id) {
                    if let Ok(seq) = u32::try_from(header.seq) {
                        self.ledger.returned.insert(seq);
                    }
                }
            }
        }
    }
}

/// One publish, owning its body until the broker answers; hands the body back for reuse.
async fn publish(
    channel: &AmqpChannel,
    target: &PublishTarget,
    body: Vec<u8>,
    id: u64,
) -> (u64, Result<PublishOutcome, Failure>, Vec<u8>) {
    let result = channel.publish(target, &body).await;
    (id, result, body)
}

async fn sleep_until(wake: Option<tokio::time::Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Until `deadline` passes (never without one).
async fn passed(deadline: Option<&PublishingDeadline>) {
    match deadline {
        Some(deadline) => deadline.passed().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_publisher_woken_late_still_sends_what_was_due_before_the_deadline() {
        let deadline = 10_000_000_000;
        // Woken 5 ms late for the run's last message: sent.
        assert!(!out_of_time(
            Some(deadline - 1),
            deadline + 5_000_000,
            deadline
        ));
        assert!(out_of_time(Some(deadline), deadline - 1, deadline));
        // Four seconds behind (a throttled path): not caught up after the deadline.
        assert!(out_of_time(
            Some(deadline - 4_000_000_000),
            deadline,
            deadline
        ));
        // Behind before the deadline: still sent.
        assert!(!out_of_time(
            Some(deadline - 4_000_000_000),
            deadline - 1,
            deadline
        ));
        assert!(out_of_time(None, deadline, deadline));
        assert!(!out_of_time(None, deadline - 1, deadline));
    }
}
