//! `warren sweep`: steps back to back on one private node, each a full run in its own
//! folder; capacity.csv, sweep.json and a report with the latency-throughput chart.

use crate::helpers::{Scratch, output, warren};

const THREE_STEPS: &str = r#"name = "it-sweep"
[broker]
nodes = 1
[topology]
queue = { type = "classic", durable = true }
[publishers]
count = 1
max_in_flight = 64
size = 100
[consumers]
count = 1
prefetch = 200
multiple_ack_every = 50
[sweep]
rates = [100, 200, 400]
step_duration = "5s"
p99_e2e_ms = 1000
"#;

/// The rates this test asks for.
const RATES: [f64; 3] = [100.0, 200.0, 400.0];

/// Whether a capacity.csv row meets the objective of `THREE_STEPS`, by its own figures
/// (no loss, p99 end to end at most 1,000 ms, at least 90% of the target delivered).
fn meets_objective(target: f64, delivered: f64, e2e_p99_us: u64, lost_confirmed: &str) -> bool {
    lost_confirmed == "0" && e2e_p99_us <= 1_000_000 && delivered >= target * 0.9
}

/// What the sweep decides is checked against each step's own figures, not against what
/// this machine can do: on a loaded machine a step may miss, and the answer must follow.
#[test]
fn a_three_step_sweep_writes_a_row_per_step_a_chart_and_the_answer() {
    // A sweep judges throughput: no cluster, and no TLS node with its fault runs, shares
    // the two cores with it (a node booting beside step 2 once cost it 17% of its rate).
    let scratch = Scratch::several("sweep");
    let scenario = scratch.file("s.toml", THREE_STEPS);
    let out = scratch.path.join("out");
    let mut command = warren();
    command
        .env("TMPDIR", scratch.tmp())
        .args(["sweep", "--progress", "plain", "--out"])
        .arg(&out)
        .arg(&scenario);
    let (code, stdout, stderr) = output(command);
    let csv = std::fs::read_to_string(out.join("capacity.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    let column = |name: &str| rows[0].iter().position(|c| *c == name).unwrap();
    let steps = rows.len() - 1;
    // Two misses in a row end a sweep; otherwise every rate runs.
    assert!(
        (2..=3).contains(&steps),
        "a header and a row per step:\n{csv}"
    );
    let mut capacity = None;
    for (i, (row, target)) in rows[1..].iter().zip(RATES).enumerate() {
        assert_eq!(row[column("step")], (i + 1).to_string(), "{csv}");
        assert_eq!(row[column("target_per_s")].parse::<f64>().unwrap(), target);
        let delivered: f64 = row[column("delivered_per_s")].parse().unwrap();
        assert!(delivered > 0.0 && delivered < target * 1.1, "{csv}");
        let p99: u64 = row[column("e2e_p99_us")].parse().unwrap();
        assert!(p99 > 0, "{csv}");
        assert!(row[column("cpu_s")].parse::<f64>().unwrap() > 0.0);
        let met = meets_objective(target, delivered, p99, row[column("lost_confirmed")]);
        assert_eq!(
            row[column("verdict")],
            if met { "met" } else { "missed" },
            "step {} against its own figures:\n{csv}",
            i + 1
        );
        if met {
            capacity = Some(target);
        }
    }
    if steps == 2 {
        assert!(
            rows[1..].iter().all(|r| r[column("verdict")] == "missed"),
            "only two misses in a row end a sweep early:\n{csv}"
        );
    } else {
        assert!(stdout.contains("step 3/3: 400 msg/s for 5s"), "{stdout}");
    }
    let sweep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    match capacity {
        Some(rate) => {
            assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
            assert!(
                stdout.contains(&format!(
                    "capacity: {rate} msg/s, the highest target rate that met the objective"
                )),
                "{stdout}"
            );
            assert_eq!(sweep["capacity_per_s"], rate);
        }
        None => {
            assert_eq!(code, 1, "no step met the objective: {stdout}\n{stderr}");
            assert!(sweep["capacity_per_s"].is_null(), "{sweep}");
        }
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Latency against achieved throughput") && html.contains("<polyline"));
    for folder in ["step-01-100", "step-02-200", "step-03-400"]
        .into_iter()
        .take(steps)
    {
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(folder).join("summary.json")).unwrap(),
        )
        .unwrap();
        assert!(summary["verdict"]["totals"]["delivered"].as_u64().unwrap() > 0);
        assert!(html.contains(&format!("href=\"{folder}/report.html\"")));
    }
    let runs = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert_eq!(runs.lines().count(), steps + 1, "one runs.csv row per step");
    // `warren report` rebuilds the sweep's page and table from sweep.json.
    std::fs::remove_file(out.join("report.html")).unwrap();
    std::fs::remove_file(out.join("capacity.csv")).unwrap();
    let mut rebuild = warren();
    rebuild.arg("report").arg(&out);
    let (code, stdout, stderr) = output(rebuild);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        std::fs::read_to_string(out.join("report.html")).unwrap(),
        html
    );
    assert_eq!(
        std::fs::read_to_string(out.join("capacity.csv")).unwrap(),
        csv
    );
    scratch.assert_clean();
}
