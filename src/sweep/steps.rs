//! The steps of a capacity sweep (`warren sweep`, or `warren run` on a scenario with a
//! `[sweep]`): one measured run per target rate, back to back on the same broker (each
//! step drains and deletes its queue before the next starts), each written to a step
//! folder as a full run; then capacity.csv, sweep.json and report.html in the sweep's
//! folder, and the answer printed.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::files::{step_line, table, write};
use super::{
    MISSES_TO_STOP, Objective, StepResult, SweepReport, capacity as highest_met, judge, should_stop,
};
use crate::broker::{Broker, NodeInfo};
use crate::cli::ProgressStyle;
use crate::drive::drive;
use crate::exit::Exit;
use crate::output::Console;
use crate::report::files as run_files;
use crate::report::{RunContext, RunReport};
use crate::scenario::units::format_duration;
use crate::scenario::{BodySize, Plan, ReportFormat, SweepPlan};
use crate::timestamp::UtcTime;
use crate::workload::WorkloadError;

/// A sweep about to run: the scenario, its `[sweep]`, and where results go.
pub struct Steps<'a> {
    pub plan: &'a Plan,
    pub sweep: &'a SweepPlan,
    /// Each step's length (`--duration` replaces the scenario's `step_duration`).
    pub step_duration: Duration,
    pub run_dir: &'a Path,
    pub started_at: UtcTime,
    pub console: &'a Console,
    pub progress: ProgressStyle,
    /// `--no-verify`: steps keep counts and latencies only.
    pub no_verify: bool,
    pub cancel: &'a tokio_util::sync::CancellationToken,
    /// `--metrics-listen`: the live figures, over every step.
    pub live: Option<std::sync::Arc<crate::exporter::LiveMetrics>>,
}

/// What the steps produced.
pub struct Swept {
    steps: Vec<StepResult>,
    stopped_early: Option<String>,
    interrupted: bool,
    broker_version: Option<String>,
    /// Why the sweep could not go on (infrastructure), if it could not.
    failure: Option<anyhow::Error>,
}

