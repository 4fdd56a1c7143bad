//! summary.csv (one row per run) and runs.csv, the table many runs append to for capacity
//! planning, and what every CSV file of warren is written with: a row type whose field
//! names are the columns, serialized by the `csv` crate, so a header and its rows come
//! from one definition. Column names are stable; new columns are only ever added at the end.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::RunReport;

/// One row of summary.csv and runs.csv: the field names are the columns, in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SummaryRow {
    pub scenario: String,
    pub run_id: String,
    pub started_at: String,
    pub warren_version: String,
    pub broker_version: String,
    pub broker_nodes: usize,
    pub queue_type: String,
    pub durable: bool,
    pub persistent: bool,
    pub confirm: bool,
    pub max_in_flight: u32,
    pub ack: String,
    pub prefetch: u16,
    pub publishers: u32,
    pub consumers: u32,
    pub size_min_bytes: u64,
    pub size_max_bytes: u64,
    pub target_rate_per_s: Option<Shortest>,
    pub published_per_s: Fixed<1>,
    pub delivered_per_s: Fixed<1>,
    pub confirm_p50_us: u64,
    pub confirm_p90_us: u64,
    pub confirm_p99_us: u64,
    pub confirm_p999_us: u64,
    pub confirm_max_us: u64,
    pub e2e_p50_us: u64,
    pub e2e_p90_us: u64,
    pub e2e_p99_us: u64,
    pub e2e_p999_us: u64,
    pub e2e_max_us: u64,
    pub e2e_sent_p50_us: u64,
    pub e2e_sent_p99_us: u64,
    pub e2e_sent_max_us: u64,
    pub attempted: u64,
    pub confirmed: u64,
    pub delivered: u64,
    pub lost_confirmed: u64,
    pub lost_unconfirmed: u64,
    pub stranded: u64,
    pub dead_lettered: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Unexpected, foreign and corrupted deliveries together.
    pub unexpected: u64,
    /// Faults applied.
    pub faults: usize,
    /// Seconds, "never", or empty when there was nothing to recover from.
    pub worst_recovery_s: String,
    pub cpu_us_per_delivery: Fixed<2>,
    /// pass, fail or interrupted.
    pub verdict: &'static str,
}

impl SummaryRow {
    /// The run's row.
    pub fn of(report: &RunReport) -> Self {
        let setup = &report.setup;
        let t = &report.verdict.totals;
        let (c, e, s) = (
            &report.latency.confirm,
            &report.latency.e2e_intended,
            &report.latency.e2e_sent,
        );
        let worst_recovery_s =
            report
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
        Self {
            scenario: report.scenario.clone(),
            run_id: report.run_id.clone(),
            started_at: report.started_at.clone(),
            warren_version: report.warren_version.clone(),
            broker_version: report.broker_version.clone().unwrap_or_default(),
            broker_nodes: setup.broker_nodes,
            queue_type: setup.queue_type.clone(),
            durable: setup.durable,
            persistent: setup.persistent,
            confirm: setup.confirm,
            max_in_flight: setup.max_in_flight,
            ack: setup.ack.clone(),
            prefetch: setup.prefetch,
            publishers: report.publishers,
            consumers: report.consumers,
            size_min_bytes: setup.size_min_bytes,
            size_max_bytes: setup.size_max_bytes,
            target_rate_per_s: setup.target_rate_per_s.map(Shortest),
            published_per_s: Fixed(report.throughput.published_per_s),
            delivered_per_s: Fixed(report.throughput.delivered_per_s),
            confirm_p50_us: c.p50_us,
            confirm_p90_us: c.p90_us,
            confirm_p99_us: c.p99_us,
            confirm_p999_us: c.p999_us,
            confirm_max_us: c.max_us,
            e2e_p50_us: e.p50_us,
            e2e_p90_us: e.p90_us,
            e2e_p99_us: e.p99_us,
            e2e_p999_us: e.p999_us,
            e2e_max_us: e.max_us,
            e2e_sent_p50_us: s.p50_us,
            e2e_sent_p99_us: s.p99_us,
            e2e_sent_max_us: s.max_us,
            attempted: t.attempted,
            confirmed: t.confirmed,
            delivered: t.delivered,
            lost_confirmed: t.lost_confirmed,
            lost_unconfirmed: t.lost_unconfirmed,
            stranded: t.stranded,
            dead_lettered: t.dead_lettered,
            duplicated: t.duplicated,
            reordered: t.reordered,
            unexpected: t.unexpected + report.verdict.foreign + report.verdict.corrupted,
            faults: report
                .faults
                .faults
                .iter()
                .filter(|f| f.outcome.is_applied())
                .count(),
            worst_recovery_s,
            cpu_us_per_delivery: Fixed(report.harness.cpu_us_per_delivery),
            verdict,
        }
    }
}

