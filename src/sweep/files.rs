//! A sweep's files: capacity.csv (one row per step) and report.html (the answer, the
//! steps, and latency percentiles against achieved throughput). Column names are stable;
//! new columns are only ever added at the end.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::{StepResult, SweepReport};
use crate::report::csv::{Fixed, Shortest};
use crate::report::junit::escape;
use crate::report::svg::{Chart, Line};
use crate::scenario::ReportFormat;

/// One row of capacity.csv: the field names are the columns, in order. Latencies in µs,
/// rates in msg/s.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CapacityRow {
    pub step: usize,
    pub target_per_s: Shortest,
    pub published_per_s: Fixed<1>,
    pub delivered_per_s: Fixed<1>,
    pub confirm_p50_us: u64,
    pub confirm_p99_us: u64,
    pub confirm_p999_us: u64,
    pub e2e_p50_us: u64,
    pub e2e_p99_us: u64,
    pub e2e_p999_us: u64,
    pub attempted: u64,
    pub delivered: u64,
    pub lost_confirmed: u64,
    pub lost_unconfirmed: u64,
    pub duplicated: u64,
    pub cpu_s: Fixed<3>,
    pub cpu_us_per_delivery: Fixed<2>,
    pub verdict: &'static str,
    /// Why a step missed, separated by "; ".
    pub reasons: String,
}

impl CapacityRow {
    /// The row of one step.
    pub fn of(s: &StepResult) -> Self {
        Self {
            step: s.step,
            target_per_s: Shortest(s.target_per_s),
            published_per_s: Fixed(s.published_per_s),
            delivered_per_s: Fixed(s.delivered_per_s),
            confirm_p50_us: s.confirm.p50_us,
            confirm_p99_us: s.confirm.p99_us,
            confirm_p999_us: s.confirm.p999_us,
            e2e_p50_us: s.e2e.p50_us,
            e2e_p99_us: s.e2e.p99_us,
            e2e_p999_us: s.e2e.p999_us,
            attempted: s.attempted,
            delivered: s.delivered,
            lost_confirmed: s.lost_confirmed,
            lost_unconfirmed: s.lost_unconfirmed,
            duplicated: s.duplicated,
            cpu_s: Fixed(s.cpu_s),
            cpu_us_per_delivery: Fixed(s.cpu_us_per_delivery),
            verdict: verdict_word(s),
            reasons: s.judgement.reasons.join("; "),
        }
    }
}

/// capacity.csv: a header and one row per step that ran.
pub fn csv(report: &SweepReport) -> String {
    let rows: Vec<CapacityRow> = report.steps.iter().map(CapacityRow::of).collect();
    crate::report::csv::table_with_header(&rows)
}

/// The steps as a console table.
pub fn table(report: &SweepReport) -> String {
    let mut out = format!(
        "{:>4}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>6}  {:>7}  verdict\n",
        "step", "target/s", "publ/s", "deliv/s", "p50 ms", "p99 ms", "p99.9 ms", "lost", "cpu µs"
    );
    let ms = |us: u64| us as f64 / 1_000.0;
    for s in &report.steps {
        let _ = writeln!(
            out,
            "{:>4}  {:>9}  {:>9.0}  {:>9.0}  {:>9.2}  {:>9.2}  {:>9.2}  {:>6}  {:>7.1}  {}",
            s.step,
            s.target_per_s,
            s.published_per_s,
            s.delivered_per_s,
            ms(s.e2e.p50_us),
            ms(s.e2e.p99_us),
            ms(s.e2e.p999_us),
            s.lost_confirmed,
            s.cpu_us_per_delivery,
            verdict_word(s)
        );
    }
    out.trim_end().to_string()
}

fn verdict_word(step: &StepResult) -> &'static str {
    if step.interrupted {
        "interrupted"
    } else if step.judgement.met {
        "met"
    } else {
        "missed"
    }
}

const CSS: &str = "body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1000px;color:#222}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}\
.muted{color:#666}table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}\
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.missed{color:#d62728;font-weight:bold}.met{color:#2ca02c}\
.answer{font-size:17px}svg{display:block;margin:8px 0;background:#fff}";