impl Steps<'_> {
    fn objective(&self) -> Objective {
        Objective {
            p99_e2e_ms: self.sweep.p99_e2e_ms,
        }
    }

    /// One line on what the sweep will do.
    pub fn describe(&self) -> String {
        let rates: Vec<String> = self.sweep.rates.iter().map(|r| format!("{r}")).collect();
        format!(
            "capacity sweep: {} step(s) of {} at {} msg/s; objective: {}; stops after {MISSES_TO_STOP} misses in a row",
            self.sweep.rates.len(),
            format_duration(self.step_duration),
            rates.join(", "),
            self.objective().describe()
        )
    }

    /// The scenario as one step runs it: the step's rate, for the step's length.
    fn step_plan(&self, rate: f64) -> Plan {
        let mut plan = self.plan.clone();
        plan.publishers.rate = Some(rate);
        plan.stop.duration = Some(self.step_duration);
        plan.stop.messages_per_publisher = None;
        plan.sweep = None;
        plan
    }

    /// Runs the steps on `broker` until the last, two misses in a row, an interruption or
    /// a failure; hands the broker back.
    pub async fn run(&self, mut broker: Broker, nodes: Vec<NodeInfo>) -> (Broker, Swept) {
        let objective = self.objective();
        let formats: Vec<ReportFormat> = self
            .plan
            .report
            .formats
            .iter()
            .copied()
            .filter(|f| *f != ReportFormat::Console)
            .collect();
        let total = self.sweep.rates.len();
        let mut swept = Swept {
            steps: Vec::new(),
            stopped_early: None,
            interrupted: false,
            broker_version: nodes.iter().find_map(|n| n.version.clone()),
            failure: None,
        };
        for (index, &rate) in self.sweep.rates.iter().enumerate() {
            if self.cancel.is_cancelled() {
                swept.interrupted = true;
                break;
            }
            let number = index + 1;
            self.console.line(format!(
                "step {number}/{total}: {rate} msg/s for {}",
                format_duration(self.step_duration)
            ));
            let plan = self.step_plan(rate);
            let started_at = UtcTime::now();
            let (back, driven) = drive(
                &plan,
                broker,
                crate::drive::DriveOptions {
                    console: self.console,
                    style: self.progress,
                    no_verify: self.no_verify,
                    worker: None,
                    live: self.live.clone(),
                },
                self.cancel,
            )
            .await;
            broker = back;
            let driven = match driven {
                Ok(driven) => driven,
                Err(error) => {
                    swept.failure = Some(error.context(format!("step {number}")));
                    break;
                }
            };
            let outcome = match driven.outcome {
                Ok(outcome) => outcome,
                Err(WorkloadError::Interrupted) => {
                    swept.interrupted = true;
                    break;
                }
                Err(error) => {
                    swept.failure = Some(
                        anyhow::Error::new(error)
                            .context(format!("step {number}: the workload could not run")),
                    );
                    break;
                }
            };
            let context = RunContext {
                plan: &plan,
                started_at: started_at.rfc3339(),
                nodes: nodes.clone(),
                faults: driven.faults,
            };
            let report = RunReport::build(context, &outcome);
            let folder = format!("step-{number:02}-{rate}");
            let measured = run_files::Measured {
                series: &outcome.series,
                latencies: &outcome.latencies,
                origin_unix_ns: outcome.clock.ns_at(outcome.clock.origin()),
            };
            let dir = self.run_dir.join(&folder);
            match run_files::write(&dir, &report, &formats, Some(&measured)) {
                Ok(warnings) => {
                    for warning in warnings {
                        self.console.line(format!("warning: {warning}"));
                    }
                }
                Err(error) => {
                    swept.failure = Some(
                        anyhow::Error::new(error)
                            .context(format!("writing results to {}", dir.display())),
                    );
                    break;
                }
            }
            let mut step = StepResult::of(number, rate, &report, folder);
            step.judgement = judge(&step, &objective);
            self.console.line(format!("  {}", step_line(&step)));
            swept.interrupted = step.interrupted;
            swept.steps.push(step);
            if swept.interrupted {
                break;
            }
            if number < total && should_stop(&swept.steps) {
                swept.stopped_early = Some(format!(
                    "stopped after step {number} of {total}: {MISSES_TO_STOP} steps in a row missed the objective"
                ));
                break;
            }
        }
        (broker, swept)
    }

    /// Writes the sweep's files, prints the answer, and decides the exit code: 0 when a
    /// step met the objective, 1 when none did, 130 when interrupted.
    ///
    /// # Errors
    /// A file could not be written, or a step could not run (after writing what the
    /// steps before it measured).
    pub fn finish(&self, swept: Swept) -> anyhow::Result<Exit> {
        let plan = self.plan;
        let report = SweepReport {
            scenario: plan.name.clone(),
            description: plan.description.clone(),
            warren_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started_at.rfc3339(),
            broker_version: swept.broker_version,
            broker_nodes: plan.broker.node_count(),
            publishers: plan.publishers.count,
            consumers: plan.consumers.count,
            queue_type: crate::scenario::serde_name(&plan.topology.queue_type),
            body_bytes: match plan.publishers.size {
                BodySize::Fixed(size) => size.to_string(),
                BodySize::Uniform { min, max } => format!("{min}-{max}"),
            },
            step_duration_s: self.step_duration.as_secs_f64(),
            objective: self.objective(),
            planned_rates: self.sweep.rates.clone(),
            capacity_per_s: highest_met(&swept.steps),
            steps: swept.steps,
            stopped_early: swept.stopped_early,
            interrupted: swept.interrupted,
        };
        write(self.run_dir, &report, &plan.report.formats)
            .with_context(|| format!("writing results to {}", self.run_dir.display()))?;
        if plan.report.formats.contains(&ReportFormat::Console) {
            self.console.line(table(&report));
            if let Some(reason) = &report.stopped_early {
                self.console.line(reason);
            }
        }
        if let Some(live) = &self.live {
            live.finish(crate::exporter::EndFigures {
                lost_confirmed: report.steps.iter().map(|s| s.lost_confirmed).sum(),
                duplicated: report.steps.iter().map(|s| s.duplicated).sum(),
                passed: report.exit() == Exit::Success,
            });
        }
        self.console.line(report.answer());
        self.console
            .line(format!("results: {}", self.run_dir.display()));
        if let Some(failure) = swept.failure {
            return Err(failure);
        }
        Ok(report.exit())
    }
}
