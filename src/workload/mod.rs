//! The workload: declares the run's topology, starts consumers then publishers, waits for
//! publishing to end, drains until every confirmed message has arrived (or a timeout),
//! stops everything, and hands the ledgers to the verdict. Tasks own their ledger shards
//! and histograms and return them; nothing is shared on the hot path.

mod collector;
pub mod consumer;
pub(crate) mod coordination;
mod dead_letter_reader;
mod drain;
pub mod final_read;
mod fleet;
mod inflight;
pub(crate) mod judge;
pub mod link;
pub mod live;
mod outcome;
pub mod pacing;
pub mod progress;
pub mod publisher;
mod publishing;
mod setup;
mod shards;
mod thread_records;
pub mod topology;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use consumer::Sabotage;
pub use drain::{DrainEnd, DrainResult};
pub use final_read::FinalReadReport;
use outcome::cpu_time;
pub use outcome::{CpuTime, QueueOutcome, WorkloadOutcome};
pub use progress::Totals;

use crate::amqp::Endpoints;
use crate::amqp::Failure;
use crate::deadline::{PublishingDeadline, PublishingStart};
use crate::events::{EventKind, EventLog};
use crate::ledger::{DeadLetterShard, DeliveryShard, PublishLedger};
use crate::metrics::Clock;
use crate::broker_uri::BrokerUri;
use crate::scenario::Plan;
use crate::share::Share;
use collector::Collector;
use coordination::{Coordination, Phase};
pub(crate) use setup::SetupChannel;
use shards::{ShardOptions, Shards};
use topology::Topology;

/// How long consumers may take to start consuming.
const CONSUMERS_READY_WITHIN: Duration = Duration::from_secs(30);

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
    /// Told when publishing starts (message 0 due), with the run's clock and the end of
    /// publishing: faults are scheduled from there, and settle a deadline they hold.
    pub on_start: Option<oneshot::Sender<PublishingStart>>,
    /// The deadline waits for the fault runner to settle it (`after_faults`).
    pub hold_for_faults: bool,
    /// The run id (random when unset); it names the queue.
    pub run_id: Option<u64>,
    /// `--no-verify`: no ledgers, counts and latency histograms only, to measure what
    /// verification costs.
    pub no_verify: bool,
    /// The broker's node names, in the order of its URIs (empty when unknown): a queue's
    /// results name the node it was placed on.
    pub node_names: Vec<String>,
    /// One worker of several running the scenario together (`--worker I/N`).
    pub worker: Option<WorkerRun>,
    /// `--metrics-listen`: the live figures Prometheus scrapes.
    pub live: Option<Arc<dyn live::LiveSink>>,
    /// TLS for amqps URIs: the scenario's `[broker.tls]` or the CA of warren's TLS nodes.
    pub tls: Option<crate::amqp::TlsClient>,
}

/// How a worker takes part in a shared run.
#[derive(Debug, Clone)]
pub struct WorkerRun {
    pub share: crate::share::Share,
    pub run: crate::share::RunName,
    /// How long it waits for the other workers at each meeting.
    pub barrier_timeout: Duration,
}

