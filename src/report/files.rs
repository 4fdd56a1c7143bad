//! Files of a run folder: verdict.json (the whole report) and events.json.

use std::path::Path;

use super::RunReport;

/// Writes verdict.json, events.json and events.csv into `dir` (made if missing).
///
/// # Errors
/// The I/O error of the file that could not be written.
pub fn write(dir: &Path, report: &RunReport) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let verdict = serde_json::to_string_pretty(report).expect("a report serializes");
    std::fs::write(dir.join("verdict.json"), verdict + "\n")?;
    let events = serde_json::to_string_pretty(&report.events).expect("events serialize");
    std::fs::write(dir.join("events.json"), events + "\n")?;
    std::fs::write(dir.join("events.csv"), events_csv(&report.events))
}

/// The column names of events.csv.
pub const EVENTS_CSV_HEADER: &str = "at_ms,source,kind,detail";

/// events.csv: one row per event, RFC 4180 quoting.
pub fn events_csv(events: &[crate::events::Event]) -> String {
    let mut out = format!("{EVENTS_CSV_HEADER}\n");
    for event in events {
        let kind = serde_json::to_value(event.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:.3},{},{},{}\n",
            event.at_ms,
            quote(&event.source),
            kind,
            quote(&event.detail)
        ));
    }
    out
}

fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}
