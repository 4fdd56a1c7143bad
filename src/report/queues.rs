//! Per-queue results: one row per queue of the run (its node, its throughput, its latency
//! and its verdict), for summary.json, queues.csv, the console and the report. The run's
//! totals are the exact sum of its queues'.

use serde::{Deserialize, Serialize};

use super::Percentiles;
use super::csv::Fixed;
use crate::ledger::Counts;
use crate::workload::WorkloadOutcome;

/// One queue of the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueReport {
    pub name: String,
    /// The node it was placed on, when known.
    pub node: Option<String>,
    /// classic, quorum or stream.
    #[serde(rename = "type")]
    pub queue_type: String,
    /// Messages left in it when it was deleted (None when kept or unknown).
    pub left: Option<u32>,
    /// Distinct messages delivered per second, over the run's delivering time (the same
    /// time as the run's figure, so the queues' figures add up to it).
    pub delivered_per_s: f64,
    /// Intended send time → delivery, of this queue's first deliveries (2 significant
    /// digits).
    pub e2e: Percentiles,
    /// The same totals as the run's, for this queue (all zero but `delivered` under
    /// `--no-verify`).
    pub totals: Counts,
    /// First deliveries per second, indexed as the run's time series.
    pub delivered_by_second: Vec<u64>,
}

/// The queues of a finished workload.
pub fn build(outcome: &WorkloadOutcome, queue_type: &str) -> Vec<QueueReport> {
    let delivering_s = outcome.delivering.as_secs_f64();
    outcome
        .queues
        .iter()
        .enumerate()
        .map(|(index, queue)| {
            let series = outcome.series.queue(index as u32);
            let verdict = outcome.verdict.queues.get(index);
            let totals = verdict.map_or_else(
                || Counts {
                    delivered: series.delivered(),
                    ..Counts::default()
                },
                |v| v.totals.clone(),
            );
            QueueReport {
                name: queue.name.clone(),
                node: verdict.and_then(|v| v.node.clone()),
                queue_type: queue_type.to_string(),
                left: queue.left,
                delivered_per_s: if delivering_s > 0.0 {
                    totals.delivered as f64 / delivering_s
                } else {
                    0.0
                },
                e2e: Percentiles::of(&series.e2e_us),
                totals,
                delivered_by_second: series.delivered_by_second,
            }
        })
        .collect()
}

/// One row of queues.csv: the field names are the columns, in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueRow {
    pub queue: String,
    pub node: String,
    #[serde(rename = "type")]
    pub queue_type: String,
    pub delivered: u64,
    pub delivered_per_s: Fixed<1>,
    pub e2e_p50_us: u64,
    pub e2e_p99_us: u64,
    pub e2e_p999_us: u64,
    pub lost_confirmed: u64,
    pub lost_unconfirmed: u64,
    pub duplicated: u64,
    pub stranded: u64,
    pub dead_lettered: u64,
    /// Messages left at deletion; empty when unknown.
    pub left: Option<u32>,
}

impl QueueRow {
    /// The row of one queue.
    pub fn of(q: &QueueReport) -> Self {
        let t = &q.totals;
        Self {
            queue: q.name.clone(),
            node: q.node.clone().unwrap_or_default(),
            queue_type: q.queue_type.clone(),
            delivered: t.delivered,
            delivered_per_s: Fixed(q.delivered_per_s),
            e2e_p50_us: q.e2e.p50_us,
            e2e_p99_us: q.e2e.p99_us,
            e2e_p999_us: q.e2e.p999_us,
            lost_confirmed: t.lost_confirmed,
            lost_unconfirmed: t.lost_unconfirmed,
            duplicated: t.duplicated,
            stranded: t.stranded,
            dead_lettered: t.dead_lettered,
            left: q.left,
        }
    }
}

/// queues.csv: one row per queue.
pub fn csv(queues: &[QueueReport]) -> String {
    let rows: Vec<QueueRow> = queues.iter().map(QueueRow::of).collect();
    super::csv::table_with_header(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_queue_under_the_documented_columns() {
        let queue = QueueReport {
            name: "q,1".into(),
            node: Some("a@localhost".into()),
            queue_type: "quorum".into(),
            left: Some(0),
            delivered_per_s: 12.34,
            e2e: Percentiles::default(),
            totals: Counts {
                delivered: 7,
                lost_confirmed: 1,
                ..Counts::default()
            },
            delivered_by_second: vec![3, 4],
        };
        let text = csv(&[queue]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split(',').count(),
            super::super::csv::columns::<QueueRow>().len()
        );
        assert_eq!(
            lines[1],
            "\"q,1\",a@localhost,quorum,7,12.3,0,0,0,1,0,0,0,0,0"
        );
    }
}
