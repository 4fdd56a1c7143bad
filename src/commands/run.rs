//! `warren run`: checks the scenario, brings up the broker, connects, reports what it
//! found, and tears everything down on every exit path (normal end, error, Ctrl-C).
//! The workload, faults and verdict build on this sequence.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::amqp::connect;
use crate::broker::{Broker, BrokerError, NodeInfo, StartOptions};
use crate::cli::RunArgs;
use crate::drive::drive;
use crate::exit::{Exit, UsageError};
use crate::exporter::{Ending, LiveMetrics, MetricsServer};
use crate::output::Console;
use crate::report::{RunContext, RunReport, console, files};
use crate::scenario::units::format_duration;
use crate::scenario::{self, BrokerPlan, Overrides, Plan, ReportFormat};
use crate::timestamp::UtcTime;
use crate::workload::WorkloadError;

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

/// Runs a scenario: one measured run, or its capacity sweep when it has a `[sweep]`.
///
/// # Errors
/// A scenario error (exit 2) before anything is touched, or a broker error (exit 3).
pub async fn run(args: RunArgs, cancel: CancellationToken) -> anyhow::Result<Exit> {
    execute(args, cancel, false).await
}

/// `warren sweep`: runs the scenario's `[sweep]`, which it must have.
///
/// # Errors
/// As [`run`]; a scenario without `[sweep]` is bad input (exit 2).
pub async fn sweep(args: RunArgs, cancel: CancellationToken) -> anyhow::Result<Exit> {
    execute(args, cancel, true).await
}

