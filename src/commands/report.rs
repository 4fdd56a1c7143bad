//! `warren report RUN_DIR`: rebuilds report.html, the CSV files and junit.xml of a run
//! folder from its summary.json (after an upgrade of warren, or a lost file); for a sweep's
//! folder, report.html and capacity.csv from its sweep.json.

use anyhow::Context;

use crate::cli::ReportArgs;
use crate::exit::{Exit, UsageError};
use crate::report::{RunReport, files};
use crate::scenario::ReportFormat;

/// Reads a run's summary.json.
///
/// # Errors
/// A usage error (exit 2) when the folder holds no readable summary.json.
pub fn load(run: &std::path::Path) -> anyhow::Result<RunReport> {
    let path = run.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        UsageError(format!(
            "{}: cannot read: {e} (is this a warren run folder?)",
            path.display()
        ))
    })?;
    serde_json::from_str(&text)
        .map_err(|e| UsageError(format!("{}: not a warren summary: {e}", path.display())).into())
}

/// Rebuilds the files.
///
/// # Errors
/// A usage error for a folder without summary.json, an I/O error when writing fails.
pub fn rebuild(args: &ReportArgs) -> anyhow::Result<Exit> {
    let sweep = args.run.join("sweep.json");
    if sweep.exists() {
        return rebuild_sweep(&args.run, &sweep);
    }
    let report = load(&args.run)?;
    let formats = [ReportFormat::Html, ReportFormat::Csv, ReportFormat::Junit];
    std::fs::create_dir_all(&args.run)?;
    let summary_csv = args.run.join("summary.csv");
    // runs.csv already has this run's row: only the run folder's own files are rewritten.
    let warnings = write_without_runs_csv(&args.run, &report, &formats)
        .with_context(|| format!("writing to {}", args.run.display()))?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    crate::say!(
        "rebuilt report.html, {}, timeseries.csv, events.csv and junit.xml in {}",
        summary_csv.display(),
        args.run.display()
    );
    Ok(Exit::Success)
}

/// A sweep's folder: report.html and capacity.csv from sweep.json (the steps' own folders
/// are run folders, rebuilt one by one).
fn rebuild_sweep(dir: &std::path::Path, path: &std::path::Path) -> anyhow::Result<Exit> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("{}: cannot read: {e}", path.display())))?;
    let report: crate::sweep::SweepReport = serde_json::from_str(&text)
        .map_err(|e| UsageError(format!("{}: not a warren sweep: {e}", path.display())))?;
    crate::sweep::files::write(dir, &report, &[ReportFormat::Csv, ReportFormat::Html])
        .with_context(|| format!("writing to {}", dir.display()))?;
    crate::say!("rebuilt report.html and capacity.csv in {}", dir.display());
    Ok(Exit::Success)
}

fn write_without_runs_csv(
    dir: &std::path::Path,
    report: &RunReport,
    formats: &[ReportFormat],
) -> std::io::Result<Vec<String>> {
    std::fs::write(dir.join("summary.csv"), crate::report::csv::summary(report))?;
    std::fs::write(
        dir.join("timeseries.csv"),
        crate::report::timeseries::csv(&report.timeseries),
    )?;
    std::fs::write(dir.join("events.csv"), files::events_csv(&report.events))?;
    let rest: Vec<ReportFormat> = formats
        .iter()
        .copied()
        .filter(|f| *f != ReportFormat::Csv)
        .collect();
    files::write(dir, report, &rest, None)
}
