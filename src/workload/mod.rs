//! The workload: declares the run's topology, starts consumers then publishers, waits for
//! publishing to end, drains until every confirmed message has arrived (or a timeout),
//! stops everything, and hands the ledgers to the verdict. Tasks own their ledger shards
//! and histograms and return them; nothing is shared on the hot path.

mod collector;
pub mod consumer;
mod dead_letter_reader;
mod drain;
pub mod final_read;
mod fleet;
mod inflight;
mod judge;
mod link;
pub mod message;
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
pub use progress::Totals;

use crate::amqp::Failure;
use crate::events::{Event, EventKind, EventLog};
use crate::ledger::Verdict;
use crate::metrics::activity::Activity;
use crate::metrics::series::Series;
use crate::metrics::{Clock, Latencies};
use crate::redact::BrokerUri;
use crate::scenario::Plan;
use collector::Collector;
use final_read::FinalRead;
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
    let clock = Clock::start();
    let run_id = options.run_id.unwrap_or_else(random_run_id);
    let events = EventLog::new(clock);
    let (sample_sink, samples) = mpsc::unbounded_channel();
    let mut collector = Collector::new(samples, clock.origin());
    let topology = Arc::new(Topology::from_plan(plan, run_id));
    let uris: Arc<[BrokerUri]> = uris.into();
    let setup = setup::declare(plan, &uris, &topology, &events, cancel).await?;
    let producers = plan.publishers.count;
    let shards = Shards::start(ShardOptions {
        threads: plan.threads as usize,
        clock,
        samples: sample_sink,
        queues: topology.queues.len(),
        producers,
    })
    .map_err(|e| WorkloadError::Threads(e.to_string()))?;
    let clients = fleet::Clients {
        plan,
        topology: &topology,
        events: &events,
        run_id,
        clock,
        nodes: uris.len(),
        verify: !options.no_verify,
    };

    let consumer_uris: Arc<[BrokerUri]> = options
        .consumer_uris
        .take()
        .map_or_else(|| uris.clone(), Into::into);
    let mut consumers = clients.start_consumers(&shards, &consumer_uris, options.sabotage, cancel);
    // The dead-letter queue is read from the start, so the drain counts what the broker
    // moved there as found.
    let dead_letters = (!options.no_verify)
        .then(|| dead_letter_reader::Reading::start(plan, &topology, &uris, &events, run_id))
        .flatten();
    if !consumers.ready(CONSUMERS_READY_WITHIN, cancel).await {
        let _ = consumers.stop(&events).await;
        if let Some(reader) = dead_letters {
            let _ = reader.finish().await;
        }
        return Err(if cancel.is_cancelled() {
            WorkloadError::Interrupted
        } else {
            WorkloadError::ConsumersNotReady
        });
    }

    let publisher_uris: Arc<[BrokerUri]> = options
        .publisher_uris
        .take()
        .map_or_else(|| uris.clone(), Into::into);
    let start = Instant::now() + Duration::from_millis(20);
    let publishers = clients.start_publishers(&shards, &publisher_uris, start, cancel);
    if let Some(started) = options.on_start.take() {
        let _ = started.send((start, clock));
    }
    let publisher_counters = publishers.counters.clone();
    let consumer_counters = consumers.counters.clone();
    let totals = || progress::totals(&publisher_counters, &consumer_counters);
    let publisher_links = publishers.links.clone();
    let published = publishing::wait(publishing::Publishing {
        plan,
        publishers,
        start,
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

    let mut snapshots = shards.snapshot_senders();
    snapshots.extend(dead_letters.as_ref().map(|d| d.snapshots.clone()));
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
            snapshots: &snapshots,
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
    let final_totals = totals();
    let consumer_reports = consumers.stop(&events).await;
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
    let dead_letters = match dead_letters {
        Some(reader) => Some(reader.finish().await).transpose(),
        None => Ok(None),
    };
    let queues_left = setup::teardown(&setup, &topology, &events).await;
    fleet::close_all(&publisher_links, &events, "publishers").await;
    let thread_records = shards.finish().await;

    if let Some(error) = publisher_failure {
        return Err(error);
    }
    let consumer_reports = consumer_reports?;
    let dead_letters = dead_letters?;
    let mut series = collector.finish().await;
    let queue_records = judge::by_queue(thread_records, topology.queues.len());
    for (queue, records) in queue_records.iter().enumerate() {
        for record in records {
            series.add_queue(queue as u32, &record.series);
        }
    }
    let latencies = series.total_latencies();
    let ledger_bytes = ledgers.iter().map(|l| l.memory_bytes()).sum::<u64>()
        + queue_records
            .iter()
            .flatten()
            .map(|r| r.shard.memory_bytes())
            .sum::<u64>()
        + dead_letters
            .iter()
            .flatten()
            .flatten()
            .map(|d| d.memory_bytes())
            .sum::<u64>();
    let verdict = if options.no_verify {
        Verdict::unverified(
            crate::ledger::Counts {
                attempted: ledgers.iter().map(|l| u64::from(l.attempted)).sum(),
                confirmed: publisher_reports.iter().map(|r| r.acked).sum(),
                republished: ledgers.iter().map(|l| l.republished).sum(),
                delivered: final_totals.fresh,
                ..crate::ledger::Counts::default()
            },
            final_totals.deliveries,
            plan.publishers.confirm,
        )
    } else {
        judge::verdict(judge::Records {
            clients: &clients,
            ledgers: &ledgers,
            queues: &queue_records,
            final_read: &final_read,
            dead_letters: dead_letters.as_deref(),
            node_names: &options.node_names,
        })
    };
    let cpu_end = cpu_time();
    let publishing_ended = publisher_reports
        .iter()
        .filter_map(|r| r.publishing_ended)
        .max()
        .unwrap_or(start);
    let start_ns = clock.ns_at(start);
    Ok(WorkloadOutcome {
        run_id,
        queue: queue_names[0].clone(),
        queues: queue_names
            .iter()
            .enumerate()
            .map(|(queue, name)| QueueOutcome {
                name: name.clone(),
                node_index: setup::home_node(queue as u32, uris.len()),
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
