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
        v.published, t.republished
    );
    if v.published != t.attempted {
        let _ = writeln!(
            out,
            "  routed       {:>10}  queue copies: each count below is per queue",
            t.attempted
        );
    }
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
        "  stranded            {:>6}  kept by the broker, never delivered to a live consumer",
        t.stranded
    );
    let _ = writeln!(
        out,
        "  lost (confirmed)    {:>6}  confirmed, and neither delivered nor found in the queue",
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
    if v.confirms || t.dead_lettered > 0 {
        dead_letter_line(&mut out, t);
    }
    for reason in &report.loss_explanations {
        let _ = writeln!(out, "  could explain the losses: {reason}");
    }
    for warning in &report.warnings {
        let _ = writeln!(out, "  warning: {warning}");
    }
    final_read_line(&mut out, report);
    queues_table(&mut out, report);
    for producer in &report.verdict.producers {
        if !producer.first_stranded.is_empty() {
            let _ = writeln!(
                out,
                "    publisher {} stranded: {:?}{}",
                producer.producer,
                producer.first_stranded,
                more(producer.counts.stranded, producer.first_stranded.len())
            );
        }
        if !producer.first_dead_lettered.is_empty() {
            let _ = writeln!(
                out,
                "    publisher {} dead-lettered: {:?}{}",
                producer.producer,
                producer.first_dead_lettered,
                more(
                    producer.counts.dead_lettered,
                    producer.first_dead_lettered.len()
                )
            );
        }
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
        "throughput: published {:.0} msg/s over {:.1} s ({target}); delivered {}, {:.0} msg/s over the {:.1} s deliveries lasted",
        th.published_per_s,
        th.publishing_s,
        report.delivered_of(),
        th.delivered_per_s,
        th.delivering_s
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
        if !fault.outcome.is_applied() {
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

/// Queues shown on the console at most; queues.csv has every one.
const QUEUES_SHOWN: usize = 12;

/// One line per queue, for a run of several: those with something wrong first.
fn queues_table(out: &mut String, report: &RunReport) {
    if report.queues.len() < 2 {
        return;
    }
    let _ = writeln!(
        out,
        "  {} queues (counts are per queue: a message routed to k queues counts k times):",
        report.queues.len()
    );
    let name_width = report
        .queues
        .iter()
        .map(|q| q.name.len())
        .max()
        .unwrap_or(0);
    let node_width = report
        .queues
        .iter()
        .map(|q| q.node.as_deref().map_or(1, str::len))
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "    {:<name_width$} {:<node_width$} {:>10} {:>9} {:>9} {:>6} {:>6} {:>8}",
        "queue", "node", "delivered", "msg/s", "p99 ms", "lost", "dup", "stranded"
    );
    let trouble = |q: &super::queues::QueueReport| {
        let t = &q.totals;
        t.lost_confirmed + t.lost_unconfirmed + t.duplicated + t.stranded + t.dead_lettered
    };
    let mut order: Vec<&super::queues::QueueReport> = report.queues.iter().collect();
    order.sort_by_key(|q| std::cmp::Reverse(trouble(q) > 0));
    for q in order.iter().take(QUEUES_SHOWN) {
        let t = &q.totals;
        let _ = writeln!(
            out,
            "    {:<name_width$} {:<node_width$} {:>10} {:>9.1} {:>9} {:>6} {:>6} {:>8}",
            q.name,
            q.node.as_deref().unwrap_or("-"),
            t.delivered,
            q.delivered_per_s,
            q.e2e
                .p99_ms()
                .map_or("-".to_string(), |ms| format!("{ms:.2}")),
            t.lost_confirmed + t.lost_unconfirmed,
            t.duplicated,
            t.stranded
        );
    }
    if report.queues.len() > QUEUES_SHOWN {
        let _ = writeln!(
            out,
            "    … {} more in queues.csv",
            report.queues.len() - QUEUES_SHOWN
        );
    }
}

/// What the final read found and what the queue held at the end.
fn final_read_line(out: &mut String, report: &RunReport) {
    let read = &report.final_read;
    let left = report
        .queue_left
        .map_or("unknown".to_string(), |n| n.to_string());
    if read.ran {
        let others = match read.consumers_left {
            Some(n) if n > 1 => format!(", {} other consumer(s) still held deliveries", n - 1),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  final read: {} deliveries in {:.1} s, {}{others}; left in the queue: {left}",
            read.deliveries,
            read.duration_ms as f64 / 1_000.0,
            read.outcome
        );
    } else if !read.outcome.is_empty() {
        let _ = writeln!(
            out,
            "  final read: not run ({}); left in the queue: {left}",
            read.outcome
        );
    }
}

/// Dead-lettered messages and why.
fn dead_letter_line(out: &mut String, t: &crate::ledger::Counts) {
    let split: Vec<String> = [
        ("maxlen", t.dead_lettered_maxlen),
        ("expired", t.dead_lettered_expired),
        ("rejected", t.dead_lettered_rejected),
        ("delivery_limit", t.dead_lettered_delivery_limit),
        ("other", t.dead_lettered_other),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(reason, n)| format!("{reason} {n}"))
    .collect();
    let why = if split.is_empty() {
        String::new()
    } else {
        format!(" ({})", split.join(", "))
    };
    let _ = writeln!(
        out,
        "  dead-lettered       {:>6}  moved aside by the broker, never processed{why}",
        t.dead_lettered
    );
}
