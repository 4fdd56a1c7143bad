//! report.html: one self-contained page (inline CSS and SVG, no script, no request to
//! anywhere): the verdict, the gates, throughput and latency over time with fault windows
//! shaded, latency by percentile on a log scale, the faults and the events.

use std::fmt::Write as _;

use super::junit::escape;
use super::svg::{Chart, Line, Window};
use super::{Percentiles, RunReport};

const BLUE: &str = "#1f77b4";
const ORANGE: &str = "#ff7f0e";
const GREEN: &str = "#2ca02c";
const RED: &str = "#d62728";
const PURPLE: &str = "#9467bd";

/// The page.
pub fn render(report: &RunReport) -> String {
    let mut out = String::new();
    let verdict = if report.interrupted {
        ("INTERRUPTED", "#777")
    } else if report.passed {
        ("PASS", GREEN)
    } else {
        ("FAIL", RED)
    };
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>warren: {name}</title><style>{CSS}</style></head><body>\n<h1>{name} <span class=\"badge\" style=\"background:{color}\">{word}</span></h1>\n<p class=\"muted\">{description}</p>\n",
        name = escape(&report.scenario),
        color = verdict.1,
        word = verdict.0,
        description = escape(&report.description),
    );
    let _ = writeln!(
        out,
        "<p class=\"muted\">run {} · started {} · warren {} · RabbitMQ {} on {} node(s) · queue {} ({}) · {} publisher(s), {} consumer(s)</p>",
        escape(&report.run_id),
        escape(&report.started_at),
        escape(&report.warren_version),
        escape(report.broker_version.as_deref().unwrap_or("?")),
        report.setup.broker_nodes,
        escape(&report.queue),
        escape(&report.setup.queue_type),
        report.publishers,
        report.consumers
    );
    if report.verdict.verified {
        verdict_table(&mut out, report);
    } else {
        out.push_str("<h2>Verdict</h2><p class=\"fail\">Verification off (--no-verify): counts and latencies only; nothing was checked for loss, duplication or order.</p>\n");
    }
    gates_table(&mut out, report);
    charts(&mut out, report);
    super::html_queues::section(&mut out, report, &fault_windows(report));
    latency_table(&mut out, report);
    faults_table(&mut out, report);
    events_table(&mut out, report);
    out.push_str("</body></html>\n");
    out
}

const CSS: &str = "body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1000px;color:#222}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}\
.badge{color:#fff;border-radius:4px;padding:2px 8px;font-size:15px;vertical-align:middle}\
.muted{color:#666}table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}\
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.fail{color:#d62728;font-weight:bold}.pass{color:#2ca02c}\
svg{display:block;margin:8px 0;background:#fff}";

