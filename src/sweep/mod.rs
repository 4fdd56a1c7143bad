//! Capacity sweeps: one measured step per target rate, each judged against the objective
//! (a p99 end-to-end latency and no confirmed loss, at no less than 90% of the target
//! rate); the sweep stops after two steps in a row fall short, and its answer is the
//! highest target rate a step met.

pub mod files;
pub mod steps;

use serde::{Deserialize, Serialize};

use crate::report::{Percentiles, RunReport};

/// A step that delivers less than this share of its target rate fell short.
pub const SHORT_BELOW: f64 = 0.9;

/// The sweep stops after this many steps in a row that did not meet the objective.
pub const MISSES_TO_STOP: usize = 2;

/// What every step must meet.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    /// Highest allowed p99 end-to-end latency (from the intended send time), ms.
    pub p99_e2e_ms: Option<f64>,
}

impl Objective {
    /// The objective in words, for the console and the report.
    pub fn describe(&self) -> String {
        let latency = self
            .p99_e2e_ms
            .map(|ms| format!("p99 end-to-end <= {ms} ms, "))
            .unwrap_or_default();
        format!(
            "{latency}no confirmed message lost, at least {:.0}% of the target rate delivered",
            SHORT_BELOW * 100.0
        )
    }
}

/// What one step measured: the figures the judgement and capacity.csv need.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepResult {
    /// 1-based position in the sweep.
    pub step: usize,
    pub target_per_s: f64,
    pub published_per_s: f64,
    pub delivered_per_s: f64,
    /// Publish → confirm, µs.
    pub confirm: Percentiles,
    /// Intended send time → delivery, µs.
    pub e2e: Percentiles,
    pub attempted: u64,
    pub delivered: u64,
    pub lost_confirmed: u64,
    pub lost_unconfirmed: u64,
    pub duplicated: u64,
    pub unexpected: u64,
    /// warren's CPU time (user + system) during the step, seconds.
    pub cpu_s: f64,
    pub cpu_us_per_delivery: f64,
    /// The step was cut short (Ctrl-C): measured, but not judged.
    pub interrupted: bool,
    /// The step's run folder, relative to the sweep's.
    pub folder: String,
    /// Filled in by [`judge`].
    pub judgement: Judgement,
}

/// How a step did against the objective.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Judgement {
    /// Met the objective.
    pub met: bool,
    /// Why it did not (empty when it did).
    pub reasons: Vec<String>,
}

impl Judgement {
    /// "met", or the reasons it was missed.
    pub fn describe(&self) -> String {
        if self.met {
            "met".into()
        } else {
            format!("missed: {}", self.reasons.join("; "))
        }
    }
}

impl StepResult {
    /// The figures of one step's run report (not yet judged).
    pub fn of(step: usize, target_per_s: f64, report: &RunReport, folder: String) -> Self {
        let t = &report.verdict.totals;
        Self {
            step,
            target_per_s,
            published_per_s: report.throughput.published_per_s,
            delivered_per_s: report.throughput.delivered_per_s,
            confirm: report.latency.confirm,
            e2e: report.latency.e2e_intended,
            attempted: t.attempted,
            delivered: t.delivered,
            lost_confirmed: t.lost_confirmed,
            lost_unconfirmed: t.lost_unconfirmed,
            duplicated: t.duplicated,
            unexpected: t.unexpected,
            cpu_s: report.harness.cpu_user_s + report.harness.cpu_system_s,
            cpu_us_per_delivery: report.harness.cpu_us_per_delivery,
            interrupted: report.interrupted,
            folder,
            judgement: Judgement::default(),
        }
    }
}

/// Judges one step against the objective.
pub fn judge(step: &StepResult, objective: &Objective) -> Judgement {
    let mut reasons = Vec::new();
    if step.interrupted {
        reasons.push("interrupted".to_string());
    }
    if step.lost_confirmed > 0 {
        reasons.push(format!("{} confirmed message(s) lost", step.lost_confirmed));
    }
    if step.unexpected > 0 {
        reasons.push(format!(
            "{} unexpected message(s) delivered",
            step.unexpected
        ));
    }
    if let Some(limit) = objective.p99_e2e_ms {
        match step.e2e.p99_ms() {
            Some(p99) if p99 <= limit => {}
            Some(p99) => reasons.push(format!("p99 end-to-end {p99:.2} ms > {limit} ms")),
            None => reasons.push("nothing delivered".into()),
        }
    }
    if step.delivered_per_s < step.target_per_s * SHORT_BELOW {
        reasons.push(format!(
            "delivered {:.0} msg/s, more than {:.0}% short of {}",
            step.delivered_per_s,
            (1.0 - SHORT_BELOW) * 100.0,
            step.target_per_s
        ));
    }
    Judgement {
        met: reasons.is_empty(),
        reasons,
    }
}

