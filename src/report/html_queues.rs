//! The report's per-queue section: a table with each queue's node, throughput, latency
//! and verdict, and each queue's deliveries per second in one chart.

use std::fmt::Write as _;

use super::RunReport;
use super::junit::escape;
use super::svg::{Chart, Line, Window};

/// Queues drawn in the chart at most (the table has every one).
const CHARTED: usize = 10;

/// Colors of the queues' lines, in turn.
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// The section, for a run of several queues (nothing for one).
pub fn section(out: &mut String, report: &RunReport, windows: &[Window]) {
    if report.queues.len() < 2 {
        return;
    }
    let _ = writeln!(
        out,
        "<h2>Queues</h2><p class=\"muted\">{} queues; counts are per queue (a message routed to k queues counts k times), and the run's totals are their sum.</p>",
        report.queues.len()
    );
    out.push_str("<table><tr><th>queue</th><th>node</th><th>delivered</th><th>msg/s</th><th>e2e p50 ms</th><th>p99</th><th>p99.9</th><th>lost (confirmed)</th><th>lost (unconfirmed)</th><th>duplicated</th><th>stranded</th><th>dead-lettered</th></tr>\n");
    let ms = |us: u64, count: u64| {
        if count == 0 {
            "-".to_string()
        } else {
            format!("{:.3}", us as f64 / 1000.0)
        }
    };
    for q in &report.queues {
        let t = &q.totals;
        let lost = |n: u64| {
            if n > 0 {
                format!("<td class=\"fail\">{n}</td>")
            } else {
                format!("<td>{n}</td>")
            }
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td>{}{}<td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&q.name),
            escape(q.node.as_deref().unwrap_or("-")),
            t.delivered,
            q.delivered_per_s,
            ms(q.e2e.p50_us, q.e2e.count),
            ms(q.e2e.p99_us, q.e2e.count),
            ms(q.e2e.p999_us, q.e2e.count),
            lost(t.lost_confirmed),
            lost(t.lost_unconfirmed),
            t.duplicated,
            t.stranded,
            t.dead_lettered
        );
    }
    out.push_str("</table>\n");
    let title = if report.queues.len() > CHARTED {
        format!("Delivered per second, the first {CHARTED} queues")
    } else {
        "Delivered per second, per queue".to_string()
    };
    let chart = Chart::new(&title, "seconds since start", "msg/s");
    let lines: Vec<Line> = report
        .queues
        .iter()
        .take(CHARTED)
        .enumerate()
        .map(|(i, q)| {
            Line::new(
                &q.name,
                PALETTE[i % PALETTE.len()],
                q.delivered_by_second
                    .iter()
                    .enumerate()
                    .map(|(second, n)| (second as f64 + 0.5, *n as f64))
                    .collect(),
            )
        })
        .collect();
    out.push_str(&chart.render(&lines, windows, false));
}
