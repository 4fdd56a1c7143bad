//! Runs the fault timeline against a live run: each occurrence waits for its time, is made,
//! lasts, and is taken back; on every exit path (the end, an error, Ctrl-C) whatever is
//! in effect is taken back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::network::NetworkFaults;
use super::nodes::NodeFaults;
pub use super::outcome::FaultOutcome;
use super::timeline::{Occurrence, describe_action};
use crate::deadline::{PublishingDeadline, PublishingStart};
use crate::metrics::Clock;
use crate::scenario::FaultAction;

/// What happened to one occurrence.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FaultRecord {
    pub label: String,
    pub action: String,
    /// Planned start, seconds from the start of publishing.
    pub planned_s: f64,
    /// Clock readings (ns since the Unix epoch) when it began and ended; `ended_ns` unset
    /// for a fault that is never taken back (node_kill without `for`).
    pub started_ns: u64,
    pub ended_ns: Option<u64>,
    /// The node hit, for node faults.
    pub node: Option<usize>,
    pub outcome: FaultOutcome,
}

impl FaultRecord {
    /// True when the fault was made.
    pub fn applied(&self) -> bool {
        self.outcome.is_applied()
    }
}

/// Told when faults begin and end (live progress).
pub trait Announce: Send + Sync {
    /// A fault began, `elapsed_s` after the start of publishing.
    fn began(&self, elapsed_s: f64, label: &str, action: &str);
    /// A fault ended (or failed: `outcome` says).
    fn ended(&self, elapsed_s: f64, label: &str, outcome: &FaultOutcome);
    /// The faults ended late: publishing goes on until `until_s` (`after_faults`).
    fn publishing_until(&self, _elapsed_s: f64, _until_s: f64) {}
}

/// Tells several listeners (the console and the live metrics) the same news.
pub struct AnnounceAll(pub Vec<Arc<dyn Announce>>);

impl Announce for AnnounceAll {
    fn began(&self, elapsed_s: f64, label: &str, action: &str) {
        for listener in &self.0 {
            listener.began(elapsed_s, label, action);
        }
    }

    fn ended(&self, elapsed_s: f64, label: &str, outcome: &FaultOutcome) {
        for listener in &self.0 {
            listener.ended(elapsed_s, label, outcome);
        }
    }

    fn publishing_until(&self, elapsed_s: f64, until_s: f64) {
        for listener in &self.0 {
            listener.publishing_until(elapsed_s, until_s);
        }
    }
}

/// Runs faults on a timeline.
pub struct FaultRunner {
    occurrences: Vec<Occurrence>,
    network: Option<Arc<NetworkFaults>>,
    nodes: Arc<NodeFaults>,
    announce: Option<Arc<dyn Announce>>,
    /// `after_faults`: publishing goes on this long after the last fault ended.
    after_faults: Option<Duration>,
}

impl FaultRunner {
    /// A runner for `occurrences`, making network faults through `network`; with
    /// `after_faults`, it settles the publishing deadline the workload holds for it.
    pub fn new(
        occurrences: Vec<Occurrence>,
        (network, nodes): (Option<Arc<NetworkFaults>>, Arc<NodeFaults>),
        announce: Option<Arc<dyn Announce>>,
        after_faults: Option<Duration>,
    ) -> Self {
        Self {
            occurrences,
            network,
            nodes,
            announce,
            after_faults,
        }
    }

