//! The run's clients: consumers and publishers started on the client threads, each with
//! its connection slot (on the node its queue was placed on, when there are several
//! queues), and their reports collected at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::consumer::{self, ConsumerReport, Sabotage};
use super::link::Link;
use super::pacing::{Pace, Sizes};
use super::progress::{ConsumerCounters, PublisherCounters};
use super::publisher::{self, PublisherReport};
use super::shards::{Shards, TaskHandle};
use super::topology::Topology;
use super::{WorkloadError, setup};
use crate::amqp::Endpoints;
use crate::deadline::PublishingDeadline;
use crate::events::{EventKind, EventLog};
use crate::metrics::Clock;
use crate::scenario::{AckMode, BodySize, Plan};
use crate::share::Share;

/// How long closing every connection at the end may take in all.
const CLOSE_ALL_WITHIN: Duration = Duration::from_secs(10);

/// What starting clients needs.
pub(super) struct Clients<'a> {
    pub plan: &'a Plan,
    pub topology: &'a Arc<Topology>,
    pub events: &'a EventLog,
    pub run_id: u64,
    pub clock: Clock,
    /// The broker's node count (queues are placed on node q mod nodes).
    pub nodes: usize,
    pub verify: bool,
    /// The share of the scenario's clients this process runs.
    pub share: Share,
    /// Each worker's attempt, as learned when the workers met.
    pub worker_attempts: Arc<[u8]>,
}

impl Clients<'_> {
    /// Whether RabbitMQ promises FIFO to the consumers of `queue` (a single one, manual
    /// acks), so that reorders are counted.
    pub fn order_promised(&self, queue: u32) -> bool {
        order_promised(self.plan, self.topology, queue)
    }

    /// The node a connection slot of clients paired with `queue_of(slot)` connects to
    /// first: with several queues, the node that queue was placed on; with one, slots are
    /// spread over the nodes.
    fn first_node(&self, slot: u32, queue_of: impl Fn(u32) -> u32) -> usize {
        if self.topology.queues.len() > 1 {
            setup::home_node(queue_of(slot), self.nodes)
        } else {
            slot as usize
        }
    }

    /// This process's connection slots for the clients of `role`: its share of the
    /// scenario's `count` (slot `s` first serves this worker's `s`-th client).
    fn links(
        &self,
        uris: &Arc<Endpoints>,
        role: &str,
        count: u32,
        heartbeat: Duration,
        queue_of: impl Fn(u32) -> u32,
    ) -> Vec<Arc<Link>> {
        let share = self.share;
        (0..count.div_ceil(share.count).max(1))
            .map(|i| {
                let first_client = i * share.count + share.index;
                let name = if share.is_shared() {
                    format!(
                        "warren {} {role} {first_client} (worker {share})",
                        self.plan.name
                    )
                } else {
                    format!("warren {} {role} {i}", self.plan.name)
                };
                Arc::new(Link::new(
                    name,
                    uris.clone(),
                    self.first_node(first_client, &queue_of),
                    heartbeat,
                    self.events.clone(),
                ))
            })
            .collect()
    }

    /// The connection slot of client `index` (one this worker owns) among `slots`.
    fn slot_of(&self, index: u32, slots: usize) -> usize {
        (index / self.share.count) as usize % slots
    }

    /// Starts every consumer on the thread of its connection slot.
    pub fn start_consumers(
        &self,
        shards: &Shards,
        uris: &Arc<Endpoints>,
        sabotage: Sabotage,
        cancel: &CancellationToken,
    ) -> Consumers {
        let plan = self.plan;
        let topology = self.topology;
        let links = self.links(
            uris,
            "consumers",
            plan.consumers.connections,
            plan.consumers.heartbeat,
            |slot| topology.queue_of_consumer(slot),
        );
        let cancel = cancel.child_token();
        let mut consumers = Consumers {
            counters: Vec::new(),
            ready: Vec::new(),
            handles: Vec::new(),
            links,
            cancel,
        };
        for index in (0..plan.consumers.count).filter(|&c| self.share.owns(c)) {
            let (ready_tx, ready_rx) = oneshot::channel();
            let counters = Arc::new(ConsumerCounters::default());
            consumers.counters.push(counters.clone());
            consumers.ready.push(ready_rx);
            let queue = topology.queue_of_consumer(index);
            let slot = self.slot_of(index, consumers.links.len());
            let setup = consumer::ConsumerSetup {
                index,
                queue,
                plan: plan.consumers.clone(),
                topology: topology.clone(),
                link: consumers.links[slot].clone(),
                run_id: self.run_id,
                clock: self.clock,
                order_promised: self.order_promised(queue),
                counters,
                events: self.events.clone(),
                cancel: consumers.cancel.clone(),
                ready: Some(ready_tx),
                sabotage,
                verify: self.verify,
                worker_attempts: self.worker_attempts.clone(),
            };
            consumers
                .handles
                .push(shards.spawn(slot, move |records| consumer::run(setup, records)));
        }
        consumers
    }

    /// Starts every publisher on the thread of its connection slot, message 0 due at
    /// `start`.
    pub fn start_publishers(
        &self,
        shards: &Shards,
        uris: &Arc<Endpoints>,
        (start, deadline): (Instant, Option<PublishingDeadline>),
        cancel: &CancellationToken,
    ) -> Publishers {
        let plan = self.plan;
        let topology = self.topology;
        let producers = plan.publishers.count;
        let links = self.links(
            uris,
            "publishers",
            plan.publishers.connections,
            plan.publishers.heartbeat,
            |slot| topology.queue_of_publisher(slot),
        );
        let cancel = cancel.child_token();
        let start_ns = self.clock.ns_at(start);
        let rate_each = plan.publishers.rate.map(|r| r / f64::from(producers));
        let (min_size, max_size) = match plan.publishers.size {
            BodySize::Fixed(size) => (size, size),
            BodySize::Uniform { min, max } => (min, max),
        };
        let mut publishers = Publishers {
            counters: Vec::new(),
            handles: Vec::new(),
            links,
            cancel,
        };
        for producer in (0..producers).filter(|&p| self.share.owns(p)) {
            let counters = Arc::new(PublisherCounters::default());
            publishers.counters.push(counters.clone());
            let offset = Pace::stagger(rate_each, producer, producers);
            let slot = self.slot_of(producer, publishers.links.len());
            let setup = publisher::PublisherSetup {
                producer,
                worker_attempt: self.share.attempt,
                plan: plan.publishers.clone(),
                topology: topology.clone(),
                link: publishers.links[slot].clone(),
                run_id: self.run_id,
                clock: self.clock,
                sizes: Sizes::new(min_size, max_size, plan.seed),
                pace: Pace::new(start_ns + offset.as_nanos() as u64, rate_each),
                deadline: deadline.clone(),
                messages: plan.stop.messages_per_publisher,
                finish_within: plan.drain_timeout,
                counters,
                events: self.events.clone(),
                cancel: publishers.cancel.clone(),
                verify: self.verify,
            };
            publishers
                .handles
                .push(shards.spawn(slot, move |records| publisher::run(setup, records)));
        }
        publishers
    }
}

