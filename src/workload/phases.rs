//! The workload's phases, one method each, over what every phase reads ([`Run`]):
//! [`super::run`] calls them in order.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::collector::Collector;
use super::consumer::ConsumerReport;
use super::coordination::ClockSync;
use super::dead_letter_reader::Reading;
use super::drain::{self, DrainResult, MissingByQueue};
use super::final_read::{self, FinalRead};
use super::fleet::{Clients, Consumers};
use super::meeting::Meeting;
use super::outcome::{self, CpuTime, WorkloadOutcome, cpu_time};
use super::progress::{self, PublisherCounters, Totals};
use super::publisher::PublisherReport;
use super::setup::{self, SetupChannel};
use super::shards::{ShardOptions, Shards};
use super::thread_records::QueueRecord;
use super::topology::Topology;
use super::{
    ProgressSink, WorkerEvidence, WorkerRun, WorkloadError, WorkloadOptions, fleet, judge, link,
    live, publishing, random_run_id,
};
use crate::amqp::{Endpoints, TlsClient};
use crate::broker_uri::BrokerUri;
use crate::deadline::{PublishingDeadline, PublishingStart};
use crate::events::{EventKind, EventLog};
use crate::ledger::{DeadLetterShard, PublishLedger};
use crate::metrics::Clock;
use crate::metrics::series::{Sample, Series};
use crate::scenario::Plan;
use crate::share::Share;

/// What every phase of one run reads, fixed once the workers have met.
pub(super) struct Run<'a> {
    pub plan: &'a Plan,
    pub topology: Arc<Topology>,
    /// The broker's URIs (never a proxy's).
    pub uris: Arc<Endpoints>,
    pub events: EventLog,
    /// The run's clock (worker 0's, for a worker).
    pub clock: Clock,
    pub run_id: u64,
    pub share: Share,
    /// Ledgers are kept (not `--no-verify`).
    pub verify: bool,
    pub cancel: &'a CancellationToken,
}

/// What publishing left: the publishers' reports (or the failure of one that handed none
/// back, which fails the run after the teardown), and what the later phases read.
pub(super) struct Published {
    pub reports: Vec<PublisherReport>,
    pub failure: Option<WorkloadError>,
    pub ledgers: Vec<PublishLedger>,
    /// The publishers' connections, closed at the teardown.
    pub links: Vec<Arc<link::Link>>,
    pub counters: Vec<Arc<PublisherCounters>>,
}

/// What the teardown hands back.
pub(super) struct TornDown {
    /// What the dead-letter reader found, per queue (or why it found nothing).
    pub dead_letters: Result<Option<Vec<Option<DeadLetterShard>>>, WorkloadError>,
    /// Messages left in each queue at its deletion (worker 0).
    pub queues_left: Option<Vec<u32>>,
    /// Each client thread's records, per queue.
    pub thread_records: Vec<Vec<Option<QueueRecord>>>,
}

/// Everything the run gathered, for the verdict.
pub(super) struct Gathered<'a> {
    pub clients: &'a Clients<'a>,
    pub published: Published,
    pub consumers: Result<Vec<ConsumerReport>, WorkloadError>,
    pub torn_down: TornDown,
    pub final_read: FinalRead,
    /// The live totals at the end of the drain.
    pub final_totals: Totals,
    pub drain: DrainResult,
    /// When message 0 was due.
    pub start: Instant,
    /// The process's CPU time when the run began.
    pub cpu_start: CpuTime,
    pub node_names: &'a [String],
    /// A worker's share of a shared run, its clock and the meetings some missed.
    pub evidence: Option<(WorkerRun, ClockSync, Option<String>)>,
    pub series: Series,
}

impl<'a> Run<'a> {
    /// Meets the other workers (a lone process meets nobody) and sets the run's clock:
    /// worker 0's for a worker. Returns the run, its meeting and the clock's offset.
    /// (It takes what it needs of the options, not the options: their progress sink may
    /// not be shared between threads, and the workload's future must be `Send`.)
    ///
    /// # Errors
    /// Worker 0 did not answer in time.
    pub async fn meet(
        plan: &'a Plan,
        (uris, tls): (&[BrokerUri], Option<TlsClient>),
        (worker, run_id, verify): (Option<&WorkerRun>, Option<u64>, bool),
        cancel: &'a CancellationToken,
    ) -> Result<(Self, Meeting, ClockSync), WorkloadError> {
        let uris = Arc::new(Endpoints::new(uris.to_vec(), tls));
        let meeting = Meeting::join(worker, &uris, cancel);
        let run_id = meeting.run_id().or(run_id).unwrap_or_else(random_run_id);
        let (clock, clock_sync, events) = meeting.clock().await?;
        let run = Self {
            plan,
            topology: Arc::new(Topology::from_plan(plan, run_id)),
            uris,
            events,
            clock,
            run_id,
            share: meeting.share(),
            verify,
            cancel,
        };
        Ok((run, meeting, clock_sync))
    }

