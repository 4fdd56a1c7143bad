//! The workload: declares the run's topology, starts consumers then publishers, waits for
//! publishing to end, drains until every confirmed message has arrived (or a timeout),
//! stops everything, and hands the ledgers to the verdict. Tasks own their ledger shards
//! and histograms and return them; nothing is shared on the hot path.

pub mod consumer;
mod dead_letter_reader;
mod drain;
pub mod final_read;
mod inflight;
mod link;
pub mod message;
pub mod pacing;
pub mod progress;
pub mod publisher;
mod setup;
pub mod topology;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use consumer::Sabotage;
pub use drain::{DrainEnd, DrainResult};
pub use final_read::FinalReadReport;
pub use progress::Totals;

use crate::amqp::{Failure, within};
use crate::events::{Event, EventKind, EventLog};
use crate::ledger::{QueueEvidence, QueueRecords, Verdict, decide_queues};
use crate::metrics::activity::Activity;
use crate::metrics::series::{Sample, Series};
use crate::metrics::{Clock, Latencies};
use crate::redact::BrokerUri;
use crate::scenario::{AckMode, BodySize, Plan};
use final_read::FinalRead;
use link::Link;
use pacing::{Pace, Sizes};
use progress::{ConsumerCounters, PublisherCounters};
pub(crate) use setup::SetupChannel;
use setup::open_setup;
use topology::Topology;

/// How long consumers may take to start consuming.
const CONSUMERS_READY_WITHIN: Duration = Duration::from_secs(30);
/// How long after `duration + drain_timeout` publishers may still run before they are
/// cancelled (they normally end by then on their own).
const PUBLISHERS_GRACE: Duration = Duration::from_secs(5);
/// How long reading the rest of the dead-letter queue may take at the end.
const DEAD_LETTERS_FINISH_WITHIN: Duration = Duration::from_secs(10);
/// How long closing every connection at the end may take in all.
const CLOSE_ALL_WITHIN: Duration = Duration::from_secs(10);

/// Sleeps until `at`, or forever when there is none.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Receives live totals about once a second.
pub type ProgressSink = Box<dyn FnMut(&ProgressLine) + Send>;

/// What the caller can add to a plan.
#[derive(Default)]
pub struct WorkloadOptions {
    /// Test-only consumer mistakes, to check the checker.
    pub sabotage: Sabotage,
    /// Called about once a second with live totals.
    pub on_progress: Option<ProgressSink>,
    /// Publishers connect here instead of the broker URIs (a proxy on their path).
    pub publisher_uris: Option<Vec<BrokerUri>>,
    /// Consumers connect here instead of the broker URIs (a proxy on their path).
    pub consumer_uris: Option<Vec<BrokerUri>>,
    /// Told when publishing starts (message 0 due), with the run's clock: faults are
    /// scheduled from there.
    pub on_start: Option<oneshot::Sender<(Instant, Clock)>>,
    /// The run id (random when unset); it names the queue.
    pub run_id: Option<u64>,
    /// `--no-verify`: no ledgers, counts and latency histograms only, to measure what
    /// verification costs.
    pub no_verify: bool,
    /// The broker's node names, in the order of its URIs (empty when unknown): a queue's
    /// results name the node it was placed on.
    pub node_names: Vec<String>,
}

/// Live totals at one moment.
#[derive(Debug, Clone, Copy)]
pub struct ProgressLine {
    pub elapsed: Duration,
    pub phase: &'static str,
    pub totals: Totals,
    /// The last complete second, when one is known.
    pub last_second: Option<SecondStats>,
}

/// Rates and tail latencies of one second.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecondStats {
    pub sent_per_s: u64,
    pub delivered_per_s: u64,
    pub p99_e2e_ms: Option<f64>,
    pub p99_confirm_ms: Option<f64>,
}

/// Receives the tasks' seconds as they end.
struct Collector {
    series: Series,
    samples: mpsc::UnboundedReceiver<Sample>,
    origin: Instant,
}

impl Collector {
    /// Takes what has arrived.
    fn poll(&mut self) {
        while let Ok(sample) = self.samples.try_recv() {
            self.series.add(sample);
        }
    }

    /// Takes everything, once every task has ended.
    async fn finish(mut self) -> Series {
        while let Some(sample) = self.samples.recv().await {
            self.series.add(sample);
        }
        self.series
    }

