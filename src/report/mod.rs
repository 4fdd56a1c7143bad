//! One report model per run, built once from what the run measured; renderers turn it into
//! console text and files. Units are in field names.

pub mod console;
pub mod csv;
pub mod explain;
pub mod faults;
pub mod files;
pub mod hlog;
pub mod html;
pub mod html_queues;
pub mod junit;
pub mod queues;
pub mod svg;
pub mod timeseries;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::broker::NodeInfo;
use crate::events::Event;
use crate::gates::GateResult;
use crate::ledger::Verdict;
use crate::workload::{CpuTime, DrainResult, FinalReadReport, WorkloadOutcome};

/// A latency distribution, summarized (microseconds).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub min_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Percentiles {
    /// Summarizes a histogram; all zero when it is empty.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            min_us: histogram.min(),
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
            mean_us: histogram.mean(),
        }
    }

    /// The 99th percentile in milliseconds, when anything was measured.
    pub fn p99_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.p99_us as f64 / 1_000.0)
    }
}

/// Latencies of the run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LatencyReport {
    /// Publish → confirm.
    pub confirm: Percentiles,
    /// Intended send time → delivery (coordinated-omission free under a target rate).
    pub e2e_intended: Percentiles,
    /// Actual send time → delivery.
    pub e2e_sent: Percentiles,
}

/// Throughput of the run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Throughput {
    /// Target rate, msg/s over all publishers (None: as fast as possible).
    pub target_per_s: Option<f64>,
    /// Messages sent (first attempts) per second of the publishing phase.
    pub published_per_s: f64,
    /// Distinct messages delivered per second, from the first due message to the last delivery.
    pub delivered_per_s: f64,
    pub publishing_s: f64,
    pub delivering_s: f64,
}

/// warren's own cost.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct HarnessCost {
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    /// (user + system CPU) / deliveries, microseconds.
    pub cpu_us_per_delivery: f64,
    /// Memory held by the ledgers at the end.
    pub ledger_bytes: u64,
}

/// How the run was set up: what capacity-planning rows are compared by.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSetup {
    pub broker_nodes: usize,
    pub queue_type: String,
    pub durable: bool,
    pub persistent: bool,
    pub confirm: bool,
    pub max_in_flight: u32,
    pub mandatory: bool,
    pub ack: String,
    pub prefetch: u16,
    pub multiple_ack_every: u32,
    /// Body size bounds (equal for a fixed size).
    pub size_min_bytes: u64,
    pub size_max_bytes: u64,
    /// Target rate over all publishers; None = as fast as possible.
    pub target_rate_per_s: Option<f64>,
    pub seed: u64,
}

impl RunSetup {
    fn of(plan: &crate::scenario::Plan) -> Self {
        let (size_min_bytes, size_max_bytes) = match plan.publishers.size {
            crate::scenario::BodySize::Fixed(size) => (size, size),
            crate::scenario::BodySize::Uniform { min, max } => (min, max),
        };
        Self {
            broker_nodes: plan.broker.node_count(),
            queue_type: crate::scenario::serde_name(&plan.topology.queue_type),
            durable: plan.topology.durable,
            persistent: plan.publishers.persistent,
            confirm: plan.publishers.confirm,
            max_in_flight: plan.publishers.max_in_flight,
            mandatory: plan.publishers.mandatory,
            ack: crate::scenario::serde_name(&plan.consumers.ack),
            prefetch: plan.consumers.prefetch,
            multiple_ack_every: plan.consumers.multiple_ack_every,
            size_min_bytes,
            size_max_bytes,
            target_rate_per_s: plan.publishers.rate,
            seed: plan.seed,
        }
    }
}

/// A latency distribution as a curve: the value at each percentile (HdrHistogram's
/// percentile iteration, 5 steps per halving of the distance to 100%).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Distributions {
    pub confirm: Vec<(f64, u64)>,
    pub e2e_intended: Vec<(f64, u64)>,
    pub e2e_sent: Vec<(f64, u64)>,
}

/// The (percentile, value in µs) points of a histogram.
pub fn distribution(histogram: &Histogram<u64>) -> Vec<(f64, u64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    histogram
        .iter_quantiles(5)
        .map(|v| (v.percentile(), v.value_iterated_to()))
        .collect()
}

/// Everything about one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub scenario: String,
    pub description: String,
    pub warren_version: String,
    pub run_id: String,
    pub started_at: String,
    pub broker_version: Option<String>,
    pub nodes: Vec<NodeInfo>,
    /// The first queue's name (the only one's, in a run of one queue).
    pub queue: String,
    /// Every queue of the run: node, throughput, latency and verdict.
    #[serde(default)]
    pub queues: Vec<queues::QueueReport>,
    /// Messages left in the queues at their deletion, after the final read (None when it was
    /// kept or the broker did not say).
    pub queue_left: Option<u32>,
    /// The final read of the queue after the drain.
    #[serde(default)]
    pub final_read: FinalReadReport,
    /// Settings of the scenario that could explain its losses (a queue policy, transient
    /// messages), so a promise RabbitMQ never made is not read as a broken one.
    #[serde(default)]
    pub loss_explanations: Vec<String>,
    /// The scenario's warnings: what it may say but weakens what the run proves (TLS
    /// verification turned off, a `timeout` toxic shorter than heartbeat detection).
    #[serde(default)]
    pub warnings: Vec<String>,
    pub publishers: u32,
    pub consumers: u32,
    pub elapsed_s: f64,
    pub throughput: Throughput,
    pub latency: LatencyReport,
    pub drain: DrainResult,
    pub verdict: Verdict,
    pub gates: Vec<GateResult>,
    /// True when every gate passed.
    pub passed: bool,
    pub interrupted: bool,
    pub harness: HarnessCost,
    /// Faults made, when, and how long clients took to recover.
    pub faults: faults::FaultsReport,
    pub events: Vec<Event>,
    pub setup: RunSetup,
    /// When publishing started, in seconds from the run's clock origin (the time base of
    /// `timeseries` and `events`).
    pub publish_start_s: f64,
    pub timeseries: Vec<timeseries::SecondRow>,
    pub distributions: Distributions,
}