    /// The client threads, each sending its samples to `samples`.
    ///
    /// # Errors
    /// [`WorkloadError::Threads`] when they cannot be started.
    pub fn start_shards(
        &self,
        samples: mpsc::UnboundedSender<Sample>,
    ) -> Result<Shards, WorkloadError> {
        Shards::start(ShardOptions {
            threads: self.plan.threads as usize,
            clock: self.clock,
            samples,
            queues: self.topology.queues.len(),
            producers: self.plan.publishers.count,
        })
        .map_err(|e| WorkloadError::Threads(e.to_string()))
    }

    /// The run's clients; `worker_attempts` holds every worker's attempt number.
    pub fn clients(&self, worker_attempts: Arc<[u8]>) -> Clients<'_> {
        Clients {
            plan: self.plan,
            topology: &self.topology,
            events: &self.events,
            run_id: self.run_id,
            clock: self.clock,
            nodes: self.uris.len(),
            verify: self.verify,
            share: self.share,
            worker_attempts,
        }
    }

    /// Where one role's clients connect: `given` (a proxy on their path) or the broker.
    pub fn proxied(
        &self,
        given: Option<Vec<BrokerUri>>,
        tls: &Option<TlsClient>,
    ) -> Arc<Endpoints> {
        given.map_or_else(
            || self.uris.clone(),
            |given| Arc::new(Endpoints::new(given, tls.clone())),
        )
    }

    /// The dead-letter reader (worker 0, with ledgers, when the queues dead-letter): it
    /// reads from the start, so the drain counts what the broker moved there as found.
    pub fn read_dead_letters(&self) -> Option<Reading> {
        if !self.verify || !self.share.is_leader() {
            return None;
        }
        Reading::start(
            self.plan,
            &self.topology,
            &self.uris,
            &self.events,
            self.run_id,
        )
    }

    /// The run cannot start: stops what did, and hands back `error`; consumers that
    /// were not ready because of an interruption (even one that came while they stopped)
    /// were interrupted.
    pub async fn abandon(
        &self,
        consumers: Consumers,
        dead_letters: Option<Reading>,
        error: WorkloadError,
    ) -> WorkloadError {
        let _ = consumers.stop(&self.events).await;
        if let Some(reader) = dead_letters {
            let _ = reader.finish().await;
        }
        match error {
            WorkloadError::ConsumersNotReady if self.cancel.is_cancelled() => {
                WorkloadError::Interrupted
            }
            error => error,
        }
    }

    /// Starts the publishers (message 0 due at `start`), tells `options.on_start`, shows
    /// them to the live metrics, and waits until every one has handed back its ledger.
    pub async fn publish(
        &self,
        (clients, shards, consumers): (&Clients<'_>, &Shards, &Consumers),
        start: Instant,
        options: &mut WorkloadOptions,
        collector: &mut Collector,
    ) -> Published {
        let plan = self.plan;
        let deadline = plan
            .stop
            .duration
            .map(|d| PublishingDeadline::new(self.clock, start, d, options.hold_for_faults));
        let publisher_uris = self.proxied(options.publisher_uris.take(), &options.tls);
        let publishers = clients.start_publishers(
            shards,
            &publisher_uris,
            (start, deadline.clone()),
            self.cancel,
        );
        tell_start(
            options.on_start.take(),
            PublishingStart {
                start,
                clock: self.clock,
                deadline: deadline.clone(),
            },
        );
        if let Some(live) = &options.live {
            live.attach(live_tasks(
                plan,
                &self.topology,
                self.share,
                (&publishers.counters, &publishers.links),
                (&consumers.counters, &consumers.links),
            ));
        }
        let counters = publishers.counters.clone();
        let links = publishers.links.clone();
        let totals = || progress::totals(&counters, &consumers.counters);
        let waited = publishing::wait(publishing::Publishing {
            plan,
            publishers,
            start,
            deadline,
            events: &self.events,
            collector,
            on_progress: options.on_progress.as_mut(),
            totals: &totals,
        })
        .await;
        let (reports, failure) = match waited {
            Ok(reports) => (reports, None),
            Err(error) => (Vec::new(), Some(error)),
        };
        let ledgers = reports.iter().map(|r| r.ledger.clone()).collect();
        Published {
            reports,
            failure,
            ledgers,
            links,
            counters,
        }
    }

    /// Drains until every confirmed message has arrived (or the drain timeout), asking
    /// the client threads and the dead-letter reader what they hold, with a progress line
    /// (`on_progress`) about once a second.
    pub async fn drain(
        &self,
        (published, setup, totals): (&Published, &SetupChannel, &(dyn Fn() -> Totals + Sync)),
        (shards, dead_letters): (&Shards, Option<&Reading>),
        (collector, mut on_progress): (&mut Collector, Option<&mut ProgressSink>),
        start: Instant,
    ) -> (DrainResult, MissingByQueue) {
        let mut snapshots = shards.snapshot_senders();
        snapshots.extend(dead_letters.map(|d| d.snapshots.clone()));
        let mut on_tick = |t: Totals| {
            let line = collector.line(start.elapsed(), "draining", t);
            if let Some(report) = on_progress.as_mut() {
                report(&line);
            }
        };
        let drained = drain::after_publishing(drain::DrainPhase {
            plan: self.plan,
            topology: &self.topology,
            ledgers: &published.ledgers,
            verify: self.verify,
            shared: self.share.is_shared(),
            snapshots: &snapshots,
            totals,
            setup,
            cancel: self.cancel,
            on_tick: &mut on_tick,
        })
        .await;
        self.events
            .record("workload", EventKind::DrainEnd, drained.0.describe());
        drained
    }

    /// Worker 0 reads what is still missing from the queues; the others leave it to it.
    pub async fn final_read(
        &self,
        drain: &DrainResult,
        missing: &MissingByQueue,
        tasks_failed: bool,
    ) -> FinalRead {
        if !self.share.is_leader() {
            return FinalRead::skipped(
                self.topology.queues.len(),
                self.plan.publishers.count,
                "worker 0 reads the queues",
            );
        }
        final_read::after_drain(final_read::AfterDrain {
            plan: self.plan,
            topology: &self.topology,
            uris: &self.uris,
            run_id: self.run_id,
            events: &self.events,
            cancel: self.cancel,
            drain,
            missing,
            verified: self.verify,
            tasks_failed,
        })
        .await
    }

    /// Ends what the run started: the dead-letter reader (handing back what it read),
    /// the topology (worker 0 deletes it and says what each queue still held; the others
    /// only close their setup channel), the publishers' connections, the live metrics'
    /// view of the tasks, and the client threads (handing back their records).
    pub async fn tear_down(
        &self,
        setup: &SetupChannel,
        dead_letters: Option<Reading>,
        publishers: &[Arc<link::Link>],
        live: Option<&Arc<dyn live::LiveSink>>,
        shards: Shards,
    ) -> TornDown {
        let dead_letters = match dead_letters {
            Some(reader) => Some(reader.finish().await).transpose(),
            None => Ok(None),
        };
        let queues_left = if self.share.is_leader() {
            setup::teardown(setup, &self.topology, &self.events).await
        } else {
            setup.close().await;
            None
        };
        fleet::close_all(publishers, &self.events, "publishers").await;
        if let Some(live) = live {
            live.detach();
        }
        TornDown {
            dead_letters,
            queues_left,
            thread_records: shards.finish().await,
        }
    }

    /// The verdict and the outcome. A publisher or consumer that did not hand back its
    /// ledger fails the run here, after the teardown.
    ///
    /// # Errors
    /// That task's failure, or the dead-letter reader's.
    pub fn judge(&self, gathered: Gathered<'_>) -> Result<WorkloadOutcome, WorkloadError> {
        let Gathered {
            published,
            final_read,
            final_totals,
            ..
        } = gathered;
        if let Some(error) = published.failure {
            return Err(error);
        }
        let consumers = gathered.consumers?;
        let TornDown {
            dead_letters,
            queues_left,
            thread_records,
        } = gathered.torn_down;
        let dead_letters = dead_letters?;
        let ledgers = &published.ledgers;
        let queue_records = judge::by_queue(thread_records, self.topology.queues.len());
        let verdict = judge::decide(judge::Records {
            clients: gathered.clients,
            ledgers,
            publishers: &published.reports,
            queues: &queue_records,
            final_read: &final_read,
            dead_letters: dead_letters.as_deref(),
            node_names: gathered.node_names,
            unverified: (!self.verify).then_some(final_totals),
        });
        let evidence = gathered
            .evidence
            .map(|(worker, clock_sync, peers_missing)| WorkerEvidence {
                share: worker.share,
                run: worker.run,
                clock_sync,
                ledgers: ledgers.clone(),
                consumers: queue_records
                    .iter()
                    .map(|records| records.iter().map(|r| r.shard.clone()).collect())
                    .collect(),
                final_read: final_read.report.ran.then(|| final_read.shards.clone()),
                dead_letters: dead_letters.clone(),
                acked: published.reports.iter().map(|r| r.acked).sum(),
                fresh: final_totals.fresh,
                deliveries: final_totals.deliveries,
                peers_missing,
            });
        let mut outcome = outcome::Ended {
            run_id: self.run_id,
            topology: &self.topology,
            nodes: self.uris.len(),
            verdict,
            series: gathered.series,
            events: self.events.snapshot(),
            ledgers,
            publishers: published.reports,
            consumers,
            queue_records,
            dead_letters,
            drain: gathered.drain,
            final_read: final_read.report,
            queues_left,
            clock: self.clock,
            start: gathered.start,
            cpu: cpu_time().since(gathered.cpu_start),
            interrupted: self.cancel.is_cancelled(),
        }
        .outcome();
        outcome.worker = evidence;
        Ok(outcome)
    }
}

/// Tells whoever asked (the fault runner) when publishing starts.
fn tell_start(listener: Option<oneshot::Sender<PublishingStart>>, start: PublishingStart) {
    if let Some(listener) = listener {
        let _ = listener.send(start);
    }
}

/// This process's tasks for the live metrics, each with its queue's name when the run
/// has several queues (and "" when it has one).
fn live_tasks(
    plan: &Plan,
    topology: &Topology,
    share: Share,
    (publishers, publisher_links): (&[Arc<PublisherCounters>], &[Arc<link::Link>]),
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
