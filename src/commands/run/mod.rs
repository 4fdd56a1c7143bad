//! `warren run`: checks the scenario, brings up the broker, connects, reports what it
//! found, and tears everything down on every exit path (normal end, error, Ctrl-C).
//! The workload, faults and verdict build on this sequence.

mod bring_up;
mod measured;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::exit::{Exit, UsageError};
use crate::exporter::{Ending, LiveMetrics, MetricsServer};
use crate::output::Console;
use crate::scenario::units::format_duration;
use crate::scenario::{self, BrokerPlan, Overrides, Plan};
use crate::timestamp::UtcTime;

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

/// One `warren run` (or `warren sweep`), as its phases: load the scenario and apply the
/// command line, say what will run, bring up the broker and run the body on it (a
/// measured run or a sweep), write what it measured, then serve the final metrics.
async fn execute(
    args: RunArgs,
    cancel: CancellationToken,
    sweep_required: bool,
) -> anyhow::Result<Exit> {
    raise_open_files_limit();
    let (plan, worker) = load(&args, sweep_required)?;
    let console = Console { quiet: args.quiet };
    let started_at = UtcTime::now();
    let run_dir = run_dir(&args, &plan, worker.as_ref(), started_at);
    if let Some(w) = &worker {
        refuse_a_second_run(&run_dir, w)?;
    }
    introduce(&console, &plan, worker.as_ref());
    let metrics = serve_metrics(&plan, &args, &console).await?;
    let session = measured::Session {
        plan: &plan,
        args: &args,
        console: &console,
        run_dir: &run_dir,
        started_at,
        cancel: &cancel,
        live: metrics.as_ref().map(|(live, _)| live.clone()),
    };
    let ended = match &plan.sweep {
        Some(sweep) => session.sweep(sweep).await?,
        None => session.measure(worker).await?,
    };
    let Some(exit) = ended else {
        return Ok(Exit::Interrupted);
    };
    linger(metrics, &args, &console, &cancel).await;
    Ok(exit)
}

/// The checked scenario with the command line's overrides, and the worker this process
/// is when it is one of several.
///
/// # Errors
/// Bad input (exit 2): the scenario, the flags, or a sweep where none may be or is.
fn load(
    args: &RunArgs,
    sweep_required: bool,
) -> anyhow::Result<(Plan, Option<crate::workload::WorkerRun>)> {
    let mut plan = scenario::load(
        &args.scenario,
        Overrides {
            duration: args.duration,
            threads: args.threads,
        },
    )?;
    override_broker(&mut plan, args)?;
    let worker = worker_run(args)?;
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
    Ok((plan, worker))
}

/// The run folder: `--out`, else one named after the scenario and the start (or, for a
/// worker, after the run id and its index) under the scenario's report folder.
fn run_dir(
    args: &RunArgs,
    plan: &Plan,
    worker: Option<&crate::workload::WorkerRun>,
    started_at: UtcTime,
) -> PathBuf {
    args.out.clone().unwrap_or_else(|| match worker {
        Some(w) => plan.report.dir.join(format!(
            "{}-{}-worker-{}",
            plan.name, w.run.text, w.share.index
        )),
        None => plan
            .report
            .dir
            .join(format!("{}-{}", plan.name, started_at.compact())),
    })
}

/// The console's first lines: the scenario, what it will do, and its warnings.
fn introduce(console: &Console, plan: &Plan, worker: Option<&crate::workload::WorkerRun>) {
    console.line(format!(
        "scenario {} ({})",
        plan.name,
        plan.source.display()
    ));
    if !plan.description.is_empty() {
        console.line(format!("  {}", plan.description));
    }
    console.line(format!("  {}", summary(plan)));
    if let Some(w) = worker {
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
