//! The part of a run between bring-up and teardown, for `warren run` and every step of
//! `warren sweep`: proxies for network faults, the workload, and the fault timeline beside
//! it; then everything taken back. `progress.rs` is the live console line.

mod progress;

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{Mutex, oneshot};
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::cli::ProgressStyle;
use crate::exporter::LiveMetrics;
use crate::faults::network::NetworkFaults;
use crate::faults::nodes::NodeFaults;
use crate::faults::runner::{Announce, AnnounceAll, FaultRecord, FaultRunner};
use crate::faults::timeline::timeline;
use crate::output::Console;
use crate::scenario::{BrokerPlan, FaultAction, Plan};
use crate::workload::topology::Topology;
use crate::workload::{
    self, ProgressLine, WorkerRun, WorkloadError, WorkloadOptions, WorkloadOutcome, random_run_id,
};
use progress::Progress;

/// What a driven run produced.
pub struct Driven {
    pub outcome: Result<WorkloadOutcome, WorkloadError>,
    pub faults: Vec<FaultRecord>,
    /// Toxics still on the run's proxies after cleanup (should be none).
    pub leftover_toxics: Vec<String>,
}

/// How to drive a run, beyond the plan.
pub struct DriveOptions<'a> {
    pub console: &'a Console,
    pub style: ProgressStyle,
    pub no_verify: bool,
    /// One worker of several (`--worker I/N`).
    pub worker: Option<WorkerRun>,
    /// `--metrics-listen`: the live figures Prometheus scrapes.
    pub live: Option<Arc<LiveMetrics>>,
}

/// Runs the workload and the faults on `broker`; hands the broker back for teardown.
/// A worker other than worker 0 makes only the network faults, on its own proxies.
pub async fn drive(
    plan: &Plan,
    broker: Broker,
    options: DriveOptions<'_>,
    cancel: &CancellationToken,
) -> (Broker, anyhow::Result<Driven>) {
    let DriveOptions {
        console,
        style,
        no_verify,
        worker,
        live: live_metrics,
    } = options;
    let run_id = worker.as_ref().map_or_else(random_run_id, |w| w.run.id);
    // `node = "leader"` faults aim at the leader of the run's first queue.
    let queue = Topology::from_plan(plan, run_id).queues[0].name.clone();
    let mut occurrences = timeline(plan);
    if worker.as_ref().is_some_and(|w| !w.share.is_leader()) {
        occurrences.retain(|o| {
            matches!(
                o.action,
                FaultAction::Down { .. } | FaultAction::Toxic { .. }
            )
        });
    }
    if !occurrences.is_empty() {
        console.line(format!(
            "fault schedule (seed {}), times from the start of publishing:",
            plan.seed
        ));
        for occurrence in &occurrences {
            console.line(format!("  {}", occurrence.describe()));
        }
    }
    let network = if plan.has_network_faults() {
        let tag = format!("warren-{:08x}", run_id as u32);
        match NetworkFaults::start(plan, &broker.uris(), &tag).await {
            Ok(network) => {
                let server = plan.proxy.toxiproxy.as_deref().unwrap_or("embedded");
                console.line(format!("clients go through Toxiproxy proxies ({server}): publishers {:?}, consumers {:?}", ports(&network.publisher_uris()), ports(&network.consumer_uris())));
                Some(Arc::new(network))
            }
            Err(error) => {
                return (
                    broker,
                    Err(error).context("the proxies for network faults could not be made"),
                );
            }
        }
    } else {
        None
    };
    let commands = match &plan.broker {
        BrokerPlan::External(external) => Some(external.commands.clone()),
        BrokerPlan::Managed(_) => None,
    };
    let uris = broker.uris();
    let node_names = broker.node_names();
    let tls = broker.tls();
    let broker = Arc::new(Mutex::new(broker));
    let nodes = Arc::new(NodeFaults::new(broker.clone(), commands, queue, plan.seed));
    let progress = Arc::new(Progress::new(style, console.quiet, plan.stop.duration));
    let mut listeners: Vec<Arc<dyn Announce>> = vec![progress.clone()];
    if let Some(live) = &live_metrics {
        // Every fault of the timeline is served from the start, at 0 until it begins.
        for occurrence in &occurrences {
            live.fault(&occurrence.label, false);
        }
        listeners.push(live.clone());
    }
    let announce: Arc<dyn Announce> = Arc::new(AnnounceAll(listeners));
    let runner = FaultRunner::new(
        occurrences,
        (network.clone(), nodes),
        Some(announce),
        plan.stop.after_faults,
    );
    let (started_tx, started_rx) = oneshot::channel();
    let faults_cancel = cancel.child_token();
    let live = progress.clone();
    let options = WorkloadOptions {
        on_progress: Some(Box::new(move |line: &ProgressLine| live.update(line))),
        publisher_uris: network.as_ref().map(|n| n.publisher_uris()),
        consumer_uris: network.as_ref().map(|n| n.consumer_uris()),
        on_start: Some(started_tx),
        hold_for_faults: plan.stop.after_faults.is_some(),
        run_id: Some(run_id),
        no_verify,
        node_names,
        worker,
        live: live_metrics.map(|live| live as Arc<dyn crate::workload::live::LiveSink>),
        tls,
        ..WorkloadOptions::default()
    };
    let (outcome, faults) = tokio::join!(
        async {
            let outcome = workload::run(plan, &uris, options, cancel).await;
            faults_cancel.cancel();
            outcome
        },
        runner.run(started_rx, faults_cancel.clone()),
    );
    progress.finish();
    runner.heal().await;
    drop(runner);
    let mut leftover_toxics = Vec::new();
    if let Some(network) = network {
        leftover_toxics = network.leftover_toxics().await.unwrap_or_default();
        if let Ok(network) = Arc::try_unwrap(network) {
            network.stop().await;
        }
    }
    let broker = match Arc::try_unwrap(broker) {
        Ok(broker) => broker.into_inner(),
        Err(_) => unreachable!("every fault task has ended, so nothing else holds the broker"),
    };
    (
        broker,
        Ok(Driven {
            outcome,
            faults,
            leftover_toxics,
        }),
    )
}

fn ports(uris: &[crate::broker_uri::BrokerUri]) -> Vec<u16> {
    uris.iter().map(|u| u.port()).collect()
}
