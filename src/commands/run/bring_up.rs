//! Bringing up the run's broker: start it, check that every node takes an AMQP connection,
//! say what it is, run the command's body on it, and tear it down on every path, writing
//! plan.json and broker.json into the run folder.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::amqp::connect;
use crate::broker::{Broker, BrokerError, NodeInfo, StartOptions};
use crate::cli::RunArgs;
use crate::output::Console;
use crate::scenario::{BrokerPlan, Plan};
use crate::timestamp::UtcTime;

/// What a run found out about its broker, written as broker.json.
#[derive(Debug, Serialize)]
struct BrokerReport {
    warren_version: &'static str,
    scenario: String,
    started_at: String,
    mode: &'static str,
    /// Seconds from launch until every node answered.
    startup_s: f64,
    cluster_name: Option<String>,
    running_nodes: Vec<String>,
    nodes: Vec<NodeInfo>,
    /// Nodes warren opened an AMQP connection and a channel to.
    connected: usize,
}

/// Brings up the broker, checks that every node takes a connection, runs `body` on it,
/// and tears the broker down on every path; writes plan.json and broker.json into
/// `run_dir`. Returns what `body` produced and the nodes, or None when interrupted
/// before `body` could start.
///
/// # Errors
/// The broker could not be brought up, a node refused connections, or the run folder
/// could not be written.
pub(super) async fn with_broker<'a, T, F, Fut>(
    plan: &'a Plan,
    args: &RunArgs,
    console: &'a Console,
    run_dir: &Path,
    started_at: UtcTime,
    cancel: &'a CancellationToken,
    body: F,
) -> anyhow::Result<Option<(T, Vec<NodeInfo>)>>
where
    F: FnOnce(Broker, Vec<NodeInfo>) -> Fut,
    Fut: std::future::Future<Output = (Broker, T)> + 'a,
{
    let launch = Instant::now();
    let options = StartOptions {
        keep: args.keep,
        parent_dir: None,
        partitionable: plan.has_partitions(),
    };
    let broker = match Broker::start(&plan.broker, options, cancel).await {
        Ok(broker) => broker,
        Err(BrokerError::Interrupted) => {
            console.line("interrupted while the broker was starting; nothing was left running");
            return Ok(None);
        }
        Err(error) => return Err(error).context("the broker could not be brought up"),
    };
    let startup = launch.elapsed();
    let outcome = session(&broker, plan, console, startup, started_at, cancel).await;
    let connected = matches!(&outcome, Ok(report) if report.connected == report.nodes.len());
    let (broker, produced) = match &outcome {
        Ok(report) if connected && !cancel.is_cancelled() => {
            let (broker, produced) = body(broker, report.nodes.clone()).await;
            (broker, Some(produced))
        }
        _ => (broker, None),
    };
    if let Broker::Managed(cluster) = &broker {
        if args.keep {
            console.line(format!(
                "node data and logs kept in {}",
                cluster.base_dir().display()
            ));
        }
    }
    broker.shutdown().await;
    console.line("broker torn down");
    let broker_report = outcome?;
    write_results(run_dir, plan, &broker_report)
        .with_context(|| format!("writing results to {}", run_dir.display()))?;
    if broker_report.connected < broker_report.nodes.len() {
        anyhow::bail!(
            "{} of {} nodes accepted an AMQP connection",
            broker_report.connected,
            broker_report.nodes.len()
        );
    }
    Ok(produced.map(|p| (p, broker_report.nodes)))
}

/// Everything between bring-up and teardown.
async fn session(
    broker: &Broker,
    plan: &Plan,
    console: &Console,
    startup: Duration,
    started_at: UtcTime,
    cancel: &CancellationToken,
) -> anyhow::Result<BrokerReport> {
    let nodes = broker.describe().await;
    let tls = broker.tls();
    let (cluster_name, running_nodes) = match broker {
        Broker::Managed(cluster) => {
            let status = cluster
                .ctl()
                .cluster_status(&cluster.specs()[0].name)
                .await?;
            (Some(status.cluster_name), status.running_nodes)
        }
        Broker::External(_) => (None, Vec::new()),
    };
    console.line(format!("broker up in {:.1} s", startup.as_secs_f64()));
    for node in &nodes {
        let version = match (&node.product, &node.version) {
            (Some(p), Some(v)) => format!("{p} {v}"),
            _ => "version unknown".into(),
        };
        console.line(format!(
            "  {}  {}  {}  {}",
            node.name,
            version,
            node.platform.as_deref().unwrap_or(""),
            node.uri
        ));
    }
    if let Some(name) = &cluster_name {
        console.line(format!(
            "  cluster {name}: {} of {} nodes running",
            running_nodes.len(),
            nodes.len()
        ));
    }
    let mut connected = 0;
    for uri in broker.uris() {
        if cancel.is_cancelled() {
            break;
        }
        let name = format!("warren {}", plan.name);
        let connection = tokio::select! {
            () = cancel.cancelled() => break,
            connection = connect(&uri, tls.as_ref(), &name, Duration::from_secs(10)) => connection,
        };
        match connection {
            Ok(connection) => {
                let channel = connection.check_channel().await;
                connection.close().await;
                match channel {
                    Ok(()) => connected += 1,
                    Err(reason) => console.line(format!("  {uri}: no channel: {reason}")),
                }
            }
            Err(error) => console.line(format!("  {error}")),
        }
    }
    console.line(format!(
        "connected with amqprs to {connected} of {} nodes",
        nodes.len()
    ));
    Ok(BrokerReport {
        warren_version: env!("CARGO_PKG_VERSION"),
        scenario: plan.name.clone(),
        started_at: started_at.rfc3339(),
        mode: match plan.broker {
            BrokerPlan::Managed(_) => "managed",
            BrokerPlan::External(_) => "external",
        },
        startup_s: startup.as_secs_f64(),
        cluster_name,
        running_nodes,
        nodes,
        connected,
    })
}

/// Writes plan.json (the checked scenario) and broker.json into the run folder.
fn write_results(dir: &Path, plan: &Plan, report: &BrokerReport) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let files: [(PathBuf, String); 2] = [
        (
            dir.join("plan.json"),
            serde_json::to_string_pretty(plan).expect("a plan serializes"),
        ),
        (
            dir.join("broker.json"),
            serde_json::to_string_pretty(report).expect("a report serializes"),
        ),
    ];
    for (path, text) in files {
        std::fs::write(path, text + "\n")?;
    }
    Ok(())
}
