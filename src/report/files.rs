//! Files of a run folder: verdict.json (the whole report) and events.json.

use std::path::Path;

use super::RunReport;

/// Writes verdict.json and events.json into `dir` (made if missing).
///
/// # Errors
/// The I/O error of the file that could not be written.
pub fn write(dir: &Path, report: &RunReport) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let verdict = serde_json::to_string_pretty(report).expect("a report serializes");
    std::fs::write(dir.join("verdict.json"), verdict + "\n")?;
    let events = serde_json::to_string_pretty(&report.events).expect("events serialize");
    std::fs::write(dir.join("events.json"), events + "\n")
}
