//! Where every message went, through `warren run` on a private node: a network blip shorter
//! than heartbeat detection costs latency (blackhole) or is found and recovered (timeout,
//! which drops bytes mid-stream), and never makes a confirmed message look lost.

use serde_json::Value;

use crate::helpers::{Scratch, output};

/// The reliable recipe at 1,000 msg/s with 10 s heartbeats (a 5 s confirm timeout, so a
/// publisher whose publishes vanished republishes them within the run), and one 2 s network
/// fault. Bound by messages (10 s of them), not by time: a publisher that falls behind on a
/// loaded machine still sends all 10,000.
fn blip(kind: &str, path: &str) -> String {
    format!(
        "name = \"blip\"\nmessages = 10000\n[topology]\nqueue = {{ type = \"classic\", durable = true }}\n[publishers]\ncount = 1\nconfirm = true\npersistent = true\nmandatory = true\nrate = 1000\nheartbeat = \"10s\"\nconfirm_timeout = \"5s\"\n[consumers]\ncount = 1\nack = \"manual\"\nprefetch = 100\nheartbeat = \"10s\"\n[[faults]]\nat = \"2s\"\nkind = \"{kind}\"\npath = \"{path}\"\nstream = \"both\"\nfor = \"2s\"\n"
    )
}

/// Runs `scenario`; returns the exit code, summary.json and the console output.
fn run(scratch: &Scratch, scenario: &str) -> (i32, Value, String) {
    let path = scratch.file("s.toml", scenario);
    let out = scratch.path.join("out");
    let (code, stdout, stderr) = output(scratch.warren_run(&path, &out));
    let summary = std::fs::read_to_string(out.join("summary.json"))
        .unwrap_or_else(|_| panic!("no summary.json; exit {code}\n{stdout}\n{stderr}"));
    (code, serde_json::from_str(&summary).unwrap(), stdout)
}

fn count(summary: &Value, field: &str) -> u64 {
    summary["verdict"]["totals"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no totals.{field}"))
}

fn kinds(summary: &Value) -> Vec<String> {
    summary["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

/// Runs the blip and checks that nothing confirmed or unconfirmed is lost.
fn nothing_lost(name: &str, kind: &str, path: &str) -> (Value, String) {
    let scratch = Scratch::new(name);
    let (code, summary, stdout) = run(&scratch, &blip(kind, path));
    let totals = &summary["verdict"]["totals"];
    eprintln!("{name}: {totals}");
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(
        (
            count(&summary, "attempted"),
            count(&summary, "delivered"),
            count(&summary, "lost_confirmed"),
            count(&summary, "lost_unconfirmed"),
        ),
        (10_000, 10_000, 0, 0),
        "{stdout}"
    );
    scratch.assert_clean();
    (summary, stdout)
}

#[test]
fn a_blackhole_shorter_than_heartbeats_costs_latency_and_no_message() {
    let (summary, stdout) = nothing_lost("blackhole-all", "blackhole", "all");
    assert_eq!(count(&summary, "duplicated"), 0, "{stdout}");
    assert_eq!(count(&summary, "republished"), 0, "{stdout}");
    let events = kinds(&summary);
    for unwanted in ["connection_lost", "stream_hole", "consumer_stalled"] {
        assert!(
            !events.iter().any(|k| k == unwanted),
            "{unwanted}: {events:?}"
        );
    }
    let max_us = summary["latency"]["e2e_intended"]["max_us"]
        .as_u64()
        .unwrap();
    assert!(
        max_us >= 1_500_000,
        "bytes held for 2 s show in the latency: max {max_us} µs"
    );
}

#[test]
fn dropped_deliveries_are_found_and_delivered_again() {
    let (summary, stdout) = nothing_lost("timeout-consumers", "timeout", "consumers");
    let events = kinds(&summary);
    assert!(
        events
            .iter()
            .any(|k| k == "stream_hole" || k == "consumer_stalled"),
        "the consumer noticed its lost deliveries: {events:?}\n{stdout}"
    );
    assert!(
        stdout.contains("warning:") && stdout.contains("kind = \"blackhole\""),
        "the scenario is warned about: {stdout}"
    );
}

#[test]
fn dropped_publishes_are_published_again() {
    nothing_lost("timeout-publishers", "timeout", "publishers");
}

#[test]
fn bytes_dropped_both_ways_on_both_paths_lose_nothing() {
    nothing_lost("timeout-all", "timeout", "all");
}
