//! `warren merge`: the workers' raw results put back together into the run one machine
//! would have made: one exact verdict from every worker's ledgers (a message published by
//! one worker and delivered to another is delivered), histograms and per-second series
//! added up, events on one time line, and the report, files and exit code of the gates.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::results::{ResultsError, WorkerResults};
use crate::ledger::{Counts, DeliveryShard, Verdict};
use crate::metrics::Clock;
use crate::metrics::series::Series;
use crate::scenario::{Overrides, Plan};
use crate::workload::topology::Topology;
use crate::workload::{QueueOutcome, WorkloadOutcome};

/// End-to-end latency is reported across workers only when every worker's clock is known
/// to be within this much of worker 0's.
pub const E2E_CLOCK_BOUND: Duration = Duration::from_millis(5);

/// Why worker results could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A worker folder without usable results (exit 3: a worker did not finish).
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("{0}")]
    Mismatch(String),
    #[error("worker(s) {missing:?} of {count} missing: no folder given has their results")]
    MissingWorkers { missing: Vec<u32>, count: u32 },
    #[error("worker {worker} did not complete its share: {problem}")]
    Incomplete { worker: u32, problem: String },
    #[error("the scenario the workers ran does not load here: {0}")]
    Scenario(String),
}

/// The workers' results, checked to be one whole run, in worker order.
pub struct Workers {
    pub results: Vec<WorkerResults>,
    pub plan: Plan,
}

/// Reads and checks the results of every folder: one run, every worker once, each
/// complete.
///
/// # Errors
/// [`MergeError`] naming the folder or worker at fault.
pub fn gather(dirs: &[PathBuf]) -> Result<Workers, MergeError> {
    let mut results = Vec::new();
    for dir in dirs {
        results.push(WorkerResults::read(dir)?);
    }
    let Some(first) = results.first() else {
        return Err(MergeError::Mismatch("no worker folders given".into()));
    };
    let (run, count, scenario) = (
        first.run_id.clone(),
        first.worker.count,
        first.scenario.clone(),
    );
    for (dir, r) in dirs.iter().zip(&results) {
        if r.run_id != run {
            return Err(MergeError::Mismatch(format!(
                "{}: run {} is not run {run} (of {})",
                dir.display(),
                r.run_id,
                dirs[0].display()
            )));
        }
        if r.worker.count != count || r.scenario != scenario {
            return Err(MergeError::Mismatch(format!(
                "{}: worker {} ran another scenario or worker count than {}",
                dir.display(),
                r.worker,
                dirs[0].display()
            )));
        }
    }
    results.sort_by_key(|r| (r.worker.index, r.worker.attempt));
    // A retried worker's latest attempt stands for it.
    let mut latest: Vec<WorkerResults> = Vec::new();
    for r in results {
        match latest.last_mut() {
            Some(last) if last.worker.index == r.worker.index => *last = r,
            _ => latest.push(r),
        }
    }
    let missing: Vec<u32> = (0..count)
        .filter(|i| !latest.iter().any(|r| r.worker.index == *i))
        .collect();
    if !missing.is_empty() {
        return Err(MergeError::MissingWorkers { missing, count });
    }
    if let Some(r) = latest.iter().find(|r| !r.complete) {
        return Err(MergeError::Incomplete {
            worker: r.worker.index,
            problem: r.problem.clone().unwrap_or_default(),
        });
    }
    let plan = crate::scenario::parse(
        Path::new(&scenario.path),
        &scenario.text,
        Overrides {
            duration: scenario.duration_s.map(Duration::from_secs_f64),
            threads: scenario.threads,
        },
    )
    .map_err(|e| MergeError::Scenario(e.to_string()))?;
    Ok(Workers {
        results: latest,
        plan,
    })
}

/// Queue copies that should have arrived: confirmed and not returned (with confirms),
/// else published and not returned.
fn expected_copies(verdict: &Verdict) -> u64 {
    let t = &verdict.totals;
    if verdict.confirms {
        t.confirmed.saturating_sub(t.returned)
    } else {
        t.attempted.saturating_sub(t.returned)
    }
}

/// Whether every worker's clock is known to agree with worker 0's within
/// [`E2E_CLOCK_BOUND`] (offset estimate error bound).
pub fn clocks_agree(results: &[WorkerResults]) -> bool {
    results
        .iter()
        .all(|r| Duration::from_nanos(r.clock_sync.bound_ns) <= E2E_CLOCK_BOUND)
}