    /// Live figures for a progress line.
    fn line(&mut self, elapsed: Duration, phase: &'static str, totals: Totals) -> ProgressLine {
        self.poll();
        let complete = self.origin.elapsed().as_secs().checked_sub(1);
        let last_second = complete
            .and_then(|index| self.series.second(index as u32))
            .map(|(counts, latencies)| {
                let p99 = |h: &hdrhistogram::Histogram<u64>| {
                    (!h.is_empty()).then(|| h.value_at_quantile(0.99) as f64 / 1_000.0)
                };
                SecondStats {
                    sent_per_s: counts.sent,
                    delivered_per_s: counts.delivered,
                    p99_e2e_ms: p99(&latencies.e2e_intended_us),
                    p99_confirm_ms: p99(&latencies.confirm_us),
                }
            });
        ProgressLine {
            elapsed,
            phase,
            totals,
            last_second,
        }
    }
}

/// Why the workload could not run at all (infrastructure; exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("declaring queue {queue} failed: {failure}")]
    Topology { queue: String, failure: Failure },
    #[error("no consumer started consuming within {} s", CONSUMERS_READY_WITHIN.as_secs())]
    ConsumersNotReady,
    #[error("interrupted before the workload started")]
    Interrupted,
    /// A task ended without handing back its ledger: the verdict would have a hole, so
    /// there is none.
    #[error("{task} failed without handing back its ledger: {reason}")]
    TaskFailed { task: String, reason: String },
}

/// The results of tasks that must all hand theirs back: the first that did not is named
/// (`role` and its index) with its panic message.
fn every_report<T>(
    role: &str,
    results: Vec<Result<T, tokio::task::JoinError>>,
) -> Result<Vec<T>, WorkloadError> {
    results
        .into_iter()
        .enumerate()
        .map(|(index, result)| {
            result.map_err(|error| WorkloadError::TaskFailed {
                task: format!("{role} {index}"),
                reason: if error.is_panic() {
                    let panic = error.into_panic();
                    panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                        .map_or_else(|| "panicked".into(), |m| format!("panicked: {m}"))
                } else {
                    "cancelled".into()
                },
            })
        })
        .collect()
}

/// Process CPU time (user + system) spent during the workload.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct CpuTime {
    pub user_s: f64,
    pub system_s: f64,
}

/// Everything the workload measured.
pub struct WorkloadOutcome {
    pub run_id: u64,
    /// The first queue's name (the only one's, in a run of one queue).
    pub queue: String,
    /// Every queue of the run, with what was left in it.
    pub queues: Vec<QueueOutcome>,
    pub verdict: Verdict,
    /// The whole run's latencies (the sum of `series`).
    pub latencies: Latencies,
    /// Per-second counts and latencies, from the clock's origin.
    pub series: Series,
    pub events: Vec<Event>,
    /// From the first message due to the last new message sent.
    pub publishing: Duration,
    /// From the first message due to the last first-time delivery.
    pub delivering: Duration,
    pub drain: DrainResult,
    /// The whole workload, declare to teardown.
    pub elapsed: Duration,
    pub cpu: CpuTime,
    pub interrupted: bool,
    /// Messages left in the queues when they were deleted (None when kept or unknown).
    pub queue_left: Option<u32>,
    /// The final read of the queue after the drain, and what it found.
    pub final_read: FinalReadReport,
    /// Memory the ledgers held at the end, in bytes.
    pub ledger_bytes: u64,
    /// When confirms and first deliveries came (gaps), per task, for recovery times.
    pub confirm_activity: Vec<Activity>,
    pub delivery_activity: Vec<Activity>,
    /// The run's clock (readings in ns since the Unix epoch).
    pub clock: Clock,
    /// When message 0 was due.
    pub start: Instant,
    /// What the sabotage did, for the checker's self-test.
    pub sabotaged_dropped: Vec<(u32, u64)>,
    pub sabotaged_doubled: Vec<(u32, u64)>,
    pub sabotaged_rejected: Vec<(u32, u64)>,
}

/// One queue of the run at its end.
#[derive(Debug, Clone)]
pub struct QueueOutcome {
    pub name: String,
    /// The index of the broker URI (node) it was placed on.
    pub node_index: usize,
    /// Messages left in it when it was deleted (None when kept or unknown).
    pub left: Option<u32>,
}

