//! The body of a run on its broker, and what it writes: a measured run's report (or a
//! worker's results), or a capacity sweep's steps.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::bring_up::with_broker;
use crate::broker::NodeInfo;
use crate::cli::RunArgs;
use crate::drive::{DriveOptions, drive};
use crate::exit::Exit;
use crate::exporter::LiveMetrics;
use crate::faults::runner::FaultRecord;
use crate::output::Console;
use crate::report::{RunContext, RunReport, console, files};
use crate::scenario::{Plan, ReportFormat, SweepPlan};
use crate::timestamp::UtcTime;
use crate::workers::results::{ScenarioSource, WorkerResults};
use crate::workload::{WorkerRun, WorkloadError, WorkloadOutcome};

/// What the body of a run reads: the scenario, the command line, where it writes.
pub(super) struct Session<'a> {
    pub plan: &'a Plan,
    pub args: &'a RunArgs,
    pub console: &'a Console,
    pub run_dir: &'a Path,
    pub started_at: UtcTime,
    pub cancel: &'a CancellationToken,
    /// The live figures `--metrics-listen` serves.
    pub live: Option<Arc<LiveMetrics>>,
}

impl Session<'_> {
    /// The scenario's capacity sweep: its steps on one broker, then its files. `None` when
    /// interrupted before the broker was up.
    ///
    /// # Errors
    /// The broker could not be brought up, or the sweep's files could not be written.
    pub async fn sweep(&self, sweep: &SweepPlan) -> anyhow::Result<Option<Exit>> {
        let steps = crate::sweep::steps::Steps {
            plan: self.plan,
            sweep,
            step_duration: self.args.duration.unwrap_or(sweep.step_duration),
            run_dir: self.run_dir,
            started_at: self.started_at,
            console: self.console,
            progress: self.args.progress,
            no_verify: self.args.no_verify,
            cancel: self.cancel,
            live: self.live.clone(),
        };
        self.console.line(format!("  {}", steps.describe()));
        let swept = with_broker(
            self.plan,
            self.args,
            self.console,
            self.run_dir,
            self.started_at,
            self.cancel,
            |broker, nodes| steps.run(broker, nodes),
        )
        .await?;
        let Some((swept, _)) = swept else {
            return Ok(None);
        };
        Ok(Some(steps.finish(swept)?))
    }

    /// One measured run: drives the workload and its faults on the broker, then writes
    /// the report (or, for a worker, its results for `warren merge`). `None` when
    /// interrupted before the broker was up.
    ///
    /// # Errors
    /// The broker could not be brought up, the workload could not run, or the results
    /// could not be written.
    pub async fn measure(&self, worker: Option<WorkerRun>) -> anyhow::Result<Option<Exit>> {
        let (plan, console, cancel) = (self.plan, self.console, self.cancel);
        let options = DriveOptions {
            console,
            style: self.args.progress,
            no_verify: self.args.no_verify,
            worker: worker.clone(),
            live: self.live.clone(),
        };
        let driven = with_broker(
            plan,
            self.args,
            console,
            self.run_dir,
            self.started_at,
            cancel,
            |broker, _nodes| drive(plan, broker, options, cancel),
        )
        .await?;
        let Some((driven, nodes)) = driven else {
            return Ok(None);
        };
        let driven = driven?;
        if !driven.leftover_toxics.is_empty() {
            tracing::error!(toxics = ?driven.leftover_toxics, "toxics were left on the proxies after cleanup");
        }
        let exit = match driven.outcome {
            Err(WorkloadError::Interrupted) => Exit::Interrupted,
            Err(error) => return Err(error).context("the workload could not run"),
            Ok(outcome) if worker.is_some() => {
                self.write_worker_results(&outcome, driven.faults, nodes)?
            }
            Ok(outcome) => self.write_report(&outcome, driven.faults, nodes)?,
        };
        console.line(format!("results: {}", self.run_dir.display()));
        Ok(Some(exit))
    }

    /// A worker's results, for `warren merge`, and a line on what it did.
    fn write_worker_results(
        &self,
        outcome: &WorkloadOutcome,
        faults: Vec<FaultRecord>,
        nodes: Vec<NodeInfo>,
    ) -> anyhow::Result<Exit> {
        let args = self.args;
        let source = ScenarioSource {
            path: args.scenario.display().to_string(),
            text: std::fs::read_to_string(&args.scenario)
                .with_context(|| format!("reading {}", args.scenario.display()))?,
            duration_s: args.duration.map(|d| d.as_secs_f64()),
            threads: args.threads,
        };
        let results = WorkerResults::of(outcome, source, self.started_at.rfc3339(), faults, nodes)
            .context("the worker's run ended without its evidence")?;
        results
            .write(self.run_dir)
            .with_context(|| format!("writing results to {}", self.run_dir.display()))?;
        self.console.line(format!(
            "worker {}: {} publisher(s) sent {} message(s), {} consumer(s) received {} first deliveries; clock offset {} µs (within {} µs)",
            results.worker,
            results.ledgers.len(),
            results.ledgers.iter().map(|l| u64::from(l.attempted)).sum::<u64>(),
            outcome.delivery_activity.len(),
            results.fresh,
            results.clock_sync.offset_ns / 1_000,
            results.clock_sync.bound_ns / 1_000,
        ));
        Ok(match &results.problem {
            None => {
                self.console
                    .line("merge the workers' folders with `warren merge DIR... --out DIR`");
                Exit::Success
            }
            Some(problem) => {
                self.console.line(format!("incomplete: {problem}"));
                Exit::Infrastructure
            }
        })
    }

    /// The run's report: the console verdict, the files of the scenario's formats, and
    /// the final figures for the live metrics. Its exit code is the gates'.
    fn write_report(
        &self,
        outcome: &WorkloadOutcome,
        faults: Vec<FaultRecord>,
        nodes: Vec<NodeInfo>,
    ) -> anyhow::Result<Exit> {
        let plan = self.plan;
        let context = RunContext {
            plan,
            started_at: self.started_at.rfc3339(),
            nodes,
            faults,
        };
        let report = RunReport::build(context, outcome);
        if plan.report.formats.contains(&ReportFormat::Console) {
            self.console.line(console::render(&report));
        }
        let measured = files::Measured {
            series: &outcome.series,
            latencies: &outcome.latencies,
            origin_unix_ns: outcome.clock.ns_at(outcome.clock.origin()),
        };
        let warnings = files::write(self.run_dir, &report, &plan.report.formats, Some(&measured))
            .with_context(|| format!("writing results to {}", self.run_dir.display()))?;
        for warning in warnings {
            self.console.line(format!("warning: {warning}"));
        }
        if let Some(live) = &self.live {
            live.finish(crate::exporter::EndFigures {
                lost_confirmed: report.verdict.totals.lost_confirmed,
                duplicated: report.verdict.totals.duplicated,
                passed: report.passed,
            });
        }
        Ok(report.exit())
    }
}