impl RunReport {
    /// "N of M distinct messages", or, when messages were routed to several queues,
    /// "N of M queue copies (P distinct messages)": delivered counts one per queue.
    pub fn delivered_of(&self) -> String {
        let t = &self.verdict.totals;
        if self.verdict.published == t.attempted {
            format!("{} of {} distinct messages", t.delivered, t.attempted)
        } else {
            format!(
                "{} of {} queue copies ({} distinct messages)",
                t.delivered, t.attempted, self.verdict.published
            )
        }
    }

    /// The exit code this run earns: 130 interrupted, 0 every gate passed, 1 otherwise.
    pub fn exit(&self) -> crate::exit::Exit {
        if self.interrupted {
            crate::exit::Exit::Interrupted
        } else if self.passed {
            crate::exit::Exit::Success
        } else {
            crate::exit::Exit::GateFailed
        }
    }
}

/// The parts of a report that do not come from the workload.
pub struct RunContext<'a> {
    pub plan: &'a crate::scenario::Plan,
    pub started_at: String,
    pub nodes: Vec<NodeInfo>,
    /// What happened to each fault of the timeline.
    pub faults: Vec<crate::faults::runner::FaultRecord>,
}

impl RunReport {
    /// Builds the report of a finished workload; gates are evaluated here.
    pub fn build(context: RunContext<'_>, outcome: &WorkloadOutcome) -> Self {
        let plan = context.plan;
        let latency = LatencyReport {
            confirm: Percentiles::of(&outcome.latencies.confirm_us),
            e2e_intended: Percentiles::of(&outcome.latencies.e2e_intended_us),
            e2e_sent: Percentiles::of(&outcome.latencies.e2e_sent_us),
        };
        let totals = &outcome.verdict.totals;
        let per_s = |count: u64, seconds: f64| {
            if seconds > 0.0 {
                count as f64 / seconds
            } else {
                0.0
            }
        };
        let throughput = Throughput {
            target_per_s: plan.publishers.rate,
            published_per_s: per_s(outcome.verdict.published, outcome.publishing.as_secs_f64()),
            delivered_per_s: per_s(totals.delivered, outcome.delivering.as_secs_f64()),
            publishing_s: outcome.publishing.as_secs_f64(),
            delivering_s: outcome.delivering.as_secs_f64(),
        };
        let start_ns = outcome.clock.ns_at(outcome.start);
        let publish_start_s = outcome
            .start
            .saturating_duration_since(outcome.clock.origin())
            .as_secs_f64();
        let faults = faults::FaultsReport::build(
            &context.faults,
            &outcome.confirm_activity,
            &outcome.delivery_activity,
            start_ns,
            start_ns + outcome.publishing.as_nanos() as u64,
        );
        let mut events = outcome.events.clone();
        events.extend(faults::FaultsReport::events(
            &context.faults,
            &outcome.clock,
        ));
        events.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        let facts = crate::gates::Facts {
            verdict: &outcome.verdict,
            delivered_per_s: throughput.delivered_per_s,
            p99_e2e_ms: latency.e2e_intended.p99_ms(),
            p99_confirm_ms: latency.confirm.p99_ms(),
            max_recovery_s: faults.worst_recovery_s(plan.publishers.confirm),
            unobserved_faults: faults.unobserved(),
        };
        let gates = crate::gates::evaluate(&plan.gates, &facts);
        let CpuTime { user_s, system_s } = outcome.cpu;
        let deliveries = outcome.verdict.deliveries.max(1);
        let broker_version = context.nodes.iter().find_map(|n| n.version.clone());
        Self {
            scenario: plan.name.clone(),
            description: plan.description.clone(),
            warren_version: env!("CARGO_PKG_VERSION").to_string(),
            run_id: format!("{:016x}", outcome.run_id),
            started_at: context.started_at,
            warnings: plan.warnings.clone(),
            loss_explanations: explain::losses(
                plan,
                &outcome.verdict.totals,
                broker_version.as_deref(),
            ),
            broker_version,
            nodes: context.nodes,
            queue: outcome.queue.clone(),
            queues: queues::build(
                outcome,
                &crate::scenario::serde_name(&plan.topology.queue_type),
            ),
            queue_left: outcome.queue_left,
            final_read: outcome.final_read.clone(),
            publishers: plan.publishers.count,
            consumers: plan.consumers.count,
            elapsed_s: outcome.elapsed.as_secs_f64(),
            throughput,
            latency,
            drain: outcome.drain,
            passed: gates.iter().all(|g| g.passed) && !outcome.interrupted,
            gates,
            interrupted: outcome.interrupted,
            harness: HarnessCost {
                cpu_user_s: user_s,
                cpu_system_s: system_s,
                cpu_us_per_delivery: (user_s + system_s) * 1e6 / deliveries as f64,
                ledger_bytes: outcome.ledger_bytes,
            },
            setup: RunSetup::of(plan),
            publish_start_s,
            timeseries: timeseries::rows(&outcome.series, &events, &faults, publish_start_s),
            distributions: Distributions {
                confirm: distribution(&outcome.latencies.confirm_us),
                e2e_intended: distribution(&outcome.latencies.e2e_intended_us),
                e2e_sent: distribution(&outcome.latencies.e2e_sent_us),
            },
            verdict: outcome.verdict.clone(),
            faults,
            events,
        }
    }
}