/// Whether the sweep should stop after the steps so far: the last [`MISSES_TO_STOP`] steps
/// all missed the objective (or the last step was interrupted).
pub fn should_stop(steps: &[StepResult]) -> bool {
    if steps.last().is_some_and(|s| s.interrupted) {
        return true;
    }
    steps.len() >= MISSES_TO_STOP
        && steps[steps.len() - MISSES_TO_STOP..]
            .iter()
            .all(|s| !s.judgement.met)
}

/// The answer: the highest target rate whose step met the objective.
pub fn capacity(steps: &[StepResult]) -> Option<f64> {
    steps
        .iter()
        .filter(|s| s.judgement.met)
        .map(|s| s.target_per_s)
        .max_by(f64::total_cmp)
}

/// Everything a sweep found: written as sweep.json, capacity.csv and report.html.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepReport {
    pub scenario: String,
    pub description: String,
    pub warren_version: String,
    pub started_at: String,
    pub broker_version: Option<String>,
    pub broker_nodes: usize,
    pub publishers: u32,
    pub consumers: u32,
    pub queue_type: String,
    pub body_bytes: String,
    pub step_duration_s: f64,
    pub objective: Objective,
    /// Target rates the scenario asked for, in order.
    pub planned_rates: Vec<f64>,
    pub steps: Vec<StepResult>,
    /// Highest target rate that met the objective.
    pub capacity_per_s: Option<f64>,
    /// Why the sweep ended before its last planned step, if it did.
    pub stopped_early: Option<String>,
    pub interrupted: bool,
}

impl SweepReport {
    /// The sentence that answers the sweep's question.
    pub fn answer(&self) -> String {
        match self.capacity_per_s {
            Some(rate) => format!(
                "capacity: {rate:.0} msg/s, the highest target rate that met the objective ({})",
                self.objective.describe()
            ),
            None => format!(
                "capacity: none of the {} step(s) met the objective ({})",
                self.steps.len(),
                self.objective.describe()
            ),
        }
    }

    /// 130 interrupted, 0 when some step met the objective, 1 when none did.
    pub fn exit(&self) -> crate::exit::Exit {
        if self.interrupted {
            crate::exit::Exit::Interrupted
        } else if self.capacity_per_s.is_some() {
            crate::exit::Exit::Success
        } else {
            crate::exit::Exit::GateFailed
        }
    }
}

