//! The files of a run folder, in the formats the scenario asks for:
//! - json: summary.json (the whole report), verdict.json, events.json;
//! - csv: summary.csv, timeseries.csv, events.csv, queues.csv, and a row appended to runs.csv beside
//!   the run folder;
//! - hlog: latency.hlog (HdrHistogram interval log), latency.hgrm and confirm.hgrm;
//! - html: report.html;
//! - junit: junit.xml.

use std::path::Path;

use super::{RunReport, csv, hlog, html, junit, queues, timeseries};
use crate::metrics::Latencies;
use crate::metrics::series::Series;
use crate::scenario::ReportFormat;

/// What only a live run has (rebuilding a report from summary.json cannot write these).
pub struct Measured<'a> {
    pub series: &'a Series,
    pub latencies: &'a Latencies,
    /// The clock origin, ns since the Unix epoch.
    pub origin_unix_ns: u64,
}

/// Writes the run folder. Returns warnings (a runs.csv that could not take the row).
///
/// # Errors
/// The I/O error of the first file that could not be written.
pub fn write(
    dir: &Path,
    report: &RunReport,
    formats: &[ReportFormat],
    measured: Option<&Measured<'_>>,
) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut warnings = Vec::new();
    let json = |value: &dyn erased::Json| value.pretty() + "\n";
    if formats.contains(&ReportFormat::Json) {
        std::fs::write(dir.join("summary.json"), json(report))?;
        std::fs::write(
            dir.join("verdict.json"),
            json(
                &serde_json::json!({ "verdict": report.verdict, "final_read": report.final_read, "queue_left": report.queue_left, "loss_explanations": report.loss_explanations, "gates": report.gates, "passed": report.passed, "interrupted": report.interrupted }),
            ),
        )?;
        std::fs::write(dir.join("events.json"), json(&report.events))?;
    }
    if formats.contains(&ReportFormat::Csv) {
        std::fs::write(dir.join("summary.csv"), csv::summary(report))?;
        std::fs::write(
            dir.join("timeseries.csv"),
            timeseries::csv(&report.timeseries),
        )?;
        std::fs::write(dir.join("events.csv"), events_csv(&report.events))?;
        std::fs::write(dir.join("queues.csv"), queues::csv(&report.queues))?;
        let runs = dir.parent().unwrap_or(Path::new(".")).join("runs.csv");
        if let Some(warning) = csv::append_to_runs(&runs, report)? {
            warnings.push(warning);
        }
    }
    if formats.contains(&ReportFormat::Hlog) {
        if let Some(measured) = measured {
            let log = hlog::interval_log(measured.series, measured.origin_unix_ns)
                .map_err(std::io::Error::other)?;
            std::fs::write(dir.join("latency.hlog"), log)?;
            std::fs::write(
                dir.join("latency.hgrm"),
                hlog::percentile_distribution(&measured.latencies.e2e_intended_us),
            )?;
            std::fs::write(
                dir.join("confirm.hgrm"),
                hlog::percentile_distribution(&measured.latencies.confirm_us),
            )?;
        }
    }
    if formats.contains(&ReportFormat::Html) {
        std::fs::write(dir.join("report.html"), html::render(report))?;
    }
    if formats.contains(&ReportFormat::Junit) {
        std::fs::write(dir.join("junit.xml"), junit::render(report))?;
    }
    Ok(warnings)
}

/// Pretty JSON of anything serializable, behind a trait object.
mod erased {
    pub trait Json {
        fn pretty(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn pretty(&self) -> String {
            serde_json::to_string_pretty(self).expect("report types serialize")
        }
    }
}

/// One row of events.csv: the field names are the columns, in order.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EventRow {
    pub at_ms: csv::Fixed<3>,
    pub source: String,
    pub kind: String,
    pub detail: String,
}

/// events.csv: one row per event (repeats within a second are one row, whose detail
/// says how many more and until when).
pub fn events_csv(events: &[crate::events::Event]) -> String {
    let rows: Vec<EventRow> = events
        .iter()
        .map(|event| EventRow {
            at_ms: csv::Fixed(event.at_ms),
            source: event.source.clone(),
            kind: crate::scenario::serde_name(&event.kind),
            detail: event.described(),
        })
        .collect();
    csv::table_with_header(&rows)
}