/// Whether RabbitMQ promises FIFO to the consumers of `queue`: a single one (of the whole
/// scenario, whichever worker runs it), with manual acks.
pub(crate) fn order_promised(plan: &Plan, topology: &Topology, queue: u32) -> bool {
    let consumers = (0..plan.consumers.count)
        .filter(|&c| topology.queue_of_consumer(c) == queue)
        .count();
    consumers == 1 && plan.consumers.ack == AckMode::Manual
}

/// The running consumers.
pub(super) struct Consumers {
    pub counters: Vec<Arc<ConsumerCounters>>,
    /// Each told once its consumer's first basic.consume succeeded.
    ready: Vec<oneshot::Receiver<()>>,
    handles: Vec<TaskHandle<ConsumerReport>>,
    pub links: Vec<Arc<Link>>,
    cancel: CancellationToken,
}

impl Consumers {
    /// Whether every consumer started consuming within `within` (false when `cancel`
    /// fired first).
    pub async fn ready(&mut self, within: Duration, cancel: &CancellationToken) -> bool {
        let ready = join_all(std::mem::take(&mut self.ready));
        tokio::select! {
            () = cancel.cancelled() => false,
            result = tokio::time::timeout(within, ready) => {
                result.is_ok_and(|r| r.iter().all(Result::is_ok))
            }
        }
    }

    /// Stops every consumer and collects their reports (the first that has none fails
    /// the run, named); then closes their connections, which hands back to the queue
    /// whatever they held unacknowledged.
    pub async fn stop(self, events: &EventLog) -> Result<Vec<ConsumerReport>, WorkloadError> {
        self.cancel.cancel();
        let reports = every_report("consumer", join_all(self.handles).await);
        close_all(&self.links, events, "consumers").await;
        reports
    }
}

/// The running publishers.
pub(super) struct Publishers {
    pub counters: Vec<Arc<PublisherCounters>>,
    pub handles: Vec<TaskHandle<PublisherReport>>,
    pub links: Vec<Arc<Link>>,
    pub cancel: CancellationToken,
}

/// The results of tasks that must all hand theirs back: the first that did not is named
/// (`role` and its index) with why.
pub(super) fn every_report<T>(
    role: &str,
    results: Vec<Result<T, String>>,
) -> Result<Vec<T>, WorkloadError> {
    results
        .into_iter()
        .enumerate()
        .map(|(index, result)| {
            result.map_err(|reason| WorkloadError::TaskFailed {
                task: format!("{role} {index}"),
                reason,
            })
        })
        .collect()
}

/// Closes every connection of `links` at once, within one bound: one after another, a
/// thousand links each allowed CLOSE_WITHIN made a teardown of minutes.
pub(super) async fn close_all(links: &[Arc<Link>], events: &EventLog, role: &str) {
    let closing = join_all(links.iter().map(|link| link.close()));
    if tokio::time::timeout(CLOSE_ALL_WITHIN, closing)
        .await
        .is_err()
    {
        events.record(
            "workload",
            EventKind::ConnectionLost,
            format!(
                "{role} connections still closing after {} s were left to the broker",
                CLOSE_ALL_WITHIN.as_secs()
            ),
        );
    }
}
