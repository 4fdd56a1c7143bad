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

/// Whether a step of sweep.json meets the objective of `THREE_STEPS`, by its own
/// unrounded figures: no confirmed loss, nothing unexpected, p99 end to end at most
/// 1,000 ms, at least 90% of the target delivered.
fn meets_objective(step: &serde_json::Value) -> bool {
    let target = step["target_per_s"].as_f64().unwrap();
    step["lost_confirmed"] == 0
        && step["unexpected"] == 0
        && step["e2e"]["p99_us"].as_u64().unwrap() <= 1_000_000
        && step["delivered_per_s"].as_f64().unwrap() >= target * 0.9
}

/// What the sweep decides is checked against each step's own figures, not against what
/// this machine can do: on a loaded machine a step may miss, and the answer must follow.
#[test]
fn a_sweep_writes_a_row_per_step_a_chart_and_the_answer_its_steps_give() {
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
    let sweep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    let judged = sweep["steps"].as_array().unwrap();
    let steps = judged.len();
    // Two misses in a row end a sweep; otherwise every rate runs.
    assert!((2..=3).contains(&steps), "{sweep:#}");
    let mut capacity = None;
    for (i, (step, target)) in judged.iter().zip(RATES).enumerate() {
        assert_eq!(step["step"], i + 1);
        assert_eq!(step["target_per_s"], target);
        assert!(!step["interrupted"].as_bool().unwrap());
        let delivered = step["delivered_per_s"].as_f64().unwrap();
        assert!(delivered > 0.0 && delivered < target * 1.1, "{step:#}");
        assert!(step["cpu_s"].as_f64().unwrap() > 0.0);
        let met = meets_objective(step);
        assert_eq!(
            step["judgement"]["met"],
            met,
            "step {} against its own figures: {step:#}",
            i + 1
        );
        if met {
            capacity = Some(target);
        }
    }
    if steps == 2 {
        assert!(
            judged.iter().all(|s| s["judgement"]["met"] == false),
            "only two misses in a row end a sweep early: {sweep:#}"
        );
    } else {
        assert!(stdout.contains("step 3/3: 400 msg/s for 5s"), "{stdout}");
    }
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
    // capacity.csv has the same steps, a row each, with the same verdicts.
    let csv = std::fs::read_to_string(out.join("capacity.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), steps + 1, "a header and a row per step:\n{csv}");
    let column = |name: &str| rows[0].iter().position(|c| *c == name).unwrap();
    for (row, step) in rows[1..].iter().zip(judged) {
        let verdict = if step["judgement"]["met"] == true {
            "met"
        } else {
            "missed"
        };
        assert_eq!(row[column("verdict")], verdict, "{csv}");
        assert_eq!(
            row[column("target_per_s")].parse::<f64>().unwrap(),
            step["target_per_s"].as_f64().unwrap()
        );
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
