//! `warren compare RUN_A RUN_B`: two runs side by side with their differences, and a
//! regression check for CI.

use crate::cli::CompareArgs;
use crate::exit::Exit;
use crate::report::RunReport;

/// One compared figure.
struct Row {
    name: &'static str,
    a: f64,
    b: f64,
    /// True when a higher value is better.
    higher_is_better: bool,
}

/// Prints the comparison; exits 1 on a regression beyond `--fail-on-regression`.
///
/// # Errors
/// A usage error (exit 2) when a folder holds no summary.json.
pub fn compare(args: &CompareArgs) -> anyhow::Result<Exit> {
    let a = super::report::load(&args.baseline)?;
    let b = super::report::load(&args.candidate)?;
    let rows = rows(&a, &b);
    crate::say!(
        "{:<34} {:>14} {:>14} {:>10}",
        "",
        short(&a),
        short(&b),
        "change"
    );
    for row in &rows {
        let change = percent_change(row.a, row.b).map_or("-".to_string(), |c| format!("{c:+.1}%"));
        crate::say!(
            "{:<34} {:>14} {:>14} {:>10}",
            row.name,
            figure(row.a),
            figure(row.b),
            change
        );
    }
    crate::say!("{:<34} {:>14} {:>14}", "verdict", verdict(&a), verdict(&b));
    let Some(limit) = args.fail_on_regression else {
        return Ok(Exit::Success);
    };
    let mut regressions = Vec::new();
    for row in rows
        .iter()
        .filter(|r| matches!(r.name, "delivered msg/s" | "end to end p99 (ms)"))
    {
        if let Some(change) = percent_change(row.a, row.b) {
            let worse = if row.higher_is_better {
                -change
            } else {
                change
            };
            if worse > limit {
                regressions.push(format!("{} {:.1}% worse (limit {limit}%)", row.name, worse));
            }
        }
    }
    if regressions.is_empty() {
        crate::say!("no regression beyond {limit}%");
        Ok(Exit::Success)
    } else {
        for regression in &regressions {
            crate::say!("REGRESSION: {regression}");
        }
        Ok(Exit::GateFailed)
    }
}

fn rows(a: &RunReport, b: &RunReport) -> Vec<Row> {
    let ms = |us: u64| us as f64 / 1000.0;
    let row = |name, a, b, higher_is_better| Row {
        name,
        a,
        b,
        higher_is_better,
    };
    vec![
        row(
            "published msg/s",
            a.throughput.published_per_s,
            b.throughput.published_per_s,
            true,
        ),
        row(
            "delivered msg/s",
            a.throughput.delivered_per_s,
            b.throughput.delivered_per_s,
            true,
        ),
        row(
            "end to end p50 (ms)",
            ms(a.latency.e2e_intended.p50_us),
            ms(b.latency.e2e_intended.p50_us),
            false,
        ),
        row(
            "end to end p99 (ms)",
            ms(a.latency.e2e_intended.p99_us),
            ms(b.latency.e2e_intended.p99_us),
            false,
        ),
        row(
            "end to end p99.9 (ms)",
            ms(a.latency.e2e_intended.p999_us),
            ms(b.latency.e2e_intended.p999_us),
            false,
        ),
        row(
            "end to end max (ms)",
            ms(a.latency.e2e_intended.max_us),
            ms(b.latency.e2e_intended.max_us),
            false,
        ),
        row(
            "publish→confirm p50 (ms)",
            ms(a.latency.confirm.p50_us),
            ms(b.latency.confirm.p50_us),
            false,
        ),
        row(
            "publish→confirm p99 (ms)",
            ms(a.latency.confirm.p99_us),
            ms(b.latency.confirm.p99_us),
            false,
        ),
        row(
            "lost (confirmed)",
            a.verdict.totals.lost_confirmed as f64,
            b.verdict.totals.lost_confirmed as f64,
            false,
        ),
        row(
            "lost (unconfirmed)",
            a.verdict.totals.lost_unconfirmed as f64,
            b.verdict.totals.lost_unconfirmed as f64,
            false,
        ),
        row(
            "duplicated",
            a.verdict.totals.duplicated as f64,
            b.verdict.totals.duplicated as f64,
            false,
        ),
        row(
            "warren CPU per delivery (µs)",
            a.harness.cpu_us_per_delivery,
            b.harness.cpu_us_per_delivery,
            false,
        ),
    ]
}

/// (b − a) / a in percent; none when a is zero.
fn percent_change(a: f64, b: f64) -> Option<f64> {
    (a != 0.0).then(|| (b - a) / a * 100.0)
}

fn figure(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e12 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

fn short(report: &RunReport) -> String {
    format!(
        "{}:{}",
        report.scenario.chars().take(8).collect::<String>(),
        &report.run_id[..6.min(report.run_id.len())]
    )
}

fn verdict(report: &RunReport) -> &'static str {
    if report.interrupted {
        "interrupted"
    } else if report.passed {
        "pass"
    } else {
        "fail"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_relative_to_the_baseline() {
        assert_eq!(percent_change(100.0, 80.0), Some(-20.0));
        assert_eq!(percent_change(0.0, 5.0), None);
    }
}