/// A number written with `N` decimals.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Fixed<const N: usize>(pub f64);

impl<const N: usize> Serialize for Fixed<N> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{:.*}", N, self.0))
    }
}

/// A number written as Rust displays it: as few digits as it takes ("2000", "12.5").
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Shortest(pub f64);

impl Serialize for Shortest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// A CSV table of `rows` under the header their type's field names make (RFC 4180
/// quoting where a field needs it).
pub fn table<R: Serialize>(rows: impl IntoIterator<Item = R>) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let mut any = false;
    for row in rows {
        writer.serialize(row).expect("rows serialize to memory");
        any = true;
    }
    let text = writer.into_inner().expect("written to memory");
    if any {
        String::from_utf8(text).expect("rows are UTF-8")
    } else {
        String::new()
    }
}

/// The columns a row type makes, in order.
pub fn columns<R: Serialize + Default>() -> Vec<String> {
    let text = table([R::default()]);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    reader
        .headers()
        .expect("a header was written")
        .iter()
        .map(str::to_string)
        .collect()
}

/// A table of `rows`, with the header alone when there is none.
pub fn table_with_header<R: Serialize + Default>(rows: &[R]) -> String {
    if rows.is_empty() {
        columns::<R>().join(",") + "\n"
    } else {
        table(rows)
    }
}

/// summary.csv: the header and the run's row.
pub fn summary(report: &RunReport) -> String {
    table([SummaryRow::of(report)])
}

/// Appends the run's row to `path`, writing the header first when the file is new. An
/// existing file with other columns is left alone (a warning is returned instead).
///
/// # Errors
/// The I/O error when the file cannot be read or written.
pub fn append_to_runs(path: &Path, report: &RunReport) -> std::io::Result<Option<String>> {
    let text = summary(report);
    let (header, row) = text.split_once('\n').expect("a header line and a row");
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if let Some(text) = &existing {
        if text.lines().next() != Some(header) {
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
    file.write_all(row.as_bytes())?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::timeseries::TimeseriesRow;
    use crate::report::{files::EventRow, queues::QueueRow};
    use crate::sweep::files::CapacityRow;

    #[test]
    fn the_run_folder_page_lists_the_columns_of_every_csv_file() {
        let readme = include_str!("../../docs/run-folder.md");
        for (file, header) in [
            ("summary.csv", columns::<SummaryRow>()),
            ("queues.csv", columns::<QueueRow>()),
            ("timeseries.csv", columns::<TimeseriesRow>()),
            ("events.csv", columns::<EventRow>()),
            ("capacity.csv", columns::<CapacityRow>()),
        ] {
            let header = header.join(",");
            assert!(
                readme.lines().any(|l| l == header),
                "docs/run-folder.md does not list the columns of {file}: {header}"
            );
        }
    }

    #[test]
    fn fields_are_quoted_only_where_they_need_it() {
        #[derive(Default, Serialize)]
        struct Row {
            name: String,
            rate: Fixed<1>,
            left: Option<u32>,
        }
        let text = table([
            Row {
                name: "a,\"b\"".into(),
                rate: Fixed(12.34),
                left: None,
            },
            Row {
                name: "plain".into(),
                rate: Fixed(1.0),
                left: Some(3),
            },
        ]);
        assert_eq!(text, "name,rate,left\n\"a,\"\"b\"\"\",12.3,\nplain,1.0,3\n");
        assert_eq!(table_with_header::<Row>(&[]), "name,rate,left\n");
    }
}