/// Runs the plan's publishers and consumers against `uris` and decides the verdict.
///
/// # Errors
/// [`WorkloadError`] when the topology cannot be declared or consumers cannot start; a
/// failure during the run is data (events, losses), not an error.
pub async fn run(
    plan: &Plan,
    uris: &[BrokerUri],
    mut options: WorkloadOptions,
    cancel: &CancellationToken,
) -> Result<WorkloadOutcome, WorkloadError> {
    let cpu_start = cpu_time();
    let clock = Clock::start();
    let run_id = options.run_id.unwrap_or_else(random_run_id);
    let events = EventLog::new(clock);
    let (sample_sink, samples) = mpsc::unbounded_channel();
    let mut collector = Collector {
        series: Series::default(),
        samples,
        origin: clock.origin(),
    };
    let topology = Arc::new(Topology::from_plan(plan, run_id));
    let uris: Arc<[BrokerUri]> = uris.into();
    let setup_link = Arc::new(Link::new(
        format!("warren {} setup", plan.name),
        uris.clone(),
        0,
        plan.publishers.heartbeat,
        events.clone(),
    ));
    let node_link = |node: usize| {
        Link::new(
            format!("warren {} setup {node}", plan.name),
            uris.clone(),
            node,
            plan.publishers.heartbeat,
            events.clone(),
        )
    };
    let nodes = uris.len();
    let setup = open_setup(setup_link, nodes, node_link, &topology, cancel).await?;
    // With several queues, a client connects to the node its queue was placed on; with
    // one, clients are spread over the nodes as before.
    let spread = topology.queues.len() > 1;
    let consumer_node = |link: u32| {
        if spread {
            setup::home_node(topology.queue_of_consumer(link), nodes)
        } else {
            link as usize
        }
    };
    let publisher_node = |link: u32| {
        if spread {
            setup::home_node(topology.queue_of_publisher(link), nodes)
        } else {
            link as usize
        }
    };
    let consumers_of = |queue: u32| {
        (0..plan.consumers.count)
            .filter(|&c| topology.queue_of_consumer(c) == queue)
            .count()
    };

    let producers = plan.publishers.count;
    let consumer_cancel = cancel.child_token();
    let consumer_uris: Arc<[BrokerUri]> = options
        .consumer_uris
        .take()
        .map_or_else(|| uris.clone(), Into::into);
    let consumer_links = links(
        plan,
        &consumer_uris,
        &events,
        "consumers",
        plan.consumers.connections,
        plan.consumers.heartbeat,
        consumer_node,
    );
    let mut consumer_counters = Vec::new();
    let mut snapshot_senders = Vec::new();
    let mut ready = Vec::new();
    let mut consumer_handles = Vec::new();
    for index in 0..plan.consumers.count {
        let (snapshot_tx, snapshots) = mpsc::channel(1);
        let (ready_tx, ready_rx) = oneshot::channel();
        let counters = Arc::new(ConsumerCounters::default());
        consumer_counters.push(counters.clone());
        snapshot_senders.push(snapshot_tx);
        ready.push(ready_rx);
        let queue = topology.queue_of_consumer(index);
        consumer_handles.push(tokio::spawn(consumer::run(consumer::ConsumerSetup {
            index,
            queue,
            plan: plan.consumers.clone(),
            topology: topology.clone(),
            link: consumer_links[index as usize % consumer_links.len()].clone(),
            run_id,
            clock,
            producers,
            order_promised: consumers_of(queue) == 1 && plan.consumers.ack == AckMode::Manual,
            counters,
            events: events.clone(),
            cancel: consumer_cancel.clone(),
            snapshots,
            ready: Some(ready_tx),
            sabotage: options.sabotage,
            samples: sample_sink.clone(),
            verify: !options.no_verify,
        })));
    }
    // The dead-letter queue is read from the start, so the drain counts what the broker
    // moved there as found.
    let dead_stop = CancellationToken::new();
    let dead_letter_reader = match &topology.dead_letters {
        Some(dead) if !options.no_verify => {
            let (snapshot_tx, snapshots) = mpsc::channel(1);
            snapshot_senders.push(snapshot_tx);
            Some(tokio::spawn(dead_letter_reader::run(
                dead_letter_reader::DeadLetterSetup {
                    uris: uris.clone(),
                    dead_letters: dead.clone(),
                    queues: topology.queues.iter().map(|q| q.name.clone()).collect(),
                    run_id,
                    producers,
                    heartbeat: plan.consumers.heartbeat,
                    connection_name: format!("warren {} dead letters", plan.name),
                    events: events.clone(),
                    stop: dead_stop.clone(),
                    finish_within: DEAD_LETTERS_FINISH_WITHIN,
                    snapshots,
                },
            )))
        }
        _ => None,
    };
    let all_ready = tokio::select! {
        () = cancel.cancelled() => false,
        result = tokio::time::timeout(CONSUMERS_READY_WITHIN, join_all(ready)) => result.is_ok_and(|r| r.iter().all(Result::is_ok)),
    };
    if !all_ready {
        consumer_cancel.cancel();
        dead_stop.cancel();
        join_all(consumer_handles).await;
        if let Some(reader) = dead_letter_reader {
            let _ = reader.await;
        }
        return Err(if cancel.is_cancelled() {
            WorkloadError::Interrupted
        } else {
            WorkloadError::ConsumersNotReady
        });
    }

    let publisher_cancel = cancel.child_token();
    let publisher_uris: Arc<[BrokerUri]> = options
        .publisher_uris
        .take()
        .map_or_else(|| uris.clone(), Into::into);
    let publisher_links = links(
        plan,
        &publisher_uris,
        &events,
        "publishers",
        plan.publishers.connections,
        plan.publishers.heartbeat,
        publisher_node,
    );
    let start = Instant::now() + Duration::from_millis(20);
    let start_ns = clock.ns_at(start);
    let rate_each = plan.publishers.rate.map(|r| r / f64::from(producers));
    let (min_size, max_size) = match plan.publishers.size {
        BodySize::Fixed(size) => (size, size),
        BodySize::Uniform { min, max } => (min, max),
    };
    let mut publisher_counters = Vec::new();
    let mut publisher_handles = Vec::new();
    for producer in 0..producers {
        let counters = Arc::new(PublisherCounters::default());
        publisher_counters.push(counters.clone());
        let offset = Pace::stagger(rate_each, producer, producers);
        publisher_handles.push(tokio::spawn(publisher::run(publisher::PublisherSetup {
            producer,
            plan: plan.publishers.clone(),
            topology: topology.clone(),
            link: publisher_links[producer as usize % publisher_links.len()].clone(),
            run_id,
            clock,
            sizes: Sizes::new(min_size, max_size, plan.seed),
            pace: Pace::new(start_ns + offset.as_nanos() as u64, rate_each),
            deadline: plan.stop.duration.map(|d| start + d),
            messages: plan.stop.messages_per_publisher,
            finish_within: plan.drain_timeout,
            counters,
            events: events.clone(),
            cancel: publisher_cancel.clone(),
            samples: sample_sink.clone(),
            verify: !options.no_verify,
        })));
    }

    if let Some(started) = options.on_start.take() {
        let _ = started.send((start, clock));
    }
    let totals = || progress::totals(&publisher_counters, &consumer_counters);
    let publishers_done = join_all(publisher_handles);
    tokio::pin!(publishers_done);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    // Publishers give up retrying `drain_timeout` after the deadline; should any still
    // run a little later (a broker that answers nothing, hundreds of them reconnecting),
    // they are cancelled, and hand in what they have.
    let publishers_stop = plan
        .stop
        .duration
        .map(|d| tokio::time::Instant::from(start + d + plan.drain_timeout + PUBLISHERS_GRACE));
    let mut stop_sent = false;
    let publisher_reports = loop {
        tokio::select! {
            reports = &mut publishers_done => break reports,
            () = sleep_until_some(publishers_stop), if !stop_sent && publishers_stop.is_some() => {
                stop_sent = true;
                events.record(
                    "workload",
                    EventKind::Dropped,
                    "publishers still busy after the drain timeout were stopped",
                );
                publisher_cancel.cancel();
            }
            _ = ticker.tick() => {
                let line = collector.line(start.elapsed(), "publishing", totals());
                if let Some(report) = options.on_progress.as_mut() {
                    report(&line);
                }
            }
        }
    };
    // A publisher that did not hand back its ledger fails the run, after the teardown.
    let (publisher_reports, publisher_failure) = match every_report("publisher", publisher_reports)
    {
        Ok(reports) => (reports, None),
        Err(error) => (Vec::new(), Some(error)),
    };
    let publishing_ended = publisher_reports
        .iter()
        .filter_map(|r| r.publishing_ended)
        .max()
        .unwrap_or_else(Instant::now);
    events.record(
        "workload",
        EventKind::PublishEnd,
        format!("{} message(s) sent", totals().sent),
    );

    let ledgers: Vec<_> = publisher_reports.iter().map(|r| r.ledger.clone()).collect();
    let queue_names: Vec<String> = topology.queues.iter().map(|q| q.name.clone()).collect();
    let (drain, missing) = if cancel.is_cancelled() {
        (DrainResult::interrupted(), drain::MissingByQueue::default())
    } else {
        let mut on_tick = |t: Totals| {
            let line = collector.line(start.elapsed(), "draining", t);
            if let Some(report) = options.on_progress.as_mut() {
                report(&line);
            }
        };
        let sent_or_confirmed = || {
            let t = totals();
            if plan.publishers.confirm {
                t.confirmed
            } else {
                ledgers.iter().map(|l| u64::from(l.attempted)).sum()
            }
        };
        drain::drain(drain::DrainInputs {
            expected: if options.no_verify {
                drain::Expected::Count(sent_or_confirmed())
            } else {
                drain::Expected::Messages(drain::expected(
                    &ledgers,
                    plan.publishers.confirm,
                    &topology.routes,
                ))
            },
            snapshots: &snapshot_senders,
            totals: &totals,
            setup: &setup,
            queues: &queue_names,
            queue_empties: plan.topology.queue_type != crate::scenario::QueueType::Stream,
            timeout: plan.drain_timeout,
            processing_delay: plan.consumers.processing_delay.unwrap_or_default(),
            cancel,
            on_tick: &mut on_tick,
        })
        .await
    };
    events.record("workload", EventKind::DrainEnd, drain.describe());

    consumer_cancel.cancel();
    let consumer_reports = every_report("consumer", join_all(consumer_handles).await);
    // Closing the consumers' connections hands back to the queue whatever they held
    // unacknowledged, for the final read to find.
    close_all(&consumer_links, &events, "consumers").await;
    let final_read = match (&consumer_reports, &publisher_failure) {
        (Ok(reports), None) => {
            let why_not = final_read::why_not(final_read::Occasion {
                plan,
                queue_type: plan.topology.queue_type,
                interrupted: cancel.is_cancelled(),
                missing: drain.missing,
                verified: !options.no_verify,
                consumers: reports.len(),
            });
            match why_not {
                Some(why) => FinalRead::skipped(topology.queues.len(), producers, why),
                None => {
                    final_read::read(final_read::FinalReadSetup {
                        uris: uris.clone(),
                        topology: &topology,
                        queues: missing.queues(),
                        run_id,
                        producers,
                        timeout: plan.final_read.unwrap_or_default(),
                        heartbeat: plan.consumers.heartbeat,
                        connection_name: format!("warren {} final read", plan.name),
                        events: events.clone(),
                        cancel,
                    })
                    .await
                }
            }
        }
        _ => FinalRead::skipped(topology.queues.len(), producers, "a task failed"),
    };
    dead_stop.cancel();
    let dead_letters = match dead_letter_reader {
        Some(reader) => Some(
            every_report("dead-letter reader", vec![reader.await])
                .map(|mut shards| shards.remove(0)),
        ),
        None => None,
    }
    .transpose();
    let queues_left = match within(Duration::from_secs(20), "queue.delete", async {
        topology.delete(&setup.channel().await?).await
    })
    .await
    {
        Ok(left) => left,
        Err(failure) => {
            events.record(
                "workload",
                EventKind::ChannelClosed,
                format!(
                    "could not delete queue(s) {}: {failure}",
                    queue_names.join(", ")
                ),
            );
            None
        }
    };
    setup.close().await;
    close_all(&publisher_links, &events, "publishers").await;

    drop(sample_sink);
    if let Some(error) = publisher_failure {
        return Err(error);
    }
    let consumer_reports = consumer_reports?;
    let dead_letters = dead_letters?;
    let series = collector.finish().await;
    let latencies = series.total_latencies();
    let ledger_bytes = ledgers.iter().map(|l| l.memory_bytes()).sum::<u64>()
        + consumer_reports
            .iter()
            .map(|r| r.shard.memory_bytes())
            .sum::<u64>()
        + dead_letters
            .iter()
            .flatten()
            .map(|d| d.memory_bytes())
            .sum::<u64>();
    let verdict = if options.no_verify {
        let t = totals();
        Verdict::unverified(
            crate::ledger::Counts {
                attempted: ledgers.iter().map(|l| u64::from(l.attempted)).sum(),
                confirmed: publisher_reports.iter().map(|r| r.acked).sum(),
                republished: ledgers.iter().map(|l| l.republished).sum(),
                delivered: t.fresh,
                ..crate::ledger::Counts::default()
            },
            t.deliveries,
            plan.publishers.confirm,
        )
    } else {
        let records: Vec<QueueRecords<'_>> = (0..topology.queues.len() as u32)
            .map(|queue| QueueRecords {
                publishers: ledgers
                    .iter()
                    .filter(|l| topology.routes.judged_in(l.producer, queue))
                    .collect(),
                consumers: consumer_reports
                    .iter()
                    .zip(0..)
                    .filter(|(_, index)| topology.queue_of_consumer(*index) == queue)
                    .map(|(r, _)| &r.shard)
                    .collect(),
                final_read: final_read
                    .report
                    .ran
                    .then(|| &final_read.shards[queue as usize]),
                dead_letters: dead_letters.as_ref().map(|d| &d[queue as usize]),
            })
            .collect();
        decide_queues(
            records
                .iter()
                .zip(&topology.queues)
                .enumerate()
                .map(|(queue, (records, spec))| QueueEvidence {
                    name: spec.name.clone(),
                    node: options
                        .node_names
                        .get(setup::home_node(queue as u32, nodes))
                        .cloned(),
                    queue_type: crate::scenario::serde_name(&spec.queue_type),
                    evidence: records.evidence(),
                    order_checked: consumers_of(queue as u32) == 1
                        && plan.consumers.ack == AckMode::Manual,
                })
                .collect(),
            plan.publishers.confirm,
        )
    };
    let cpu_end = cpu_time();
    Ok(WorkloadOutcome {
        run_id,
        queue: queue_names[0].clone(),
        queues: queue_names
            .iter()
            .enumerate()
            .map(|(queue, name)| QueueOutcome {
                name: name.clone(),
                node_index: setup::home_node(queue as u32, nodes),
                left: queues_left
                    .as_ref()
                    .and_then(|left| left.get(queue).copied()),
            })
            .collect(),
        verdict,
        latencies,
        series,
        events: events.snapshot(),
        publishing: publishing_ended.saturating_duration_since(start),
        delivering: Duration::from_nanos(
            consumer_reports
                .iter()
                .map(|r| r.last_delivery_ns)
                .max()
                .unwrap_or(0)
                .saturating_sub(start_ns),
        ),
        drain,
        elapsed: clock.origin().elapsed(),
        cpu: CpuTime {
            user_s: cpu_end.user_s - cpu_start.user_s,
            system_s: cpu_end.system_s - cpu_start.system_s,
        },
        interrupted: cancel.is_cancelled(),
        queue_left: queues_left.as_ref().map(|left| left.iter().sum()),
        final_read: final_read.report,
        ledger_bytes,
        confirm_activity: publisher_reports
            .iter()
            .map(|r| r.activity.clone())
            .collect(),
        delivery_activity: consumer_reports
            .iter()
            .map(|r| r.activity.clone())
            .collect(),
        clock,
        start,
        sabotaged_dropped: consumer_reports
            .iter()
            .flat_map(|r| r.sabotaged_dropped.iter().copied())
            .collect(),
        sabotaged_doubled: consumer_reports
            .iter()
            .flat_map(|r| r.sabotaged_doubled.iter().copied())
            .collect(),
        sabotaged_rejected: consumer_reports
            .iter()
            .flat_map(|r| r.sabotaged_rejected.iter().copied())
            .collect(),
    })
}

/// Closes every connection of `links` at once, within one bound: one after another, a
/// thousand links each allowed CLOSE_WITHIN made a teardown of minutes.
async fn close_all(links: &[Arc<Link>], events: &EventLog, role: &str) {
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

/// `count` connection slots for the clients of `role`; slot i connects first to the URI
/// `first_uri(i)`.
fn links(
    plan: &Plan,
    uris: &Arc<[BrokerUri]>,
    events: &EventLog,
    role: &str,
    count: u32,
    heartbeat: Duration,
    first_uri: impl Fn(u32) -> usize,
) -> Vec<Arc<Link>> {
    (0..count.max(1))
        .map(|i| {
            Arc::new(Link::new(
                format!("warren {} {role} {i}", plan.name),
                uris.clone(),
                first_uri(i),
                heartbeat,
                events.clone(),
            ))
        })
        .collect()
}

/// A fresh random run id.
pub fn random_run_id() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return pacing::splitmix(nanos ^ u64::from(std::process::id()));
    }
    u64::from_le_bytes(bytes)
}

fn cpu_time() -> CpuTime {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            CpuTime {
                user_s: seconds(usage.user_time()),
                system_s: seconds(usage.system_time()),
            }
        }
        Err(_) => CpuTime::default(),
    }
}
