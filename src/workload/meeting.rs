//! Where the workload's phases meet the other processes of the run. Alone, every meeting
//! passes at once; as one worker of several (`--worker I/N`), each is a phase on the
//! broker ([`Coordination`]). The workload calls the same methods either way, so none of
//! its phases asks which case it is in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::coordination::{ClockSync, Coordination, CoordinationError, Phase};
use super::setup::{self, SetupChannel};
use super::topology::Topology;
use super::{WorkerRun, WorkloadError};
use crate::amqp::Endpoints;
use crate::events::{EventKind, EventLog};
use crate::metrics::Clock;
use crate::scenario::Plan;
use crate::share::Share;

/// How far past the agreed start a worker may learn of it and still take part.
const LATE_START_TOLERANCE_NS: u64 = 500_000_000;

/// How long after consumers are ready a lone process starts publishing.
const SOLO_START_AFTER: Duration = Duration::from_millis(20);

/// This process's place among the run's processes.
pub(super) struct Meeting {
    share: Share,
    /// The run's shared name and the broker meeting point, for a worker of several.
    worker: Option<(WorkerRun, Coordination)>,
}

impl Meeting {
    /// Alone when `worker` is `None`; otherwise joins the meeting point of its run on the
    /// broker (`uris`, never a proxy).
    pub fn join(
        worker: Option<&WorkerRun>,
        uris: &Arc<Endpoints>,
        cancel: &CancellationToken,
    ) -> Self {
        let Some(worker) = worker else {
            return Self {
                share: Share::ALONE,
                worker: None,
            };
        };
        let coordination = Coordination::join(
            uris.clone(),
            worker.share,
            worker.run.clone(),
            worker.barrier_timeout,
            EventLog::new(Clock::start()),
            cancel,
        );
        Self {
            share: worker.share,
            worker: Some((worker.clone(), coordination)),
        }
    }

    /// Which share of the run this process runs.
    pub fn share(&self) -> Share {
        self.share
    }

    /// The run id every worker shares, when this process is one of several.
    pub fn run_id(&self) -> Option<u64> {
        self.worker.as_ref().map(|(worker, _)| worker.run.id)
    }

    /// The run's clock: this process's own when alone, worker 0's for a worker (with how
    /// far this worker's clock is from it), recorded in the run's event log.
    ///
    /// # Errors
    /// Worker 0 did not answer in time.
    pub async fn clock(&self) -> Result<(Clock, ClockSync, EventLog), WorkloadError> {
        let Some((worker, coordination)) = &self.worker else {
            let clock = Clock::start();
            return Ok((clock, ClockSync::default(), EventLog::new(clock)));
        };
        let sync = coordination.clock_sync().await?;
        let clock = Clock::aligned(sync.offset_ns);
        let events = EventLog::new(clock);
        events.record(
            "workload",
            EventKind::Workers,
            format!(
                "worker {} of run {}: clock offset {} µs from worker 0's (within {} µs)",
                worker.share,
                worker.run.text,
                sync.offset_ns / 1_000,
                sync.bound_ns / 1_000
            ),
        );
        Ok((clock, sync, events))
    }

    /// The setup channel: worker 0 (or a lone process) declares the topology and says
    /// so; any other worker waits for that, and is refused if the run already started:
    /// its consumers would take (and acknowledge) messages of a run it then leaves.
    ///
    /// # Errors
    /// The topology could not be declared, or the workers did not meet.
    pub async fn set_up(
        &self,
        plan: &Plan,
        uris: &Arc<Endpoints>,
        (topology, clock): (&Topology, Clock),
        events: &EventLog,
        cancel: &CancellationToken,
    ) -> Result<SetupChannel, WorkloadError> {
        match &self.worker {
            Some((_, coordination)) if !self.share.is_leader() => {
                coordination.topology_ready().await?;
                if let Some(start_ns) = coordination.start_announced() {
                    let late = self.not_late(coordination, clock, start_ns);
                    self.fail_on(&late).await;
                    late?;
                }
                Ok(setup::attach(plan, uris, events, cancel))
            }
            _ => {
                let setup = setup::declare(plan, uris, topology, events, cancel).await;
                self.fail_on(&setup).await;
                if let (Some((_, coordination)), Ok(_)) = (&self.worker, &setup) {
                    coordination.topology_declared();
                }
                setup
            }
        }
    }

    /// Every worker's attempt number (this process's own included): a lone process is
    /// attempt 0 of one.
    pub fn attempts(&self) -> Arc<[u8]> {
        match &self.worker {
            Some((_, coordination)) => coordination.attempts().into(),
            None => Arc::new([0]),
        }
    }