/// report.html of a sweep: one self-contained page (inline CSS and SVG, no script).
pub fn html(report: &SweepReport) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>warren sweep: {name}</title><style>{CSS}</style></head><body>\n<h1>{name}: capacity sweep</h1>\n<p class=\"muted\">{description}</p>\n",
        name = escape(&report.scenario),
        description = escape(&report.description),
    );
    let _ = writeln!(
        out,
        "<p class=\"muted\">started {} · warren {} · RabbitMQ {} on {} node(s) · {} queue · {} publisher(s), {} consumer(s) · {} B bodies · {} s per step</p>",
        escape(&report.started_at),
        escape(&report.warren_version),
        escape(report.broker_version.as_deref().unwrap_or("?")),
        report.broker_nodes,
        escape(&report.queue_type),
        report.publishers,
        report.consumers,
        escape(&report.body_bytes),
        report.step_duration_s,
    );
    let _ = writeln!(
        out,
        "<p class=\"answer\"><b>{}</b></p>",
        escape(&report.answer())
    );
    if let Some(reason) = &report.stopped_early {
        let _ = writeln!(out, "<p class=\"muted\">{}</p>", escape(reason));
    }
    out.push_str(&chart(report));
    steps_table(&mut out, report);
    out.push_str("</body></html>\n");
    out
}

/// Latency percentiles (ms, log scale) against delivered throughput, one point per step,
/// with the objective as a flat line.
fn chart(report: &SweepReport) -> String {
    let steps: Vec<&StepResult> = report.steps.iter().filter(|s| s.e2e.count > 0).collect();
    let points = |value: fn(&StepResult) -> u64| -> Vec<(f64, f64)> {
        steps
            .iter()
            .map(|s| (s.delivered_per_s, value(s) as f64 / 1_000.0))
            .collect()
    };
    let mut lines = vec![
        Line::new("e2e p50", "#1f77b4", points(|s| s.e2e.p50_us)).with_markers(),
        Line::new("e2e p99", "#ff7f0e", points(|s| s.e2e.p99_us)).with_markers(),
        Line::new("e2e p99.9", "#d62728", points(|s| s.e2e.p999_us)).with_markers(),
        Line::new("confirm p99", "#9467bd", points(|s| s.confirm.p99_us)).with_markers(),
    ];
    lines.retain(|l| l.points.iter().any(|(_, y)| *y > 0.0));
    if let Some(limit) = report.objective.p99_e2e_ms {
        let right = steps
            .iter()
            .map(|s| s.delivered_per_s)
            .fold(0.0f64, f64::max);
        lines.push(Line::new(
            "objective (p99)",
            "#2ca02c",
            vec![(0.0, limit), (right, limit)],
        ));
    }
    Chart::new(
        "Latency against achieved throughput (one point per step)",
        "delivered msg/s",
        "ms (log)",
    )
    .render(&lines, &[], true)
}

fn steps_table(out: &mut String, report: &SweepReport) {
    out.push_str("<h2>Steps</h2><table><tr><th>step</th><th>target msg/s</th><th>published msg/s</th><th>delivered msg/s</th><th>e2e p50 ms</th><th>e2e p99 ms</th><th>e2e p99.9 ms</th><th>confirm p50 ms</th><th>confirm p99 ms</th><th>lost (confirmed)</th><th>duplicated</th><th>warren CPU µs/msg</th><th>verdict</th></tr>\n");
    let ms = |us: u64| format!("{:.2}", us as f64 / 1_000.0);
    for s in &report.steps {
        let word = verdict_word(s);
        let _ = writeln!(
            out,
            "<tr><td><a href=\"{folder}/report.html\">{step}</a></td><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td class=\"{word}\" title=\"{reasons}\">{word}</td></tr>",
            s.target_per_s,
            s.published_per_s,
            s.delivered_per_s,
            ms(s.e2e.p50_us),
            ms(s.e2e.p99_us),
            ms(s.e2e.p999_us),
            ms(s.confirm.p50_us),
            ms(s.confirm.p99_us),
            s.lost_confirmed,
            s.duplicated,
            s.cpu_us_per_delivery,
            folder = escape(&s.folder),
            step = s.step,
            reasons = escape(&s.judgement.reasons.join("; ")),
        );
    }
    out.push_str("</table>\n");
    let missed: Vec<&StepResult> = report.steps.iter().filter(|s| !s.judgement.met).collect();
    if !missed.is_empty() {
        out.push_str("<ul>");
        for s in missed {
            let _ = write!(
                out,
                "<li>step {} ({} msg/s): {}</li>",
                s.step,
                s.target_per_s,
                escape(&s.judgement.describe())
            );
        }
        out.push_str("</ul>\n");
    }
}