async fn execute(
    args: RunArgs,
    cancel: CancellationToken,
    sweep_required: bool,
) -> anyhow::Result<Exit> {
    raise_open_files_limit();
    let mut plan = scenario::load(
        &args.scenario,
        Overrides {
            duration: args.duration,
            threads: args.threads,
        },
    )?;
    override_broker(&mut plan, &args)?;
    let worker = worker_run(&args)?;
    if worker.is_some() && plan.sweep.is_some() {
        return Err(UsageError(format!(
            "{}: a [sweep] runs on one machine; --worker runs a single measured run",
            plan.source.display()
        ))
        .into());
    }
    if sweep_required && plan.sweep.is_none() {
        return Err(UsageError(format!(
            "{}: has no [sweep] section; add one, like\n  [sweep]\n  rates = [1000, 5000, 20000]\n  step_duration = \"30s\"\n  p99_e2e_ms = 50",
            plan.source.display()
        ))
        .into());
    }
    let console = Console { quiet: args.quiet };
    let started_at = UtcTime::now();
    let run_dir = args.out.clone().unwrap_or_else(|| match &worker {
        Some(w) => plan.report.dir.join(format!(
            "{}-{}-worker-{}",
            plan.name, w.run.text, w.share.index
        )),
        None => plan
            .report
            .dir
            .join(format!("{}-{}", plan.name, started_at.compact())),
    });
    if let Some(w) = &worker {
        refuse_a_second_run(&run_dir, w)?;
    }
    console.line(format!(
        "scenario {} ({})",
        plan.name,
        plan.source.display()
    ));
    if !plan.description.is_empty() {
        console.line(format!("  {}", plan.description));
    }
    console.line(format!("  {}", summary(&plan)));
    if let Some(w) = &worker {
        console.line(format!(
            "  worker {} of run {} (barrier timeout {})",
            w.share,
            w.run.text,
            format_duration(w.barrier_timeout)
        ));
    }
    for warning in &plan.warnings {
        console.line(format!("warning: {warning}"));
    }
    let metrics = serve_metrics(&plan, &args, &console).await?;
    let live = metrics.as_ref().map(|(live, _)| live.clone());
    if let Some(sweep) = &plan.sweep {
        let step_duration = args.duration.unwrap_or(sweep.step_duration);
        let steps = crate::sweep::steps::Steps {
            plan: &plan,
            sweep,
            step_duration,
            run_dir: &run_dir,
            started_at,
            console: &console,
            progress: args.progress,
            no_verify: args.no_verify,
            cancel: &cancel,
            live,
        };
        console.line(format!("  {}", steps.describe()));
        let swept = with_broker(
            &plan,
            &args,
            &console,
            &run_dir,
            started_at,
            &cancel,
            |broker, nodes| steps.run(broker, nodes),
        )
        .await?;
        let Some((swept, _)) = swept else {
            return Ok(Exit::Interrupted);
        };
        let exit = steps.finish(swept)?;
        linger(metrics, &args, &console, &cancel).await;
        return Ok(exit);
    }
    let driven = with_broker(
        &plan,
        &args,
        &console,
        &run_dir,
        started_at,
        &cancel,
        |broker, _nodes| {
            drive(
                &plan,
                broker,
                crate::drive::DriveOptions {
                    console: &console,
                    style: args.progress,
                    no_verify: args.no_verify,
                    worker: worker.clone(),
                    live: live.clone(),
                },
                &cancel,
            )
        },
    )
    .await?;
    let Some((driven, nodes)) = driven else {
        return Ok(Exit::Interrupted);
    };
    let driven = driven?;
    if !driven.leftover_toxics.is_empty() {
        tracing::error!(toxics = ?driven.leftover_toxics, "toxics were left on the proxies after cleanup");
    }
    let exit = match driven.outcome {
        Err(WorkloadError::Interrupted) => Exit::Interrupted,
        Err(error) => return Err(error).context("the workload could not run"),
        Ok(outcome) if worker.is_some() => {
            let source = crate::workers::results::ScenarioSource {
                path: args.scenario.display().to_string(),
                text: std::fs::read_to_string(&args.scenario)
                    .with_context(|| format!("reading {}", args.scenario.display()))?,
                duration_s: args.duration.map(|d| d.as_secs_f64()),
                threads: args.threads,
            };
            let results = crate::workers::results::WorkerResults::of(
                &outcome,
                source,
                started_at.rfc3339(),
                driven.faults,
                nodes,
            )
            .expect("a worker's outcome has its evidence");
            results
                .write(&run_dir)
                .with_context(|| format!("writing results to {}", run_dir.display()))?;
            console.line(format!(
                "worker {}: {} publisher(s) sent {} message(s), {} consumer(s) received {} first deliveries; clock offset {} µs (within {} µs)",
                results.worker,
                results.ledgers.len(),
                results.ledgers.iter().map(|l| u64::from(l.attempted)).sum::<u64>(),
                outcome.delivery_activity.len(),
                results.fresh,
                results.clock_sync.offset_ns / 1_000,
                results.clock_sync.bound_ns / 1_000,
            ));
            match &results.problem {
                None => {
                    console.line("merge the workers' folders with `warren merge DIR... --out DIR`");
                    Exit::Success
                }
                Some(problem) => {
                    console.line(format!("incomplete: {problem}"));
                    Exit::Infrastructure
                }
            }
        }
        Ok(outcome) => {
            let context = RunContext {
                plan: &plan,
                started_at: started_at.rfc3339(),
                nodes,
                faults: driven.faults,
            };
            let report = RunReport::build(context, &outcome);
            if plan.report.formats.contains(&ReportFormat::Console) {
                console.line(console::render(&report));
            }
            let measured = files::Measured {
                series: &outcome.series,
                latencies: &outcome.latencies,
                origin_unix_ns: outcome.clock.ns_at(outcome.clock.origin()),
            };
            let warnings = files::write(&run_dir, &report, &plan.report.formats, Some(&measured))
                .with_context(|| format!("writing results to {}", run_dir.display()))?;
            for warning in warnings {
                console.line(format!("warning: {warning}"));
            }
            if let Some(live) = &live {
                live.finish(crate::exporter::EndFigures {
                    lost_confirmed: report.verdict.totals.lost_confirmed,
                    duplicated: report.verdict.totals.duplicated,
                    passed: report.passed,
                });
            }
            report.exit()
        }
    };
    console.line(format!("results: {}", run_dir.display()));
    linger(metrics, &args, &console, &cancel).await;
    Ok(exit)
}

/// Starts the metrics endpoint when `--metrics-listen` or `report.metrics_listen` asks.
///
/// # Errors
/// The address cannot be listened on (exit 3), before anything else starts.
async fn serve_metrics(
    plan: &Plan,
    args: &RunArgs,
    console: &Console,
) -> anyhow::Result<Option<(Arc<LiveMetrics>, MetricsServer)>> {
    let Some(addr) = args.metrics_listen.or(plan.report.metrics_listen) else {
        return Ok(None);
    };
    let live = Arc::new(LiveMetrics::default());
    let server = MetricsServer::start(addr, live.clone())
        .await
        .context("the metrics endpoint could not be started")?;
    console.line(format!(
        "metrics: {} (OpenMetrics, for Prometheus)",
        server.url()
    ));
    Ok(Some((live, server)))
}