/// What a worker of a shared run hands to the merge beyond the measurements: everything
/// the verdict is made from, exactly.
#[derive(Debug, Clone)]
pub struct WorkerEvidence {
    pub share: crate::share::Share,
    pub run: crate::share::RunName,
    pub clock_sync: coordination::ClockSync,
    /// The ledgers of this worker's publishers.
    pub ledgers: Vec<PublishLedger>,
    /// Per queue, what this worker's threads' consumers of it received.
    pub consumers: Vec<Vec<DeliveryShard>>,
    /// Worker 0: what the final read found, per queue (when it ran).
    pub final_read: Option<Vec<DeliveryShard>>,
    /// Worker 0: what the dead-letter reader found, per queue.
    pub dead_letters: Option<Vec<Option<DeadLetterShard>>>,
    /// Confirms counted by this worker's publishers (for `--no-verify`).
    pub acked: u64,
    /// First deliveries counted by this worker's consumers.
    pub fresh: u64,
    /// Every delivery to this worker's consumers.
    pub deliveries: u64,
    /// A meeting after the start that not every worker reached: the run is incomplete.
    pub peers_missing: Option<String>,
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

/// This process's tasks for the live metrics, each with its queue's name when the run
/// has several queues (and "" when it has one).
fn live_tasks(
    plan: &Plan,
    topology: &Topology,
    share: Share,
    (publishers, publisher_links): (&[Arc<progress::PublisherCounters>], &[Arc<link::Link>]),
    (consumers, consumer_links): (&[Arc<progress::ConsumerCounters>], &[Arc<link::Link>]),
) -> live::Tasks {
    let label = |queue: u32| {
        if topology.queues.len() > 1 {
            topology.queues[queue as usize].name.clone()
        } else {
            String::new()
        }
    };
    let owned = |count: u32| (0..count).filter(move |&i| share.owns(i));
    live::Tasks {
        publishers: owned(plan.publishers.count)
            .zip(publishers)
            .map(|(p, counters)| (label(topology.queue_of_publisher(p)), counters.clone()))
            .collect(),
        consumers: owned(plan.consumers.count)
            .zip(consumers)
            .map(|(c, counters)| (label(topology.queue_of_consumer(c)), counters.clone()))
            .collect(),
        publisher_links: publisher_links.to_vec(),
        consumer_links: consumer_links.to_vec(),
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
    /// The client threads could not be started.
    #[error("the client threads could not be started: {0}")]
    Threads(String),
    /// A task ended without handing back its ledger: the verdict would have a hole, so
    /// there is none.
    #[error("{task} failed without handing back its ledger: {reason}")]
    TaskFailed { task: String, reason: String },
    /// The workers of a shared run did not meet.
    #[error("the workers did not meet: {0}")]
    Workers(#[from] coordination::CoordinationError),
}

/// Runs the plan's publishers and consumers against `uris` and decides the verdict. The
/// phases: declare the topology, start the client threads and the consumers (and the
/// dead-letter reader), start the publishers and wait for publishing to end, drain, stop
/// the consumers, read what is left, tear down, judge.
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
    let uris = Arc::new(Endpoints::new(uris.to_vec(), options.tls.clone()));
    let worker = options.worker.clone();
    let share = worker.as_ref().map_or(Share::ALONE, |w| w.share);
    let run_id = worker
        .as_ref()
        .map(|w| w.run.id)
        .or(options.run_id)
        .unwrap_or_else(random_run_id);
    // Workers meet on the broker first: their clocks are set to worker 0's.
    let meeting_log = EventLog::new(Clock::start());
    let coordination = worker.as_ref().map(|w| {
        Coordination::join(
            uris.clone(),
            w.share,
            w.run.clone(),
            w.barrier_timeout,
            meeting_log.clone(),
            cancel,
        )
    });
    let clock_sync = match &coordination {
        Some(meeting) => meeting.clock_sync().await?,
        None => coordination::ClockSync::default(),
    };
    let clock = if coordination.is_some() {
        Clock::aligned(clock_sync.offset_ns)
    } else {
        Clock::start()
    };
    let events = EventLog::new(clock);
    if let Some(w) = &worker {
        events.record(
            "workload",
            EventKind::Workers,
            format!(
                "worker {} of run {}: clock offset {} µs from worker 0's (within {} µs)",
                w.share,
                w.run.text,
                clock_sync.offset_ns / 1_000,
                clock_sync.bound_ns / 1_000
            ),
        );
    }
    let (sample_sink, samples) = mpsc::unbounded_channel();
    let mut collector = Collector::new(samples, clock.origin(), options.live.clone());
    let topology = Arc::new(Topology::from_plan(plan, run_id));
    let proxied = |given: Option<Vec<BrokerUri>>| {
        given.map_or_else(
            || uris.clone(),
            |given| Arc::new(Endpoints::new(given, options.tls.clone())),
        )
    };

    // Declare (worker 0 alone); start the client threads, the consumers and the
    // dead-letter reader.
    let setup = match &coordination {
        Some(meeting) if !share.is_leader() => {
            meeting.topology_ready().await?;
            // A worker that arrives after the start must not consume: its consumers would
            // take (and acknowledge) messages of the run that it then leaves.
            if let Some(start_ns) = meeting.start_announced() {
                let late = not_late(meeting, share, clock, start_ns);
                if let Err(error) = &late {
                    meeting.fail(&error.to_string()).await;
                }
                late?;
            }
            setup::attach(plan, &uris, &events, cancel)
        }
        _ => {
            let setup = setup::declare(plan, &uris, &topology, &events, cancel).await;
            if let (Some(meeting), Err(error)) = (&coordination, &setup) {
                meeting.fail(&error.to_string()).await;
            }
            let setup = setup?;
            if let Some(meeting) = &coordination {
                meeting.topology_declared();
            }
            setup
        }
    };
    let shards = Shards::start(ShardOptions {
        threads: plan.threads as usize,
        clock,
        samples: sample_sink,
        queues: topology.queues.len(),
        producers: plan.publishers.count,
    })
    .map_err(|e| WorkloadError::Threads(e.to_string()))?;
    let worker_attempts: Arc<[u8]> = match &coordination {
        Some(meeting) => meeting.attempts().into(),
        None => Arc::new([0]),
    };
    let clients = fleet::Clients {
        plan,
        topology: &topology,
        events: &events,
        run_id,
        clock,
        nodes: uris.len(),
        verify: !options.no_verify,
        share,
        worker_attempts,
    };
    let consumer_uris = proxied(options.consumer_uris.take());
    let mut consumers = clients.start_consumers(&shards, &consumer_uris, options.sabotage, cancel);
    // Read from the start, so the drain counts what the broker moved there as found.
    let dead_letters = (!options.no_verify && share.is_leader())
        .then(|| dead_letter_reader::Reading::start(plan, &topology, &uris, &events, run_id))
        .flatten();
    let ready = consumers.ready(CONSUMERS_READY_WITHIN, cancel).await;
    // The start: now, or for workers the instant worker 0 announces once all are ready.
    let start = match (&coordination, ready) {
        (_, false) => None,
        (None, true) => Some(Ok(Instant::now() + Duration::from_millis(20))),
        (Some(meeting), true) => {
            meeting.announce(Phase::Ready);
            Some(agree_on_start(meeting, share, clock).await)
        }
    };
    let start = match start {
        Some(Ok(start)) => start,
        failed => {
            if let (Some(meeting), Some(Err(error))) = (&coordination, &failed) {
                meeting.fail(&error.to_string()).await;
            } else if let Some(meeting) = &coordination {
                meeting.fail("its consumers did not start").await;
            }
            let _ = consumers.stop(&events).await;
            if let Some(reader) = dead_letters {
                let _ = reader.finish().await;
            }
            return Err(match failed {
                Some(Err(error)) => error,
                _ if cancel.is_cancelled() => WorkloadError::Interrupted,
                _ => WorkloadError::ConsumersNotReady,
            });
        }
    };

    // Publish.
    let deadline = plan
        .stop
        .duration
        .map(|d| PublishingDeadline::new(clock, start, d, options.hold_for_faults));
    let publishers = clients.start_publishers(
        &shards,
        &proxied(options.publisher_uris.take()),
        (start, deadline.clone()),
        cancel,
    );
    if let Some(started) = options.on_start.take() {
        let _ = started.send(PublishingStart {
            start,
            clock,
            deadline: deadline.clone(),
        });
    }
    let (publisher_counters, consumer_counters) =
        (publishers.counters.clone(), consumers.counters.clone());
    if let Some(live) = &options.live {
        live.attach(live_tasks(
            plan,
            &topology,
            share,
            (&publishers.counters, &publishers.links),
            (&consumers.counters, &consumers.links),
        ));
    }
    let totals = || progress::totals(&publisher_counters, &consumer_counters);
    let publisher_links = publishers.links.clone();
    let published = publishing::wait(publishing::Publishing {
        plan,
        publishers,
        start,
        deadline,
        events: &events,
        collector: &mut collector,
        on_progress: options.on_progress.as_mut(),
        totals: &totals,
    })
    .await;
    // A publisher that did not hand back its ledger fails the run, after the teardown.
    let (publisher_reports, publisher_failure) = match published {
        Ok(reports) => (reports, None),
        Err(error) => (Vec::new(), Some(error)),
    };
    let ledgers: Vec<_> = publisher_reports.iter().map(|r| r.ledger.clone()).collect();
    let mut peers_missing = None;
    if let Some(meeting) = &coordination {
        meeting.announce(Phase::Published);
        let within = plan.drain_timeout + meeting.timeout;
        if let Err(error) = meeting.all_reached(Phase::Published, within).await {
            events.record("workload", EventKind::Workers, error.to_string());
            peers_missing = Some(error.to_string());
        }
    }

    // Drain, stop the consumers, read what is still missing, tear down.
    let mut snapshots = shards.snapshot_senders();
    snapshots.extend(dead_letters.as_ref().map(|d| d.snapshots.clone()));
    let (drain, missing) = drain::after_publishing(drain::DrainPhase {
        plan,
        topology: &topology,
        ledgers: &ledgers,
        verify: !options.no_verify,
        shared: share.is_shared(),
        snapshots: &snapshots,
        totals: &totals,
        setup: &setup,
        cancel,
        on_tick: &mut |t: Totals| {
            let line = collector.line(start.elapsed(), "draining", t);
            if let Some(report) = options.on_progress.as_mut() {
                report(&line);
            }
        },
    })
    .await;
    events.record("workload", EventKind::DrainEnd, drain.describe());
    let final_totals = totals();
    let consumer_reports = consumers.stop(&events).await;
    if let Some(meeting) = &coordination {
        meeting.announce(Phase::Drained);
        // Worker 0 reads what is left only once no worker consumes any more.
        if share.is_leader() && peers_missing.is_none() {
            let within = plan.drain_timeout + meeting.timeout;
            if let Err(error) = meeting.all_reached(Phase::Drained, within).await {
                events.record("workload", EventKind::Workers, error.to_string());
                peers_missing = Some(error.to_string());
            }
        }
    }
    let final_read = if share.is_leader() {
        final_read::after_drain(final_read::AfterDrain {
            plan,
            topology: &topology,
            uris: &uris,
            run_id,
            events: &events,
            cancel,
            drain: &drain,
            missing: &missing,
            verified: !options.no_verify,
            tasks_failed: consumer_reports.is_err() || publisher_failure.is_some(),
        })
        .await
    } else {
        final_read::FinalRead::skipped(
            topology.queues.len(),
            plan.publishers.count,
            "worker 0 reads the queues",
        )
    };
    let dead_letters = match dead_letters {
        Some(reader) => Some(reader.finish().await).transpose(),
        None => Ok(None),
    };
    let queues_left = if share.is_leader() {
        setup::teardown(&setup, &topology, &events).await
    } else {
        setup.close().await;
        None
    };
    fleet::close_all(&publisher_links, &events, "publishers").await;
    if let Some(live) = &options.live {
        live.detach();
    }
    let thread_records = shards.finish().await;
    if let Some(meeting) = coordination {
        meeting.leave().await;
    }

    // Judge.
    if let Some(error) = publisher_failure {
        return Err(error);
    }
    let consumer_reports = consumer_reports?;
    let dead_letters = dead_letters?;
    let queue_records = judge::by_queue(thread_records, topology.queues.len());
    let verdict = judge::decide(judge::Records {
        clients: &clients,
        ledgers: &ledgers,
        publishers: &publisher_reports,
        queues: &queue_records,
        final_read: &final_read,
        dead_letters: dead_letters.as_deref(),
        node_names: &options.node_names,
        unverified: options.no_verify.then_some(final_totals),
    });
    let evidence = worker.map(|w| WorkerEvidence {
        share: w.share,
        run: w.run,
        clock_sync,
        ledgers: ledgers.clone(),
        consumers: queue_records
            .iter()
            .map(|records| records.iter().map(|r| r.shard.clone()).collect())
            .collect(),
        final_read: final_read.report.ran.then(|| final_read.shards.clone()),
        dead_letters: dead_letters.clone(),
        acked: publisher_reports.iter().map(|r| r.acked).sum(),
        fresh: final_totals.fresh,
        deliveries: final_totals.deliveries,
        peers_missing,
    });
    let cpu = cpu_time().since(cpu_start);
    let mut outcome = outcome::Ended {
        run_id,
        topology: &topology,
        nodes: uris.len(),
        verdict,
        series: collector.finish().await,
        events: events.snapshot(),
        ledgers: &ledgers,
        publishers: publisher_reports,
        consumers: consumer_reports,
        queue_records,
        dead_letters,
        drain,
        final_read: final_read.report,
        queues_left,
        clock,
        start,
        cpu,
        interrupted: cancel.is_cancelled(),
    }
    .outcome();
    outcome.worker = evidence;
    Ok(outcome)
}

/// The instant message 0 is due, agreed by every worker: worker 0 waits until all are
/// ready and announces an instant a second ahead (time for the announcement to reach
/// everyone); the others wait for it. On worker 0's time, which every worker's clock reads.
async fn agree_on_start(
    meeting: &Coordination,
    share: Share,
    clock: Clock,
) -> Result<Instant, WorkloadError> {
    let start_ns = if share.is_leader() {
        meeting.all_reached(Phase::Ready, meeting.timeout).await?;
        let start_ns = clock.now_ns() + 1_000_000_000;
        meeting.start_at(start_ns);
        start_ns
    } else {
        not_late(meeting, share, clock, meeting.start_ns().await?)?
    };
    Ok(clock.instant_at(start_ns))
}

/// `start_ns`, unless this worker learns of it too late to take part. Worker 0 fixes the
/// start a second ahead: a worker that learns it well after it passed was not there when
/// the run began (a pod replaced mid-run, say), and joining would publish a share of the
/// run that began late.
fn not_late(
    meeting: &Coordination,
    share: Share,
    clock: Clock,
    start_ns: u64,
) -> Result<u64, WorkloadError> {
    let late_by = clock.now_ns().saturating_sub(start_ns);
    if late_by > LATE_START_TOLERANCE_NS {
        return Err(coordination::CoordinationError::Late {
            worker: share.index,
            late_by: Duration::from_nanos(late_by),
            run: meeting.run_text().to_string(),
        }
        .into());
    }
    Ok(start_ns)
}

/// How far past the agreed start a worker may learn of it and still take part.
const LATE_START_TOLERANCE_NS: u64 = 500_000_000;

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
        return crate::seeded::splitmix(nanos ^ u64::from(std::process::id()));
    }
    u64::from_le_bytes(bytes)
}