    /// Waits for publishing to start, then runs every occurrence at its time. Returns when
    /// all are done or `cancel` fires (faults in effect are then taken back first); with
    /// `after_faults`, then settles the publishing deadline.
    pub async fn run(
        &self,
        started: oneshot::Receiver<PublishingStart>,
        cancel: CancellationToken,
    ) -> Vec<FaultRecord> {
        let PublishingStart {
            start,
            clock,
            deadline,
        } = tokio::select! {
            () = cancel.cancelled() => return Vec::new(),
            started = started => match started {
                Ok(started) => started,
                Err(_) => return Vec::new(),
            },
        };
        let mut tasks = tokio::task::JoinSet::new();
        for occurrence in self.occurrences.iter().cloned() {
            let network = self.network.clone();
            let nodes = self.nodes.clone();
            let cancel = cancel.clone();
            let announce = self.announce.clone();
            tasks.spawn(async move {
                let record = run_one(
                    occurrence,
                    start,
                    clock,
                    network,
                    nodes,
                    cancel,
                    announce.as_deref(),
                )
                .await;
                if let Some(announce) = announce.filter(|_| record.started_ns > 0) {
                    announce.ended(
                        start.elapsed().as_secs_f64(),
                        &record.label,
                        &record.outcome,
                    );
                }
                record
            });
        }
        let mut records: Vec<FaultRecord> = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            if let Ok(record) = joined {
                records.push(record);
            }
        }
        records.sort_by(|a, b| a.planned_s.total_cmp(&b.planned_s));
        if let (Some(deadline), Some(after)) = (deadline, self.after_faults) {
            self.settle(&deadline, &records, after, (start, clock));
        }
        records
    }

    /// Publishing ends `after` past the last fault's end (its start, for one never taken
    /// back), or as planned if that is later.
    fn settle(
        &self,
        deadline: &PublishingDeadline,
        records: &[FaultRecord],
        after: Duration,
        (start, clock): (Instant, Clock),
    ) {
        let last_end_ns = records
            .iter()
            .map(|r| r.ended_ns.unwrap_or(r.started_ns))
            .max()
            .unwrap_or(0);
        let until_ns = deadline.settle(last_end_ns.saturating_add(after.as_nanos() as u64));
        if until_ns > deadline.planned_ns() {
            if let Some(announce) = &self.announce {
                let until = clock.instant_at(until_ns).saturating_duration_since(start);
                announce.publishing_until(start.elapsed().as_secs_f64(), until.as_secs_f64());
            }
        }
    }

    /// After any exit path: proxies without toxics and enabled, nodes resumed, alarms cleared.
    pub async fn heal(&self) {
        if let Some(network) = &self.network {
            network.heal().await;
        }
        if self.occurrences.iter().any(|o| {
            !matches!(
                o.action,
                FaultAction::Down { .. } | FaultAction::Toxic { .. }
            )
        }) {
            self.nodes.heal().await;
        }
    }
}

async fn run_one(
    occurrence: Occurrence,
    start: Instant,
    clock: Clock,
    network: Option<Arc<NetworkFaults>>,
    nodes: Arc<NodeFaults>,
    cancel: CancellationToken,
    announce: Option<&dyn Announce>,
) -> FaultRecord {
    let mut record = FaultRecord {
        label: occurrence.label.clone(),
        action: describe_action(&occurrence.action),
        planned_s: occurrence.start.as_secs_f64(),
        started_ns: 0,
        ended_ns: None,
        node: None,
        outcome: FaultOutcome::NotStarted,
    };
    tokio::select! {
        () = cancel.cancelled() => return record,
        () = tokio::time::sleep_until((start + occurrence.start).into()) => {}
    }
    // A node fault begins once its node is known: finding the leader asks the broker,
    // which can take seconds on a loaded machine, and the fault is not in effect meanwhile.
    let target = match &occurrence.action {
        FaultAction::Down { .. } | FaultAction::Toxic { .. } => Ok(None),
        action => tokio::select! {
            () = cancel.cancelled() => return record,
            target = nodes.target(action) => target,
        },
    };
    record.started_ns = clock.now_ns();
    if let Some(announce) = announce {
        announce.began(start.elapsed().as_secs_f64(), &record.label, &record.action);
    }
    let target = match target {
        Ok(target) => target,
        Err(error) => {
            record.outcome = FaultOutcome::Failed(error.to_string());
            return record;
        }
    };
    match &occurrence.action {
        FaultAction::Down { .. } | FaultAction::Toxic { .. } => {
            let Some(network) = network else {
                record.outcome = FaultOutcome::Failed("no proxy on the client paths".into());
                return record;
            };
            match network.apply(&occurrence.action).await {
                Ok(applied) => {
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = tokio::time::sleep(occurrence.lasting.unwrap_or(Duration::ZERO)) => {}
                    }
                    network.revert(&applied).await;
                    record.ended_ns = Some(clock.now_ns());
                    record.outcome = FaultOutcome::Applied;
                }
                Err(error) => record.outcome = FaultOutcome::Failed(error.to_string()),
            }
        }
        action => match nodes.run(action, target, occurrence.lasting, &cancel).await {
            Ok(node) => {
                record.node = (!matches!(action, FaultAction::RollingRestart)).then_some(node);
                let never_taken_back =
                    matches!(action, FaultAction::NodeKill { .. }) && occurrence.lasting.is_none();
                record.ended_ns = (!never_taken_back).then(|| clock.now_ns());
                record.outcome = FaultOutcome::Applied;
            }
            Err(error) => record.outcome = FaultOutcome::Failed(error.to_string()),
        },
    }
    record
}