#[cfg(test)]
impl SweepReport {
    /// A report over `steps` (already judged) for tests: one node, 1+1, 5 s steps.
    pub(crate) fn example(steps: Vec<StepResult>, objective: Objective) -> Self {
        Self {
            scenario: "sweep <test>".into(),
            description: String::new(),
            warren_version: "0".into(),
            started_at: "now".into(),
            broker_version: Some("3.10".into()),
            broker_nodes: 1,
            publishers: 1,
            consumers: 1,
            queue_type: "classic".into(),
            body_bytes: "100".into(),
            step_duration_s: 5.0,
            objective,
            planned_rates: steps.iter().map(|s| s.target_per_s).collect(),
            capacity_per_s: capacity(&steps),
            steps,
            stopped_early: None,
            interrupted: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(target: f64, delivered: f64, p99_ms: f64, lost_confirmed: u64) -> StepResult {
        let e2e = Percentiles {
            count: 1000,
            p50_us: (p99_ms * 300.0) as u64,
            p99_us: (p99_ms * 1000.0) as u64,
            ..Percentiles::default()
        };
        StepResult {
            step: 0,
            target_per_s: target,
            published_per_s: target,
            delivered_per_s: delivered,
            confirm: Percentiles::default(),
            e2e,
            attempted: 1000,
            delivered: 1000 - lost_confirmed,
            lost_confirmed,
            lost_unconfirmed: 0,
            duplicated: 0,
            unexpected: 0,
            cpu_s: 1.0,
            cpu_us_per_delivery: 10.0,
            interrupted: false,
            folder: String::new(),
            judgement: Judgement::default(),
        }
    }

    const OBJECTIVE: Objective = Objective {
        p99_e2e_ms: Some(50.0),
    };

    /// Judges the steps one by one as the sweep does, stopping where it would.
    fn sweep(steps: Vec<StepResult>) -> Vec<StepResult> {
        let mut done = Vec::new();
        for mut s in steps {
            s.judgement = judge(&s, &OBJECTIVE);
            done.push(s);
            if should_stop(&done) {
                break;
            }
        }
        done
    }

    #[test]
    fn a_step_meets_the_objective_only_with_low_latency_no_loss_and_the_rate() {
        assert!(judge(&step(1000.0, 995.0, 12.0, 0), &OBJECTIVE).met);
        assert!(judge(&step(1000.0, 900.0, 50.0, 0), &OBJECTIVE).met);
        let slow = judge(&step(1000.0, 1000.0, 50.5, 0), &OBJECTIVE);
        assert_eq!(slow.reasons, vec!["p99 end-to-end 50.50 ms > 50 ms"]);
        let lossy = judge(&step(1000.0, 1000.0, 1.0, 3), &OBJECTIVE);
        assert_eq!(lossy.reasons, vec!["3 confirmed message(s) lost"]);
        let short = judge(&step(1000.0, 899.0, 1.0, 0), &OBJECTIVE);
        assert!(!short.met && short.reasons[0].starts_with("delivered 899 msg/s"));
        let no_latency_objective = Objective { p99_e2e_ms: None };
        assert!(judge(&step(1000.0, 1000.0, 900.0, 0), &no_latency_objective).met);
    }

    #[test]
    fn the_sweep_stops_after_two_misses_in_a_row() {
        let done = sweep(vec![
            step(1000.0, 1000.0, 2.0, 0),
            step(2000.0, 2000.0, 3.0, 0),
            step(3000.0, 2500.0, 80.0, 0),
            step(4000.0, 2600.0, 200.0, 0),
            step(5000.0, 5000.0, 2.0, 0),
        ]);
        assert_eq!(done.len(), 4, "the fifth step never runs");
        assert_eq!(capacity(&done), Some(2000.0));
    }

    #[test]
    fn one_miss_between_passes_does_not_stop_the_sweep() {
        let done = sweep(vec![
            step(1000.0, 1000.0, 2.0, 0),
            step(2000.0, 2000.0, 60.0, 0),
            step(3000.0, 3000.0, 20.0, 0),
            step(4000.0, 3000.0, 20.0, 0),
        ]);
        assert_eq!(done.len(), 4);
        assert_eq!(
            capacity(&done),
            Some(3000.0),
            "the highest met rate, even after a miss"
        );
    }

    #[test]
    fn a_fall_short_counts_as_a_miss_for_stopping() {
        let done = sweep(vec![
            step(1000.0, 1000.0, 2.0, 0),
            step(2000.0, 1700.0, 2.0, 0),
            step(3000.0, 1750.0, 2.0, 0),
            step(4000.0, 4000.0, 2.0, 0),
        ]);
        assert_eq!(done.len(), 3);
        assert_eq!(capacity(&done), Some(1000.0));
    }

    #[test]
    fn no_met_step_means_no_capacity() {
        let done = sweep(vec![
            step(1000.0, 1000.0, 1.0, 1),
            step(2000.0, 2000.0, 99.0, 0),
        ]);
        assert_eq!(capacity(&done), None);
    }

    #[test]
    fn an_interrupted_step_stops_the_sweep_and_never_counts() {
        let mut cut = step(2000.0, 2000.0, 1.0, 0);
        cut.interrupted = true;
        let done = sweep(vec![
            step(1000.0, 1000.0, 1.0, 0),
            cut,
            step(3000.0, 3000.0, 1.0, 0),
        ]);
        assert_eq!(done.len(), 2);
        assert_eq!(capacity(&done), Some(1000.0));
    }

    #[test]
    fn the_answer_names_the_rate_and_the_objective() {
        let done = sweep(vec![step(12000.0, 12000.0, 2.0, 0)]);
        let report = SweepReport::example(done, OBJECTIVE);
        assert!(
            report
                .answer()
                .starts_with("capacity: 12000 msg/s, the highest target rate that met the objective (p99 end-to-end <= 50 ms"),
            "{}",
            report.answer()
        );
        assert_eq!(report.exit(), crate::exit::Exit::Success);
    }
}
