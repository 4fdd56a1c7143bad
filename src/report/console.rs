//! The verdict, the gates and the key figures as console text.

use std::fmt::Write;

use super::{Percentiles, RunReport};

/// The report as lines of text.
pub fn render(report: &RunReport) -> String {
    let mut out = String::new();
    let t = &report.verdict.totals;
    let v = &report.verdict;
    let _ = writeln!(
        out,
        "\nverdict for {} (run {})",
        report.scenario, report.run_id
    );
    let _ = writeln!(
        out,
        "  published    {:>10}  distinct messages ({} republished copies)",
        t.attempted, t.republished
    );
    if v.confirms {
        let _ = writeln!(
            out,
            "  confirmed    {:>10}  nacked {}, returned {}, indeterminate {}",
            t.confirmed, t.nacked, t.returned, t.indeterminate
        );
    } else {
        let _ = writeln!(
            out,
            "  confirmed    {:>10}  (publisher confirms off; returned {})",
            "-", t.returned
        );
    }
    let _ = writeln!(
        out,
        "  delivered    {:>10}  distinct ({} deliveries in all)",
        t.delivered, v.deliveries
    );
    if !v.verified {
        let _ = writeln!(
            out,
            "  verification off (--no-verify): counts and latencies only; nothing was checked for loss, duplication or order"
        );
        gates_and_figures(&mut out, report);
        return out;
    }
    let _ = writeln!(
        out,
        "  lost (confirmed)    {:>6}  the broker confirmed them and no consumer got them",
        t.lost_confirmed
    );
    let _ = writeln!(
        out,
        "  lost (unconfirmed)  {:>6}  never confirmed, never delivered: the client's risk",
        t.lost_unconfirmed
    );
    if v.confirms {
        let _ = writeln!(
            out,
            "  recovered           {:>6}  never confirmed, yet delivered",
            t.recovered
        );
    }
    let _ = writeln!(
        out,
        "  duplicated          {:>6}  {} redelivered by the broker, {} from republishing",
        t.duplicated, t.duplicated_redelivered, t.duplicated_republished
    );
    let order = if v.order_checked {
        ""
    } else {
        " (not checked: order is only promised to a single consumer with manual acks)"
    };
    let _ = writeln!(out, "  reordered           {:>6}{order}", t.reordered);
    if t.unexpected + v.foreign + v.corrupted > 0 {
        let _ = writeln!(
            out,
            "  unexpected {} · foreign {} · corrupted {}",
            t.unexpected, v.foreign, v.corrupted
        );
    }
    for producer in &report.verdict.producers {
        if !producer.first_lost_confirmed.is_empty() {
            let _ = writeln!(
                out,
                "    publisher {} lost confirmed: {:?}{}",
                producer.producer,
                producer.first_lost_confirmed,
                more(
                    producer.counts.lost_confirmed,
                    producer.first_lost_confirmed.len()
                )
            );
        }
        if !producer.first_lost_unconfirmed.is_empty() {
            let _ = writeln!(
                out,
                "    publisher {} lost unconfirmed: {:?}{}",
                producer.producer,
                producer.first_lost_unconfirmed,
                more(
                    producer.counts.lost_unconfirmed,
                    producer.first_lost_unconfirmed.len()
                )
            );
        }
        if !producer.first_duplicated.is_empty() {
            let seqs: Vec<u32> = producer
                .first_duplicated
                .iter()
                .map(|(seq, _)| *seq)
                .collect();
            let _ = writeln!(
                out,
                "    publisher {} duplicated: {:?}{}",
                producer.producer,
                seqs,
                more(producer.first_duplicated.len() as u64, 20)
            );
        }
    }
    gates_and_figures(&mut out, report);
    out
}

/// Throughput, latencies, harness cost, faults and gates: everything after the counts.
fn gates_and_figures(out: &mut String, report: &RunReport) {
    let th = &report.throughput;
    let target = th
        .target_per_s
        .map_or("as fast as possible".to_string(), |r| {
            format!("target {r} msg/s")
        });
    let _ = writeln!(
        out,
        "throughput: published {:.0} msg/s over {:.1} s, delivered {:.0} msg/s ({target})",
        th.published_per_s, th.publishing_s, th.delivered_per_s
    );
    latency_line(out, "publish→confirm", &report.latency.confirm);
    latency_line(
        out,
        "end to end (from intended send)",
        &report.latency.e2e_intended,
    );
    latency_line(
        out,
        "end to end (from actual send)",
        &report.latency.e2e_sent,
    );
    let _ = writeln!(out, "drain: {}", report.drain.describe());
    faults(out, report);
    let _ = writeln!(
        out,
        "warren itself: {:.2} s CPU ({:.1} µs per delivery), ledger {} KiB",
        report.harness.cpu_user_s + report.harness.cpu_system_s,
        report.harness.cpu_us_per_delivery,
        report.harness.ledger_bytes / 1024
    );
    let _ = writeln!(out, "gates:");
    for gate in &report.gates {
        let _ = writeln!(
            out,
            "  {:4}  {:24} {:>14}  actual {}",
            if gate.passed { "pass" } else { "FAIL" },
            gate.name,
            gate.limit,
            gate.actual
        );
    }
    let _ = writeln!(
        out,
        "{}",
        if report.interrupted {
            "INTERRUPTED"
        } else if !report.verdict.verified && report.passed {
            "PASS (unverified: --no-verify)"
        } else if report.passed {
            "PASS"
        } else {
            "FAIL"
        }
    );
}

fn faults(out: &mut String, report: &RunReport) {
    let f = &report.faults;
    if f.faults.is_empty() {
        return;
    }
    let _ = writeln!(out, "faults (seconds from the start of publishing):");
    let seconds = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{s:.1}"));
    for fault in &f.faults {
        let node = fault.node.map_or(String::new(), |n| format!(" [node {n}]"));
        if fault.outcome != "applied" {
            let _ = writeln!(
                out,
                "  {:14} {}{node}: {}",
                fault.label, fault.action, fault.outcome
            );
            continue;
        }
        let recovery = if fault.observable {
            format!(
                "first confirm after {} s, first delivery after {} s",
                seconds(fault.recovery_confirm_s),
                seconds(fault.recovery_delivery_s)
            )
        } else {
            "not observed (the fault ended after publishing had)".to_string()
        };
        let _ = writeln!(
            out,
            "  {:14} {}{node}  {}–{}  recovery: {recovery}",
            fault.label,
            fault.action,
            seconds(fault.start_s),
            seconds(fault.end_s),
        );
    }
    if let Some(silence) = f.longest_without_confirm {
        let _ = writeln!(
            out,
            "  longest time without a confirm: {:.1} s (from {:.1} s)",
            silence.length_s, silence.start_s
        );
    }
    if let Some(silence) = f.longest_without_delivery {
        let _ = writeln!(
            out,
            "  longest time without a delivery: {:.1} s (from {:.1} s)",
            silence.length_s, silence.start_s
        );
    }
}

fn more(total: u64, shown: usize) -> String {
    if total > shown as u64 {
        format!(" and {} more", total - shown as u64)
    } else {
        String::new()
    }
}

fn latency_line(out: &mut String, name: &str, p: &Percentiles) {
    if p.count == 0 {
        return;
    }
    let ms = |us: u64| us as f64 / 1_000.0;
    let _ = writeln!(
        out,
        "latency {name}: p50 {:.3} ms, p90 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3} ({} samples)",
        ms(p.p50_us),
        ms(p.p90_us),
        ms(p.p99_us),
        ms(p.p999_us),
        ms(p.max_us),
        p.count
    );
}