/// Keeps serving metrics until Prometheus has read the final figures (at most
/// `--metrics-linger`), then stops.
async fn linger(
    metrics: Option<(Arc<LiveMetrics>, MetricsServer)>,
    args: &RunArgs,
    console: &Console,
    cancel: &CancellationToken,
) {
    let Some((live, server)) = metrics else {
        return;
    };
    if live.finished() {
        console.line(format!(
            "metrics: waiting up to {} for a scrape of the final figures at {}",
            format_duration(args.metrics_linger),
            server.url()
        ));
    }
    match server.finish(args.metrics_linger, cancel).await {
        Ending::Scraped => console.line("metrics: final figures scraped"),
        Ending::NotScraped => console.line(format!(
            "metrics: nothing scraped the final figures within {}",
            format_duration(args.metrics_linger)
        )),
        Ending::Interrupted | Ending::NoVerdict => {}
    }
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

/// `--broker-uri` (an external broker instead of the scenario's) and `--port` (the first
/// private node's port).
fn override_broker(plan: &mut Plan, args: &RunArgs) -> Result<(), UsageError> {
    if let Some(port) = args.port {
        match &mut plan.broker {
            BrokerPlan::Managed(managed) => managed.first_port = Some(port),
            BrokerPlan::External(_) => {
                return Err(UsageError(
                    "--port sets the port of private nodes; this scenario's broker is external"
                        .into(),
                ));
            }
        }
    }
    if !args.broker_uri.is_empty() {
        let uris = args
            .broker_uri
            .iter()
            .map(|text| {
                text.parse()
                    .map_err(|e| UsageError(format!("--broker-uri {text:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The scenario's [broker.tls] still says how to speak TLS to amqps URIs.
        let tls = match &plan.broker {
            BrokerPlan::External(external) => external.tls.clone(),
            BrokerPlan::Managed(_) => None,
        };
        plan.broker = BrokerPlan::External(crate::scenario::ExternalBrokerPlan {
            tls,
            uris,
            allow_destructive: false,
            commands: crate::scenario::NodeCommands::default(),
        });
    }
    Ok(())
}

/// A worker whose folder already holds this very worker's results of this run: the run id
/// was used before (each run needs its own), and its results would be overwritten.
fn refuse_a_second_run(
    run_dir: &std::path::Path,
    worker: &crate::workload::WorkerRun,
) -> Result<(), UsageError> {
    match crate::workers::results::WorkerResults::identity(run_dir) {
        Some((run_id, share)) if run_id == worker.run.text && share == worker.share => {
            Err(UsageError(format!(
                "{} already holds the results of worker {share} of run {run_id}: each run needs its own run id",
                run_dir.display()
            )))
        }
        _ => Ok(()),
    }
}

/// The worker's share and run id (flags, else the environment), when it is one.
fn worker_run(args: &RunArgs) -> Result<Option<crate::workload::WorkerRun>, UsageError> {
    let share = match args.worker {
        Some(share) => Some(share),
        None => crate::share::Share::from_env().map_err(UsageError)?,
    };
    let Some(share) = share else {
        return Ok(None);
    };
    let attempt =
        crate::share::attempt_from_vars(|name| std::env::var(name).ok()).map_err(UsageError)?;
    let share = crate::share::Share { attempt, ..share };
    let run_id = args
        .run_id
        .clone()
        .or_else(|| std::env::var(crate::share::RUN_ID_VAR).ok())
        .ok_or_else(|| {
            UsageError(format!(
                "worker {share}: the workers of a run share a run id; give --run-id ID or ${}",
                crate::share::RUN_ID_VAR
            ))
        })?;
    let run = crate::share::RunName::parse(&run_id).map_err(UsageError)?;
    Ok(Some(crate::workload::WorkerRun {
        share,
        run,
        barrier_timeout: args.barrier_timeout,
    }))
}

/// One line on what the scenario will do.
fn summary(plan: &Plan) -> String {
    let broker = match &plan.broker {
        BrokerPlan::Managed(m) => format!(
            "managed broker, {} node{}",
            m.nodes,
            if m.nodes == 1 { "" } else { "s" }
        ),
        BrokerPlan::External(e) => format!(
            "external broker, {} URI{}",
            e.uris.len(),
            if e.uris.len() == 1 { "" } else { "s" }
        ),
    };
    let mut length = match (plan.stop.duration, plan.stop.messages_per_publisher) {
        _ if plan.sweep.is_some() => "one step per target rate".to_string(),
        (Some(d), Some(m)) => format!("{} or {m} messages per publisher", format_duration(d)),
        (Some(d), None) => format_duration(d),
        (None, Some(m)) => format!("{m} messages per publisher"),
        (None, None) => "unbounded".into(),
    };
    if let Some(after) = plan.stop.after_faults {
        length.push_str(&format!(
            " (at least {} after the last fault)",
            format_duration(after)
        ));
    }
    let faults = match &plan.chaos {
        Some(_) if plan.faults.is_empty() => "a chaos schedule".to_string(),
        Some(_) => format!("{} fault(s) and a chaos schedule", plan.faults.len()),
        None => format!("{} fault(s)", plan.faults.len()),
    };
    format!(
        "{broker}; {} publisher(s), {} consumer(s); {length}; {faults}; seed {}",
        plan.publishers.count, plan.consumers.count, plan.seed
    )
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

/// Raises the soft limit on open files to the hard limit: thousands of client
/// connections (and the proxy's two sockets for each) need more than the usual 1,024.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