/// One line on a finished step.
pub fn step_line(step: &StepResult) -> String {
    let ms = |us: u64| us as f64 / 1_000.0;
    format!(
        "published {:.0}/s, delivered {:.0}/s; e2e p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms; lost (confirmed) {}; warren {:.1} µs CPU/msg: {}",
        step.published_per_s,
        step.delivered_per_s,
        ms(step.e2e.p50_us),
        ms(step.e2e.p99_us),
        ms(step.e2e.p999_us),
        step.lost_confirmed,
        step.cpu_us_per_delivery,
        step.judgement.describe()
    )
}

/// capacity.csv (csv), sweep.json (json) and report.html (html), as the formats ask.
///
/// # Errors
/// The I/O error of the first file that could not be written.
pub fn write(dir: &Path, report: &SweepReport, formats: &[ReportFormat]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if formats.contains(&ReportFormat::Csv) {
        std::fs::write(dir.join("capacity.csv"), csv(report))?;
    }
    if formats.contains(&ReportFormat::Json) {
        let json = serde_json::to_string_pretty(report).expect("a sweep report serializes");
        std::fs::write(dir.join("sweep.json"), json + "\n")?;
    }
    if formats.contains(&ReportFormat::Html) {
        std::fs::write(dir.join("report.html"), html(report))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Percentiles;
    use crate::sweep::{Judgement, Objective};

    fn report() -> SweepReport {
        let step = |n: usize, target: f64, met: bool| StepResult {
            step: n,
            target_per_s: target,
            published_per_s: target,
            delivered_per_s: target * 0.99,
            confirm: Percentiles {
                count: 10,
                p50_us: 900,
                p99_us: 2_000,
                ..Percentiles::default()
            },
            e2e: Percentiles {
                count: 10,
                p50_us: 400,
                p99_us: if met { 3_000 } else { 90_000 },
                p999_us: 100_000,
                ..Percentiles::default()
            },
            attempted: 10,
            delivered: 10,
            lost_confirmed: 0,
            lost_unconfirmed: 0,
            duplicated: 0,
            unexpected: 0,
            cpu_s: 0.5,
            cpu_us_per_delivery: 12.5,
            interrupted: false,
            folder: format!("step-{n:02}-{target}"),
            judgement: Judgement {
                met,
                reasons: if met {
                    vec![]
                } else {
                    vec!["p99 end-to-end 90 ms > 50 ms".into()]
                },
            },
        };
        SweepReport::example(
            vec![step(1, 1000.0, true), step(2, 2000.0, false)],
            Objective {
                p99_e2e_ms: Some(50.0),
            },
        )
    }

    #[test]
    fn capacity_csv_has_a_row_per_step_with_every_column() {
        let text = csv(&report());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0].split(',').count(),
            crate::report::csv::columns::<CapacityRow>().len()
        );
        assert!(lines[1].starts_with("1,1000,1000.0,990.0,900,2000,0,400,3000,100000,"));
        assert!(lines[1].ends_with(",0.500,12.50,met,"), "{}", lines[1]);
        assert!(lines[2].ends_with(",missed,p99 end-to-end 90 ms > 50 ms"));
    }

    #[test]
    fn the_page_has_the_answer_a_chart_and_links_to_the_steps() {
        let page = html(&report());
        assert!(page.contains("sweep &lt;test&gt;"));
        assert!(page.contains("capacity: 1000 msg/s"));
        assert!(page.contains("<polyline") && page.contains("objective (p99)"));
        assert!(page.contains("href=\"step-02-2000/report.html\""));
    }
}
