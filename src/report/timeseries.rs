//! The per-second table of a run (timeseries.csv and the report's charts): counts, rates,
//! the faults in effect and latency percentiles of each second. Its columns carry what
//! PerfTest's per-interval output does, and more, under explicit names.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::faults::FaultsReport;
use crate::events::{Event, EventKind};
use crate::metrics::series::Series;

/// Percentiles of one second (microseconds; zeros when nothing was measured).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SecondLatency {
    pub count: u64,
    pub min_us: u64,
    pub p50_us: u64,
    pub p75_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl SecondLatency {
    fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let q = |quantile| histogram.value_at_quantile(quantile);
        Self {
            count: histogram.len(),
            min_us: histogram.min(),
            p50_us: q(0.5),
            p75_us: q(0.75),
            p95_us: q(0.95),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: histogram.max(),
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondRow {
    /// Seconds since the run's clock origin (the workload's start).
    pub second: u32,
    /// Publishes in this second (msg/s).
    pub sent: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub returned: u64,
    /// First deliveries (msg/s).
    pub delivered: u64,
    /// Every delivery.
    pub deliveries: u64,
    /// Duplicate deliveries since the start.
    pub duplicates_so_far: u64,
    /// Connections reopened in this second.
    pub reconnects: u64,
    pub confirm: SecondLatency,
    /// End to end, from the intended send time.
    pub e2e: SecondLatency,
    /// End to end, from the actual send time.
    pub e2e_sent: SecondLatency,
    /// Faults in effect during this second (labels).
    pub faults: Vec<String>,
}

/// The rows of every second, with events and faults placed on the same clock.
/// `publish_start_s` is when publishing started, in seconds from the clock origin.
pub fn rows(
    series: &Series,
    events: &[Event],
    faults: &FaultsReport,
    publish_start_s: f64,
) -> Vec<SecondRow> {
    let mut duplicates = 0;
    series
        .seconds()
        .into_iter()
        .map(|(second, counts, latencies)| {
            duplicates += counts.duplicates;
            let (from_ms, to_ms) = (f64::from(second) * 1000.0, f64::from(second + 1) * 1000.0);
            let reconnects = events
                .iter()
                .filter(|e| {
                    e.kind == EventKind::Reconnected && e.at_ms >= from_ms && e.at_ms < to_ms
                })
                .map(|e| e.occurrences())
                .sum::<u64>();
            let active = faults
                .faults
                .iter()
                .filter(|f| {
                    let Some(start) = f.start_s.map(|s| s + publish_start_s) else {
                        return false;
                    };
                    let end = f.end_s.map_or(f64::INFINITY, |e| e + publish_start_s);
                    start < f64::from(second + 1) && end >= f64::from(second)
                })
                .map(|f| f.label.clone())
                .collect();
            SecondRow {
                second,
                sent: counts.sent,
                confirmed: counts.confirmed,
                nacked: counts.nacked,
                returned: counts.returned,
                delivered: counts.delivered,
                deliveries: counts.deliveries,
                duplicates_so_far: duplicates,
                reconnects,
                confirm: SecondLatency::of(&latencies.confirm_us),
                e2e: SecondLatency::of(&latencies.e2e_intended_us),
                e2e_sent: SecondLatency::of(&latencies.e2e_sent_us),
                faults: active,
            }
        })
        .collect()
}

/// One row of timeseries.csv: the field names are the columns, in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TimeseriesRow {
    pub second: u32,
    pub sent_per_s: u64,
    pub confirmed_per_s: u64,
    pub nacked_per_s: u64,
    pub returned_per_s: u64,
    pub delivered_per_s: u64,
    pub deliveries_per_s: u64,
    pub duplicates_so_far: u64,
    pub reconnects: u64,
    pub confirm_min_us: u64,
    pub confirm_p50_us: u64,
    pub confirm_p75_us: u64,
    pub confirm_p95_us: u64,
    pub confirm_p99_us: u64,
    pub confirm_p999_us: u64,
    pub confirm_max_us: u64,
    pub e2e_min_us: u64,
    pub e2e_p50_us: u64,
    pub e2e_p75_us: u64,
    pub e2e_p95_us: u64,
    pub e2e_p99_us: u64,
    pub e2e_p999_us: u64,
    pub e2e_max_us: u64,
    pub e2e_sent_min_us: u64,
    pub e2e_sent_p50_us: u64,
    pub e2e_sent_p75_us: u64,
    pub e2e_sent_p95_us: u64,
    pub e2e_sent_p99_us: u64,
    pub e2e_sent_p999_us: u64,
    pub e2e_sent_max_us: u64,
    /// The faults in effect, separated by `;`.
    pub faults: String,
}

impl TimeseriesRow {
    /// The row of one second.
    pub fn of(row: &SecondRow) -> Self {
        let (c, e, s) = (&row.confirm, &row.e2e, &row.e2e_sent);
        Self {
            second: row.second,
            sent_per_s: row.sent,
            confirmed_per_s: row.confirmed,
            nacked_per_s: row.nacked,
            returned_per_s: row.returned,
            delivered_per_s: row.delivered,
            deliveries_per_s: row.deliveries,
            duplicates_so_far: row.duplicates_so_far,
            reconnects: row.reconnects,
            confirm_min_us: c.min_us,
            confirm_p50_us: c.p50_us,
            confirm_p75_us: c.p75_us,
            confirm_p95_us: c.p95_us,
            confirm_p99_us: c.p99_us,
            confirm_p999_us: c.p999_us,
            confirm_max_us: c.max_us,
            e2e_min_us: e.min_us,
            e2e_p50_us: e.p50_us,
            e2e_p75_us: e.p75_us,
            e2e_p95_us: e.p95_us,
            e2e_p99_us: e.p99_us,
            e2e_p999_us: e.p999_us,
            e2e_max_us: e.max_us,
            e2e_sent_min_us: s.min_us,
            e2e_sent_p50_us: s.p50_us,
            e2e_sent_p75_us: s.p75_us,
            e2e_sent_p95_us: s.p95_us,
            e2e_sent_p99_us: s.p99_us,
            e2e_sent_p999_us: s.p999_us,
            e2e_sent_max_us: s.max_us,
            faults: row.faults.join(";"),
        }
    }
}

/// timeseries.csv: one row per second.
pub fn csv(rows: &[SecondRow]) -> String {
    let rows: Vec<TimeseriesRow> = rows.iter().map(TimeseriesRow::of).collect();
    super::csv::table_with_header(&rows)
}