fn verdict_table(out: &mut String, report: &RunReport) {
    let t = &report.verdict.totals;
    let v = &report.verdict;
    out.push_str(
        "<h2>Verdict</h2><table><tr><th>term</th><th>messages</th><th>meaning</th></tr>\n",
    );
    let rows: [(&str, u64, &str); 14] = [
        (
            "published",
            t.attempted,
            if v.published == t.attempted {
                "distinct messages published"
            } else {
                "copies routed to the queues (a message routed to k queues counts k times)"
            },
        ),
        ("confirmed", t.confirmed, "acknowledged by the broker"),
        (
            "delivered",
            t.delivered,
            "distinct messages delivered to a live consumer",
        ),
        (
            "stranded",
            t.stranded,
            "kept by the broker, never delivered to a live consumer: found by the final read",
        ),
        (
            "dead-lettered",
            t.dead_lettered,
            "moved to the dead-letter queue by the broker (length limit, expiry, delivery limit): never processed",
        ),
        (
            "lost (confirmed)",
            t.lost_confirmed,
            "confirmed, and neither delivered nor found in the queue: the broker broke its promise",
        ),
        (
            "lost (unconfirmed)",
            t.lost_unconfirmed,
            "never confirmed, never delivered: the client's risk",
        ),
        ("recovered", t.recovered, "never confirmed, yet delivered"),
        ("duplicated", t.duplicated, "deliveries beyond the first"),
        (
            "… redelivered",
            t.duplicated_redelivered,
            "flagged redelivered by the broker",
        ),
        (
            "… republished",
            t.duplicated_republished,
            "copies published again after a failure",
        ),
        (
            "reordered",
            t.reordered,
            if v.order_checked {
                "out of order where order is promised"
            } else {
                "not checked (order is promised to a single manual-ack consumer only)"
            },
        ),
        (
            "returned",
            t.returned,
            "unroutable, returned by mandatory: never enqueued",
        ),
        (
            "unexpected, foreign, corrupted",
            t.unexpected + v.foreign + v.corrupted,
            "delivered but not this run's valid messages",
        ),
    ];
    for (term, count, meaning) in rows {
        let class = if count > 0 && (term.starts_with("lost") || term.starts_with("unexpected")) {
            " class=\"fail\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<tr><td>{term}</td><td{class}>{count}</td><td style=\"text-align:left\">{meaning}</td></tr>"
        );
    }
    out.push_str("</table>\n");
    for reason in &report.loss_explanations {
        let _ = writeln!(
            out,
            "<p class=\"fail\">could explain the losses: {}</p>",
            escape(reason)
        );
    }
    for warning in &report.warnings {
        let _ = writeln!(out, "<p class=\"fail\">warning: {}</p>", escape(warning));
    }
    let read = &report.final_read;
    let left = report
        .queue_left
        .map_or("unknown".to_string(), |n| n.to_string());
    if read.ran {
        let _ = writeln!(
            out,
            "<p>final read: {} deliveries in {:.1} s, {} · left in the queue: {left}</p>",
            read.deliveries,
            read.duration_ms as f64 / 1_000.0,
            escape(&read.outcome)
        );
    } else if !read.outcome.is_empty() {
        let _ = writeln!(
            out,
            "<p>final read: not run ({}) · left in the queue: {left}</p>",
            escape(&read.outcome)
        );
    }
    let th = &report.throughput;
    let _ = writeln!(
        out,
        "<p>published {:.0} msg/s over {:.1} s, delivered {}, {:.0} msg/s over the {:.1} s deliveries lasted{} · drain: {} · warren's CPU {:.1} µs per delivery</p>",
        th.published_per_s,
        th.publishing_s,
        escape(&report.delivered_of()),
        th.delivered_per_s,
        th.delivering_s,
        th.target_per_s
            .map_or(String::from(" (as fast as possible)"), |r| format!(
                " (target {r} msg/s)"
            )),
        escape(&report.drain.describe()),
        report.harness.cpu_us_per_delivery
    );
}

fn gates_table(out: &mut String, report: &RunReport) {
    out.push_str(
        "<h2>Gates</h2><table><tr><th>gate</th><th>limit</th><th>actual</th><th>result</th></tr>\n",
    );
    for gate in &report.gates {
        let (class, word) = if gate.passed {
            ("pass", "pass")
        } else {
            ("fail", "FAIL")
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{word}</td></tr>",
            escape(&gate.name),
            escape(&gate.limit),
            escape(&gate.actual)
        );
    }
    out.push_str("</table>\n");
}

/// The applied faults, as shaded windows of the time charts.
fn fault_windows(report: &RunReport) -> Vec<Window> {
    report
        .faults
        .faults
        .iter()
        .filter(|f| f.outcome.is_applied())
        .filter_map(|f| {
            let start = f.start_s? + report.publish_start_s;
            let end = f
                .end_s
                .map_or(start + 0.5, |e| e + report.publish_start_s)
                .max(start + 0.2);
            Some(Window {
                from: start,
                to: end,
                label: f.label.clone(),
            })
        })
        .collect()
}

