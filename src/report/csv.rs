//! summary.csv (one row per run) and runs.csv, the table many runs append to for capacity
//! planning. Column names are stable; new columns are only ever added at the end.

use std::io::Write;
use std::path::Path;

use super::RunReport;

/// The columns of summary.csv and runs.csv, in order.
pub const SUMMARY_COLUMNS: &[&str] = &[
    "scenario",
    "run_id",
    "started_at",
    "warren_version",
    "broker_version",
    "broker_nodes",
    "queue_type",
    "durable",
    "persistent",
    "confirm",
    "max_in_flight",
    "ack",
    "prefetch",
    "publishers",
    "consumers",
    "size_min_bytes",
    "size_max_bytes",
    "target_rate_per_s",
    "published_per_s",
    "delivered_per_s",
    "confirm_p50_us",
    "confirm_p90_us",
    "confirm_p99_us",
    "confirm_p999_us",
    "confirm_max_us",
    "e2e_p50_us",
    "e2e_p90_us",
    "e2e_p99_us",
    "e2e_p999_us",
    "e2e_max_us",
    "e2e_sent_p50_us",
    "e2e_sent_p99_us",
    "e2e_sent_max_us",
    "attempted",
    "confirmed",
    "delivered",
    "lost_confirmed",
    "lost_unconfirmed",
    "stranded",
    "dead_lettered",
    "duplicated",
    "reordered",
    "unexpected",
    "faults",
    "worst_recovery_s",
    "cpu_us_per_delivery",
    "verdict",
];

/// The run's row, one field per column of [`SUMMARY_COLUMNS`].
pub fn summary_row(report: &RunReport) -> Vec<String> {
    let setup = &report.setup;
    let t = &report.verdict.totals;
    let (c, e, s) = (
        &report.latency.confirm,
        &report.latency.e2e_intended,
        &report.latency.e2e_sent,
    );
    let applied = report
        .faults
        .faults
        .iter()
        .filter(|f| f.outcome == "applied")
        .count();
    let worst = report
        .faults
        .worst_recovery_s(setup.confirm)
        .map_or(String::new(), |w| {
            if w.is_infinite() {
                "never".into()
            } else {
                format!("{w:.3}")
            }
        });
    let verdict = if report.interrupted {
        "interrupted"
    } else if report.passed {
        "pass"
    } else {
        "fail"
    };
    let fields = [
        report.scenario.clone(),
        report.run_id.clone(),
        report.started_at.clone(),
        report.warren_version.clone(),
        report.broker_version.clone().unwrap_or_default(),
        setup.broker_nodes.to_string(),
        setup.queue_type.clone(),
        setup.durable.to_string(),
        setup.persistent.to_string(),
        setup.confirm.to_string(),
        setup.max_in_flight.to_string(),
        setup.ack.clone(),
        setup.prefetch.to_string(),
        report.publishers.to_string(),
        report.consumers.to_string(),
        setup.size_min_bytes.to_string(),
        setup.size_max_bytes.to_string(),
        setup
            .target_rate_per_s
            .map_or(String::new(), |r| r.to_string()),
        format!("{:.1}", report.throughput.published_per_s),
        format!("{:.1}", report.throughput.delivered_per_s),
        c.p50_us.to_string(),
        c.p90_us.to_string(),
        c.p99_us.to_string(),
        c.p999_us.to_string(),
        c.max_us.to_string(),
        e.p50_us.to_string(),
        e.p90_us.to_string(),
        e.p99_us.to_string(),
        e.p999_us.to_string(),
        e.max_us.to_string(),
        s.p50_us.to_string(),
        s.p99_us.to_string(),
        s.max_us.to_string(),
        t.attempted.to_string(),
        t.confirmed.to_string(),
        t.delivered.to_string(),
        t.lost_confirmed.to_string(),
        t.lost_unconfirmed.to_string(),
        t.stranded.to_string(),
        t.dead_lettered.to_string(),
        t.duplicated.to_string(),
        t.reordered.to_string(),
        (t.unexpected + report.verdict.foreign + report.verdict.corrupted).to_string(),
        applied.to_string(),
        worst,
        format!("{:.2}", report.harness.cpu_us_per_delivery),
        verdict.to_string(),
    ];
    debug_assert_eq!(fields.len(), SUMMARY_COLUMNS.len());
    fields.into_iter().map(|f| quote(&f)).collect()
}

/// summary.csv: the header and the run's row.
pub fn summary(report: &RunReport) -> String {
    format!(
        "{}\n{}\n",
        SUMMARY_COLUMNS.join(","),
        summary_row(report).join(",")
    )
}

/// Appends the run's row to `path`, writing the header first when the file is new. An
/// existing file with other columns is left alone (a warning is returned instead).
///
/// # Errors
/// The I/O error when the file cannot be read or written.
pub fn append_to_runs(path: &Path, report: &RunReport) -> std::io::Result<Option<String>> {
    let header = SUMMARY_COLUMNS.join(",");
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if let Some(text) = &existing {
        if text.lines().next() != Some(header.as_str()) {
            return Ok(Some(format!(
                "{} has other columns (an older warren?); this run's row was not added",
                path.display()
            )));
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if existing.is_none() {
        writeln!(file, "{header}")?;
    }
    writeln!(file, "{}", summary_row(report).join(","))?;
    Ok(None)
}

/// RFC 4180 quoting, only where needed.
pub fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}
