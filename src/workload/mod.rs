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
mod meeting;
mod outcome;
pub mod pacing;
mod phases;
pub mod progress;
pub mod publisher;
mod publishing;
mod setup;
mod shards;
mod thread_records;
pub mod topology;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use consumer::Sabotage;
pub use drain::{DrainEnd, DrainResult};
pub use final_read::FinalReadReport;
use outcome::cpu_time;
pub use outcome::{CpuTime, QueueOutcome, WorkloadOutcome};
pub use progress::Totals;

use crate::amqp::Failure;
use crate::broker_uri::BrokerUri;
use crate::deadline::PublishingStart;
use crate::ledger::{DeadLetterShard, DeliveryShard, PublishLedger};
use crate::scenario::Plan;
use collector::Collector;
pub(crate) use setup::SetupChannel;

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
/// phases: meet the other workers, declare the topology, start the client threads and the
/// consumers (and the dead-letter reader), start the publishers and wait for publishing to
/// end, drain, stop the consumers, read what is left, tear down, judge.
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
    // Meet (a worker runs on worker 0's clock); declare (worker 0 alone); start the client
    // threads, the consumers and the dead-letter reader; agree on the start.
    let who = (options.worker.as_ref(), options.run_id, !options.no_verify);
    let met = phases::Run::meet(plan, (uris, options.tls.clone()), who, cancel).await;
    let (run, meeting, clock_sync) = met?;
    let setup = meeting.set_up(
        plan,
        &run.uris,
        (&run.topology, run.clock),
        &run.events,
        cancel,
    );
    let setup = setup.await?;
    let (sample_sink, samples) = mpsc::unbounded_channel();
    let mut collector = Collector::new(samples, run.clock.origin(), options.live.clone());
    let shards = run.start_shards(sample_sink)?;
    let clients = run.clients(meeting.attempts());
    let consumer_uris = run.proxied(options.consumer_uris.take(), &options.tls);
    let mut consumers = clients.start_consumers(&shards, &consumer_uris, options.sabotage, cancel);
    let dead_letters = run.read_dead_letters();
    let ready = consumers.ready(CONSUMERS_READY_WITHIN, cancel).await;
    let start = match meeting.start(ready, run.clock, cancel).await {
        Ok(start) => start,
        Err(error) => return Err(run.abandon(consumers, dead_letters, error).await),
    };

    // Publish.
    let publishing = (&clients, &shards, &consumers);
    let published = run
        .publish(publishing, start, &mut options, &mut collector)
        .await;
    let consumer_counters = consumers.counters.clone();
    let totals = || progress::totals(&published.counters, &consumer_counters);
    let mut peers_missing = meeting.published(plan.drain_timeout, &run.events).await;

    // Drain, stop the consumers, read what is still missing, tear down.
    let progress = (&mut collector, options.on_progress.as_mut());
    let threads = (&shards, dead_letters.as_ref());
    let (drain, missing) = run
        .drain((&published, &setup, &totals), threads, progress, start)
        .await;
    let final_totals = totals();
    let consumer_reports = consumers.stop(&run.events).await;
    let drained = meeting.drained(plan.drain_timeout, &run.events, &mut peers_missing);
    drained.await;
    let tasks_failed = consumer_reports.is_err() || published.failure.is_some();
    let final_read = run.final_read(&drain, &missing, tasks_failed).await;
    let live = options.live.as_ref();
    let torn_down = run.tear_down(&setup, dead_letters, &published.links, live, shards);
    let torn_down = torn_down.await;
    meeting.leave().await;

    // Judge.
    run.judge(phases::Gathered {
        clients: &clients,
        published,
        consumers: consumer_reports,
        torn_down,
        final_read,
        final_totals,
        drain,
        start,
        cpu_start,
        node_names: &options.node_names,
        evidence: options.worker.map(|w| (w, clock_sync, peers_missing)),
        series: collector.finish().await,
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
        return crate::seeded::splitmix(nanos ^ u64::from(std::process::id()));
    }
    u64::from_le_bytes(bytes)
}