fn charts(out: &mut String, report: &RunReport) {
    let windows = fault_windows(report);
    let rows = &report.timeseries;
    let x = |r: &super::timeseries::SecondRow| f64::from(r.second) + 0.5;
    let throughput = Chart::new(
        "Throughput (msg/s) over time",
        "seconds since start",
        "msg/s",
    );
    let lines = vec![
        Line::new(
            "published",
            BLUE,
            rows.iter().map(|r| (x(r), r.sent as f64)).collect(),
        ),
        Line::new(
            "confirmed",
            GREEN,
            rows.iter().map(|r| (x(r), r.confirmed as f64)).collect(),
        ),
        Line::new(
            "delivered",
            ORANGE,
            rows.iter().map(|r| (x(r), r.delivered as f64)).collect(),
        ),
    ];
    out.push_str("<h2>Over time</h2>\n");
    out.push_str(&throughput.render(&lines, &windows, false));
    let ms = |us: u64| us as f64 / 1000.0;
    let latency = Chart::new(
        "Latency (ms) over time: p50 and p99 of each second",
        "seconds since start",
        "ms",
    )
    .breaking_after(1.5);
    let with_data = |f: fn(&super::timeseries::SecondRow) -> (u64, u64)| {
        rows.iter()
            .filter(|r| f(r).1 > 0)
            .map(|r| (x(r), ms(f(r).0)))
            .collect::<Vec<_>>()
    };
    let lines = vec![
        Line::new(
            "end to end p50",
            ORANGE,
            with_data(|r| (r.e2e.p50_us, r.e2e.count)),
        ),
        Line::new(
            "end to end p99",
            RED,
            with_data(|r| (r.e2e.p99_us, r.e2e.count)),
        ),
        Line::new(
            "publish→confirm p50",
            BLUE,
            with_data(|r| (r.confirm.p50_us, r.confirm.count)),
        ),
        Line::new(
            "publish→confirm p99",
            PURPLE,
            with_data(|r| (r.confirm.p99_us, r.confirm.count)),
        ),
    ];
    out.push_str(&latency.render(&lines, &windows, true));
    let by_percentile = Chart::new("Latency by percentile (ms, log scales)", "percentile", "ms");
    let curve = |points: &[(f64, u64)]| {
        points
            .iter()
            .map(|(p, us)| (*p, ms(*us).max(0.001)))
            .collect::<Vec<_>>()
    };
    let d = &report.distributions;
    let lines = vec![
        Line::new(
            "end to end (from intended send)",
            RED,
            curve(&d.e2e_intended),
        ),
        Line::new("end to end (from actual send)", ORANGE, curve(&d.e2e_sent)),
        Line::new("publish→confirm", BLUE, curve(&d.confirm)),
    ];
    out.push_str(&by_percentile.render_percentiles(&lines));
}

fn latency_table(out: &mut String, report: &RunReport) {
    out.push_str("<h2>Latency</h2><table><tr><th>latency</th><th>samples</th><th>p50 ms</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>\n");
    let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
    let rows: [(&str, &Percentiles); 3] = [
        ("publish→confirm", &report.latency.confirm),
        (
            "end to end, from intended send (coordinated-omission free)",
            &report.latency.e2e_intended,
        ),
        ("end to end, from actual send", &report.latency.e2e_sent),
    ];
    for (name, p) in rows {
        let _ = writeln!(
            out,
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            p.count,
            ms(p.p50_us),
            ms(p.p90_us),
            ms(p.p99_us),
            ms(p.p999_us),
            ms(p.max_us)
        );
    }
    out.push_str("</table>\n");
}

fn faults_table(out: &mut String, report: &RunReport) {
    if report.faults.faults.is_empty() {
        return;
    }
    out.push_str("<h2>Faults</h2><table><tr><th>fault</th><th>what</th><th>from s</th><th>to s</th><th>first confirm after, s</th><th>first delivery after, s</th><th>outcome</th></tr>\n");
    let s = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    for f in &report.faults.faults {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&f.label),
            escape(&f.action),
            s(f.start_s),
            s(f.end_s),
            s(f.recovery_confirm_s),
            s(f.recovery_delivery_s),
            if f.observable {
                escape(&f.outcome.to_string())
            } else {
                format!(
                    "{}; recovery not observed (ended after publishing)",
                    escape(&f.outcome.to_string())
                )
            }
        );
    }
    out.push_str("</table>\n");
}

fn events_table(out: &mut String, report: &RunReport) {
    const SHOWN: usize = 500;
    let _ = writeln!(
        out,
        "<h2>Events</h2><p class=\"muted\">{} event(s){}</p>",
        report.events.len(),
        if report.events.len() > SHOWN {
            format!("; the first {SHOWN} are shown, events.csv has all")
        } else {
            String::new()
        }
    );
    out.push_str("<table><tr><th>at s</th><th>source</th><th>event</th><th>detail</th></tr>\n");
    for e in report.events.iter().take(SHOWN) {
        let kind = serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr><td>{:.3}</td><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
            e.at_ms / 1000.0,
            escape(&e.source),
            kind,
            escape(&e.described())
        );
    }
    out.push_str("</table>\n");
}
