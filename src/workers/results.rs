//! A worker's raw results: everything `warren merge` needs to rebuild the run exactly,
//! in one JSON file of the worker's run folder (`worker-results.json`).
//!
//! The format is versioned (`format`, `version`) and portable: sequence-number sets are
//! base64 of the Roaring bitmap portable format, histograms base64 of HdrHistogram's V2
//! compressed encoding, times are ns since the Unix epoch on worker 0's clock (each
//! worker's clock corrected by its measured offset), and a worker's per-second series
//! counts seconds from its clock origin, a whole second of that clock.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::broker::NodeInfo;
use crate::events::Event;
use crate::faults::runner::FaultRecord;
use crate::ledger::{DeadLetterShard, DeliveryShard, PublishLedger};
use crate::metrics::activity::Activity;
use crate::metrics::series::Series;
use crate::share::Share;
use crate::workload::coordination::ClockSync;
use crate::workload::{CpuTime, DrainResult, FinalReadReport, WorkloadOutcome};

/// The file name in a worker's run folder.
pub const FILE: &str = "worker-results.json";
/// What `format` says.
pub const FORMAT: &str = "warren-worker-results";
/// The layout version this warren writes and reads.
pub const VERSION: u32 = 1;

/// The scenario as the worker ran it: the merge checks and judges by the same one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioSource {
    /// The file's path as given to the worker (for messages).
    pub path: String,
    /// The whole file.
    pub text: String,
    /// `--duration`, seconds.
    pub duration_s: Option<f64>,
    /// `--threads`.
    pub threads: Option<u32>,
}

/// One worker's raw results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerResults {
    pub format: String,
    pub version: u32,
    pub warren_version: String,
    /// The run id as given, and as carried by messages (16 hex digits).
    pub run_id: String,
    pub run_id_hex: String,
    pub worker: Share,
    /// False when something kept this worker from doing its whole share (`problem`).
    pub complete: bool,
    pub problem: Option<String>,
    pub scenario: ScenarioSource,
    pub started_at: String,
    /// Its clock against worker 0's.
    pub clock_sync: ClockSync,
    /// The reading at its clock's origin (second 0 of its series, 0 ms of its events).
    pub origin_unix_ns: u64,
    /// When message 0 was due.
    pub start_unix_ns: u64,
    /// The last new message sent, and the last first delivery (0 if none).
    pub publishing_end_unix_ns: u64,
    pub last_delivery_unix_ns: u64,
    pub elapsed_s: f64,
    pub cpu: CpuTime,
    pub interrupted: bool,
    /// False under `--no-verify`: no ledgers were kept, only counts.
    pub verified: bool,
    /// The ledgers of its publishers.
    pub ledgers: Vec<PublishLedger>,
    /// Per queue, its consumers' shards.
    pub consumers: Vec<Vec<DeliveryShard>>,
    /// Worker 0: the final read, per queue.
    pub final_read: Option<Vec<DeliveryShard>>,
    pub final_read_report: FinalReadReport,
    /// Worker 0: the dead letters, per queue.
    pub dead_letters: Option<Vec<Option<DeadLetterShard>>>,
    /// Worker 0: messages left in each queue at its deletion.
    pub queues_left: Option<Vec<u32>>,
    pub acked: u64,
    pub fresh: u64,
    pub deliveries: u64,
    pub drain: DrainResult,
    pub ledger_bytes: u64,
    pub series: Series,
    pub events: Vec<Event>,
    pub confirm_activity: Vec<Activity>,
    pub delivery_activity: Vec<Activity>,
    /// The faults this worker made (worker 0: node and network faults; others: network
    /// faults on their own proxies).
    pub faults: Vec<FaultRecord>,
    pub nodes: Vec<NodeInfo>,
}

/// Why a results file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error(
        "{path}: no {FILE}: that worker did not finish (killed, or it failed before writing its results)"
    )]
    Missing { path: String },
    #[error("{path}: {reason}")]
    Unreadable { path: String, reason: String },
}

