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

use crate::amqp::Failure;
use crate::events::{EventKind, EventLog};
use crate::metrics::Clock;
use crate::redact::BrokerUri;
use crate::scenario::Plan;
use collector::Collector;
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
    let proxied = |given: Option<Vec<BrokerUri>>| given.map_or_else(|| uris.clone(), Into::into);

    // Declare; start the client threads, the consumers and the dead-letter reader.
    let setup = setup::declare(plan, &uris, &topology, &events, cancel).await?;
    let shards = Shards::start(ShardOptions {
        threads: plan.threads as usize,
        clock,
        samples: sample_sink,
        queues: topology.queues.len(),
        producers: plan.publishers.count,
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
    let consumer_uris = proxied(options.consumer_uris.take());
    let mut consumers = clients.start_consumers(&shards, &consumer_uris, options.sabotage, cancel);
    // Read from the start, so the drain counts what the broker moved there as found.
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

    // Publish.
    let start = Instant::now() + Duration::from_millis(20);
    let publishers = clients.start_publishers(
        &shards,
        &proxied(options.publisher_uris.take()),
        start,
        cancel,
    );
    if let Some(started) = options.on_start.take() {
        let _ = started.send((start, clock));
    }
    let (publisher_counters, consumer_counters) =
        (publishers.counters.clone(), consumers.counters.clone());
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

    // Drain, stop the consumers, read what is still missing, tear down.
    let mut snapshots = shards.snapshot_senders();
    snapshots.extend(dead_letters.as_ref().map(|d| d.snapshots.clone()));
    let (drain, missing) = drain::after_publishing(drain::DrainPhase {
        plan,
        topology: &topology,
        ledgers: &ledgers,
        verify: !options.no_verify,
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
    let final_read = final_read::after_drain(final_read::AfterDrain {
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
    .await;
    let dead_letters = match dead_letters {
        Some(reader) => Some(reader.finish().await).transpose(),
        None => Ok(None),
    };
    let queues_left = setup::teardown(&setup, &topology, &events).await;
    fleet::close_all(&publisher_links, &events, "publishers").await;
    let thread_records = shards.finish().await;

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
    let cpu = cpu_time().since(cpu_start);
    Ok(outcome::Ended {
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
    .outcome())
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