impl Workers {
    /// The run as one outcome, ready for the report.
    pub fn outcome(&self) -> WorkloadOutcome {
        let results = &self.results;
        let leader = &results[0];
        let plan = &self.plan;
        let run_id = u64::from_str_radix(&leader.run_id_hex, 16).unwrap_or_default();
        let topology = Topology::from_plan(plan, run_id);
        let origin = results.iter().map(|r| r.origin_unix_ns).min().unwrap_or(0);
        let clock = Clock::reading_at_origin(origin);
        let mut series = Series::default();
        let mut events = Vec::new();
        for r in results {
            let shift_ns = r.origin_unix_ns.saturating_sub(origin);
            series.absorb(&r.series, (shift_ns / 1_000_000_000) as u32);
            events.extend(r.events.iter().cloned().map(|mut e| {
                e.at_ms += shift_ns as f64 / 1e6;
                e.last_ms = e.last_ms.map(|l| l + shift_ns as f64 / 1e6);
                e.source = format!("{} (worker {})", e.source, r.worker.index);
                e
            }));
        }
        if !clocks_agree(results) {
            series.drop_end_to_end();
        }
        events.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        let start_ns = leader.start_unix_ns;
        let verdict = self.verdict(&topology);
        let nodes = leader.nodes.len().max(1);
        let cpu = results
            .iter()
            .fold(crate::workload::CpuTime::default(), |c, r| {
                crate::workload::CpuTime {
                    user_s: c.user_s + r.cpu.user_s,
                    system_s: c.system_s + r.cpu.system_s,
                }
            });
        let last = |pick: fn(&WorkerResults) -> u64| {
            Duration::from_nanos(
                results
                    .iter()
                    .map(pick)
                    .max()
                    .unwrap_or(0)
                    .saturating_sub(start_ns),
            )
        };
        let queues_left = leader.queues_left.clone().unwrap_or_default();
        // What should have arrived is known only now, from every worker's ledgers.
        let drain = crate::workload::DrainResult {
            expected: expected_copies(&verdict),
            missing: expected_copies(&verdict).saturating_sub(verdict.totals.delivered),
            ..leader.drain
        };
        WorkloadOutcome {
            run_id,
            queue: topology.queues[0].name.clone(),
            queues: topology
                .queues
                .iter()
                .enumerate()
                .map(|(q, spec)| QueueOutcome {
                    name: spec.name.clone(),
                    node_index: q % nodes,
                    left: queues_left.get(q).copied(),
                })
                .collect(),
            verdict,
            latencies: series.total_latencies(),
            series,
            events,
            publishing: last(|r| r.publishing_end_unix_ns),
            delivering: last(|r| r.last_delivery_unix_ns),
            drain,
            elapsed: Duration::from_secs_f64(
                results.iter().map(|r| r.elapsed_s).fold(0.0, f64::max),
            ),
            cpu,
            interrupted: results.iter().any(|r| r.interrupted),
            queue_left: leader.queues_left.as_ref().map(|left| left.iter().sum()),
            final_read: leader.final_read_report.clone(),
            ledger_bytes: results.iter().map(|r| r.ledger_bytes).sum(),
            confirm_activity: results
                .iter()
                .flat_map(|r| r.confirm_activity.iter().cloned())
                .collect(),
            delivery_activity: results
                .iter()
                .flat_map(|r| r.delivery_activity.iter().cloned())
                .collect(),
            clock,
            start: clock.instant_at(start_ns),
            sabotaged_dropped: Vec::new(),
            sabotaged_doubled: Vec::new(),
            sabotaged_rejected: Vec::new(),
            worker: None,
        }
    }

    /// The exact verdict over every worker's ledgers and shards.
    fn verdict(&self, topology: &Topology) -> Verdict {
        let results = &self.results;
        let leader = &results[0];
        let plan = &self.plan;
        let ledgers: Vec<_> = results.iter().flat_map(|r| r.ledgers.iter()).collect();
        let consumers: Vec<Vec<&DeliveryShard>> = (0..topology.queues.len())
            .map(|q| {
                results
                    .iter()
                    .filter_map(|r| r.consumers.get(q))
                    .flatten()
                    .collect()
            })
            .collect();
        let names: Vec<String> = leader.nodes.iter().map(|n| n.name.clone()).collect();
        if !leader.verified {
            return Verdict::unverified(
                Counts {
                    attempted: ledgers.iter().map(|l| u64::from(l.attempted)).sum(),
                    confirmed: results.iter().map(|r| r.acked).sum(),
                    republished: ledgers.iter().map(|l| l.republished).sum(),
                    delivered: results.iter().map(|r| r.fresh).sum(),
                    ..Counts::default()
                },
                results.iter().map(|r| r.deliveries).sum(),
                plan.publishers.confirm,
            );
        }
        crate::workload::judge::by_queues(crate::workload::judge::Judged {
            plan,
            topology,
            nodes: leader.nodes.len().max(1),
            node_names: &names,
            ledgers: &ledgers,
            consumers: &consumers,
            final_read: leader.final_read.as_deref(),
            dead_letters: leader.dead_letters.as_deref(),
        })
    }
}