impl WorkerResults {
    /// The raw results of a worker's finished workload; None when it ran alone.
    pub fn of(
        outcome: &WorkloadOutcome,
        scenario: ScenarioSource,
        started_at: String,
        faults: Vec<FaultRecord>,
        nodes: Vec<NodeInfo>,
    ) -> Option<Self> {
        let evidence = outcome.worker.as_ref()?;
        let start_unix_ns = outcome.clock.ns_at(outcome.start);
        let problem = evidence
            .peers_missing
            .clone()
            .or_else(|| outcome.interrupted.then(|| "interrupted".to_string()));
        Some(Self {
            format: FORMAT.into(),
            version: VERSION,
            warren_version: env!("CARGO_PKG_VERSION").into(),
            run_id: evidence.run.text.clone(),
            run_id_hex: format!("{:016x}", evidence.run.id),
            worker: evidence.share,
            complete: problem.is_none(),
            problem,
            scenario,
            started_at,
            clock_sync: evidence.clock_sync,
            origin_unix_ns: outcome.clock.origin_unix_ns(),
            start_unix_ns,
            publishing_end_unix_ns: start_unix_ns + outcome.publishing.as_nanos() as u64,
            last_delivery_unix_ns: if outcome.delivering.is_zero() {
                0
            } else {
                start_unix_ns + outcome.delivering.as_nanos() as u64
            },
            elapsed_s: outcome.elapsed.as_secs_f64(),
            cpu: outcome.cpu,
            interrupted: outcome.interrupted,
            verified: outcome.verdict.verified,
            ledgers: evidence.ledgers.clone(),
            consumers: evidence.consumers.clone(),
            final_read: evidence.final_read.clone(),
            final_read_report: outcome.final_read.clone(),
            dead_letters: evidence.dead_letters.clone(),
            queues_left: outcome.queues.iter().map(|q| q.left).collect(),
            acked: evidence.acked,
            fresh: evidence.fresh,
            deliveries: evidence.deliveries,
            drain: outcome.drain,
            ledger_bytes: outcome.ledger_bytes,
            series: outcome.series.clone(),
            events: outcome.events.clone(),
            confirm_activity: outcome.confirm_activity.clone(),
            delivery_activity: outcome.delivery_activity.clone(),
            faults,
            nodes,
        })
    }

    /// Writes `dir/worker-results.json`.
    ///
    /// # Errors
    /// The I/O error.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE);
        let partial = dir.join(format!("{FILE}.partial"));
        let file = std::io::BufWriter::new(std::fs::File::create(&partial)?);
        serde_json::to_writer(file, self).map_err(std::io::Error::other)?;
        // Renamed into place only when whole: a half-written file is never read as results.
        std::fs::rename(partial, path)
    }

    /// The run id and share of the results in `dir`, when there are results there.
    pub fn identity(dir: &Path) -> Option<(String, Share)> {
        #[derive(Deserialize)]
        struct Identity {
            run_id: String,
            worker: Share,
        }
        let text = std::fs::read(dir.join(FILE)).ok()?;
        let identity: Identity = serde_json::from_slice(&text).ok()?;
        Some((identity.run_id, identity.worker))
    }

    /// Reads the results in worker folder `dir`.
    ///
    /// # Errors
    /// [`ResultsError`]: no results there, or not results of a version this warren reads.
    pub fn read(dir: &Path) -> Result<Self, ResultsError> {
        let path = dir.join(FILE);
        let shown = dir.display().to_string();
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ResultsError::Missing { path: shown });
            }
            Err(e) => {
                return Err(ResultsError::Unreadable {
                    path: shown,
                    reason: e.to_string(),
                });
            }
        };
        #[derive(Deserialize)]
        struct Header {
            format: String,
            version: u32,
        }
        let unreadable = |reason: String| ResultsError::Unreadable {
            path: shown.clone(),
            reason,
        };
        let header: Header = serde_json::from_slice(&text)
            .map_err(|e| unreadable(format!("{FILE} is not worker results: {e}")))?;
        if header.format != FORMAT || header.version != VERSION {
            return Err(unreadable(format!(
                "{FILE} is {} version {}; this warren reads {FORMAT} version {VERSION}",
                header.format, header.version
            )));
        }
        serde_json::from_slice(&text).map_err(|e| unreadable(format!("{FILE}: {e}")))
    }
}
