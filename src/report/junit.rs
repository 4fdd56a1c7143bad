//! junit.xml for CI: a test suite per run, a test case per gate and one for delivery, and
//! the numbers in every failure.

use std::fmt::Write as _;

use super::RunReport;

/// The gates that judge delivery (the others judge latency, throughput, recovery).
const DELIVERY_GATES: &[&str] = &[
    "max_lost_confirmed",
    "max_lost_unconfirmed",
    "max_duplicates",
    "max_reordered",
    "unexpected (always)",
    "corrupted (always)",
];

/// junit.xml of a run.
pub fn render(report: &RunReport) -> String {
    let suite = format!("warren.{}", report.scenario);
    let t = &report.verdict.totals;
    let accounting = format!(
        "published {}, confirmed {}, delivered {}, lost_confirmed {}, lost_unconfirmed {}, stranded {}, dead_lettered {}, recovered {}, duplicated {} (redelivered {}, republished {}), reordered {}, returned {}, unexpected {}, foreign {}, corrupted {}",
        t.attempted,
        t.confirmed,
        t.delivered,
        t.lost_confirmed,
        t.lost_unconfirmed,
        t.stranded,
        t.dead_lettered,
        t.recovered,
        t.duplicated,
        t.duplicated_redelivered,
        t.duplicated_republished,
        t.reordered,
        t.returned,
        t.unexpected,
        report.verdict.foreign,
        report.verdict.corrupted
    );
    let mut cases = Vec::new();
    let delivery_failures: Vec<String> = report
        .gates
        .iter()
        .filter(|g| !g.passed && DELIVERY_GATES.contains(&g.name.as_str()))
        .map(|g| format!("{} {} (actual {})", g.name, g.limit, g.actual))
        .collect();
    cases.push(case(
        &suite,
        "delivery",
        (!delivery_failures.is_empty()).then(|| (delivery_failures.join("; "), accounting.clone())),
        Some(&accounting),
    ));
    if report.interrupted {
        cases.push(case(
            &suite,
            "run",
            Some((
                "interrupted before the end".into(),
                "the run was stopped (Ctrl-C or SIGTERM); what was measured is reported".into(),
            )),
            None,
        ));
    }
    for gate in &report.gates {
        let failure = (!gate.passed).then(|| {
            (
                format!("{} {}: actual {}", gate.name, gate.limit, gate.actual),
                format!("limit {}, actual {}", gate.limit, gate.actual),
            )
        });
        cases.push(case(&suite, &format!("gate {}", gate.name), failure, None));
    }
    let failures = cases.iter().filter(|c| c.1).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"warren\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{:.3}\">",
        cases.len(),
        report.elapsed_s
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{:.3}\" timestamp=\"{}\">",
        escape(&suite),
        cases.len(),
        report.elapsed_s,
        escape(report.started_at.trim_end_matches('Z'))
    );
    let _ = writeln!(out, "    <properties>");
    for (name, value) in [
        ("run_id", report.run_id.clone()),
        ("warren_version", report.warren_version.clone()),
        (
            "broker_version",
            report.broker_version.clone().unwrap_or_default(),
        ),
        (
            "delivered_per_s",
            format!("{:.1}", report.throughput.delivered_per_s),
        ),
        ("e2e_p99_us", report.latency.e2e_intended.p99_us.to_string()),
    ] {
        let _ = writeln!(
            out,
            "      <property name=\"{name}\" value=\"{}\"/>",
            escape(&value)
        );
    }
    let _ = writeln!(out, "    </properties>");
    for (text, _) in &cases {
        out.push_str(text);
    }
    let _ = writeln!(out, "  </testsuite>\n</testsuites>");
    out
}

/// One test case; the bool says whether it failed.
fn case(
    suite: &str,
    name: &str,
    failure: Option<(String, String)>,
    output: Option<&str>,
) -> (String, bool) {
    let mut out = format!(
        "    <testcase classname=\"{}\" name=\"{}\" time=\"0\">\n",
        escape(suite),
        escape(name)
    );
    let failed = failure.is_some();
    if let Some((message, body)) = failure {
        let _ = writeln!(
            out,
            "      <failure message=\"{}\" type=\"gate\">{}</failure>",
            escape(&message),
            escape(&body)
        );
    }
    if let Some(output) = output {
        let _ = writeln!(out, "      <system-out>{}</system-out>", escape(output));
    }
    out.push_str("    </testcase>\n");
    (out, failed)
}

/// XML text and attribute escaping.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}
