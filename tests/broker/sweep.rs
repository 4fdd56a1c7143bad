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
rates = [300, 600, 1200]
step_duration = "5s"
p99_e2e_ms = 1000
"#;

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
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("step 3/3: 1200 msg/s for 5s"), "{stdout}");
    assert!(
        stdout.contains("capacity: 1200 msg/s, the highest target rate that met the objective"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(out.join("capacity.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4, "a header and three rows:\n{csv}");
    let column = |name: &str| rows[0].iter().position(|c| *c == name).unwrap();
    for (row, target) in rows[1..].iter().zip([300.0, 600.0, 1200.0]) {
        assert_eq!(row[column("target_per_s")].parse::<f64>().unwrap(), target);
        let delivered: f64 = row[column("delivered_per_s")].parse().unwrap();
        assert!(
            delivered > target * 0.9 && delivered < target * 1.1,
            "{csv}"
        );
        assert_eq!(row[column("lost_confirmed")], "0");
        assert!(row[column("e2e_p99_us")].parse::<u64>().unwrap() > 0);
        assert!(row[column("cpu_s")].parse::<f64>().unwrap() > 0.0);
        assert_eq!(row[column("verdict")], "met");
    }
    let sweep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(sweep["capacity_per_s"], 1200.0);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Latency against achieved throughput") && html.contains("<polyline"));
    for folder in ["step-01-300", "step-02-600", "step-03-1200"] {
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(folder).join("summary.json")).unwrap(),
        )
        .unwrap();
        assert!(summary["verdict"]["totals"]["delivered"].as_u64().unwrap() > 0);
        assert!(html.contains(&format!("href=\"{folder}/report.html\"")));
    }
    let runs = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert_eq!(runs.lines().count(), 4, "one runs.csv row per step");
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