    /// The instant message 0 is due, once this process's consumers are `ready`: soon
    /// after for a lone process; for workers, the instant worker 0 announces once all
    /// are ready. The other workers are told when this process cannot start.
    ///
    /// # Errors
    /// The consumers were not ready (or `cancel` fired), or the workers did not agree.
    pub async fn start(
        &self,
        ready: bool,
        clock: Clock,
        cancel: &CancellationToken,
    ) -> Result<Instant, WorkloadError> {
        let not_ready = || {
            if cancel.is_cancelled() {
                WorkloadError::Interrupted
            } else {
                WorkloadError::ConsumersNotReady
            }
        };
        let Some((_, coordination)) = &self.worker else {
            return if ready {
                Ok(Instant::now() + SOLO_START_AFTER)
            } else {
                Err(not_ready())
            };
        };
        if !ready {
            coordination.fail("its consumers did not start").await;
            return Err(not_ready());
        }
        coordination.announce(Phase::Ready);
        let agreed = self.agree_on_start(coordination, clock).await;
        self.fail_on(&agreed).await;
        agreed
    }

    /// This process's publishers have ended: for workers, waits until every worker's
    /// have (within the drain timeout and the barrier timeout). Returns why the run is
    /// incomplete when some did not.
    pub async fn published(&self, drain_timeout: Duration, events: &EventLog) -> Option<String> {
        let (_, coordination) = self.worker.as_ref()?;
        coordination.announce(Phase::Published);
        let within = drain_timeout + coordination.timeout;
        reached(coordination, Phase::Published, within, events).await
    }

    /// This process's consumers have stopped. Worker 0 reads what is left only once no
    /// worker consumes any more, so it waits for every worker (within the drain timeout
    /// and the barrier timeout), unless some already went missing (`peers_missing`, which
    /// it then sets).
    pub async fn drained(
        &self,
        drain_timeout: Duration,
        events: &EventLog,
        peers_missing: &mut Option<String>,
    ) {
        let Some((_, coordination)) = &self.worker else {
            return;
        };
        coordination.announce(Phase::Drained);
        if self.share.is_leader() && peers_missing.is_none() {
            let within = drain_timeout + coordination.timeout;
            *peers_missing = reached(coordination, Phase::Drained, within, events).await;
        }
    }

    /// Leaves the meeting point: the last announcement goes out first.
    pub async fn leave(self) {
        if let Some((_, coordination)) = self.worker {
            coordination.leave().await;
        }
    }

    /// Tells the other workers this one failed, when `result` is an error.
    async fn fail_on<T>(&self, result: &Result<T, WorkloadError>) {
        if let (Some((_, coordination)), Err(error)) = (&self.worker, result) {
            coordination.fail(&error.to_string()).await;
        }
    }

    /// The instant message 0 is due, agreed by every worker: worker 0 waits until all are
    /// ready and announces an instant a second ahead (time for the announcement to reach
    /// everyone); the others wait for it. On worker 0's time, which every worker's clock
    /// reads.
    async fn agree_on_start(
        &self,
        coordination: &Coordination,
        clock: Clock,
    ) -> Result<Instant, WorkloadError> {
        let start_ns = if self.share.is_leader() {
            coordination
                .all_reached(Phase::Ready, coordination.timeout)
                .await?;
            let start_ns = clock.now_ns() + 1_000_000_000;
            coordination.start_at(start_ns);
            start_ns
        } else {
            self.not_late(coordination, clock, coordination.start_ns().await?)?
        };
        Ok(clock.instant_at(start_ns))
    }

    /// `start_ns`, unless this worker learns of it too late to take part. Worker 0 fixes
    /// the start a second ahead: a worker that learns it well after it passed was not
    /// there when the run began (a pod replaced mid-run, say), and joining would publish a
    /// share of the run that began late.
    fn not_late(
        &self,
        coordination: &Coordination,
        clock: Clock,
        start_ns: u64,
    ) -> Result<u64, WorkloadError> {
        let late_by = clock.now_ns().saturating_sub(start_ns);
        if late_by > LATE_START_TOLERANCE_NS {
            return Err(CoordinationError::Late {
                worker: self.share.index,
                late_by: Duration::from_nanos(late_by),
                run: coordination.run_text().to_string(),
            }
            .into());
        }
        Ok(start_ns)
    }
}

/// Waits until every worker has reached `phase`; when some have not within `within`,
/// records it and says why.
async fn reached(
    coordination: &Coordination,
    phase: Phase,
    within: Duration,
    events: &EventLog,
) -> Option<String> {
    let error = coordination.all_reached(phase, within).await.err()?;
    events.record("workload", EventKind::Workers, error.to_string());
    Some(error.to_string())
}
