//! `warren run`: brings up a private node, connects, reports, tears down: on a normal end,
//! on Ctrl-C, and with external brokers that are unreachable or with no install at all.

use std::time::Duration;

use crate::helpers::{Running, Scratch, output, warren};

const ONE_NODE: &str =
    "name = \"it-run\"\nduration = \"2s\"\n[broker]\nnodes = 1\n[publishers]\nrate = 500\n";

#[test]
fn run_brings_up_a_node_reports_its_version_and_tears_it_down() {
    let scratch = Scratch::new("run");
    let scenario = scratch.file("s.toml", ONE_NODE);
    let out = scratch.path.join("out");
    let command = scratch.warren_run(&scenario, &out);
    let (code, stdout, stderr) = output(command);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    // The release warren read from the install's files is the one the node announces.
    let version = crate::helpers::installed_rabbitmq_version();
    assert!(stdout.contains(&format!("RabbitMQ {version}")), "{stdout}");
    assert!(
        stdout.contains("connected with amqprs to 1 of 1 nodes"),
        "{stdout}"
    );
    assert!(stdout.contains("broker torn down"), "{stdout}");
    let broker: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("broker.json")).unwrap()).unwrap();
    assert_eq!(broker["connected"], 1);
    assert_eq!(broker["nodes"][0]["version"], version.as_str());
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let (header, row) = summary.split_once('\n').unwrap();
    let column = header
        .split(',')
        .position(|c| c == "broker_version")
        .unwrap();
    assert_eq!(
        row.split(',').nth(column),
        Some(version.as_str()),
        "{summary}"
    );
    assert!(
        broker["nodes"][0]["uri"]
            .as_str()
            .unwrap()
            .contains("guest:****@127.0.0.1:")
    );
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["name"], "it-run");
    scratch.assert_clean();
}

#[test]
fn quiet_prints_nothing() {
    let scratch = Scratch::new("quiet");
    let mut command = warren();
    command
        .current_dir(&scratch.path)
        .env("TMPDIR", scratch.tmp())
        .args(["run", "--quiet", "--out", "out"])
        .arg(scratch.file("s.toml", ONE_NODE));
    let (code, stdout, stderr) = output(command);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "");
    assert!(scratch.path.join("out/broker.json").exists());
    scratch.assert_clean();
}

#[test]
fn ctrl_c_while_the_broker_starts_leaves_nothing_behind() {
    let scratch = Scratch::new("run-sigint");
    let scenario = scratch.file("s.toml", ONE_NODE);
    let command = scratch.warren_run(&scenario, &scratch.path.join("out"));
    let mut running = Running::spawn(command);
    running.wait_for_line("scenario it-run", Duration::from_secs(60));
    // Interrupt once the Erlang VM exists, while the node boots.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !crate::helpers::processes_mentioning(&scratch.tmp())
        .iter()
        .any(|(_, cmd)| cmd.contains("beam"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no Erlang VM appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    running.signal("INT");
    let (code, lines) = running.finish(Duration::from_secs(300));
    assert_eq!(code, 130, "{lines:#?}");
    scratch.assert_clean();
}

#[test]
fn ctrl_c_during_the_workload_writes_what_was_measured_and_cleans_up() {
    let scratch = Scratch::new("run-sigint-workload");
    let scenario = scratch.file(
        "s.toml",
        "name = \"it-long\"\nduration = \"60s\"\n[publishers]\nrate = 500\n",
    );
    let out = scratch.path.join("out");
    let mut running = Running::spawn(scratch.warren_run(&scenario, &out));
    running.wait_for_line("publishing sent", Duration::from_secs(600));
    running.signal("INT");
    let (code, lines) = running.finish(Duration::from_secs(300));
    assert_eq!(code, 130, "{lines:#?}");
    let verdict: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("verdict.json")).unwrap()).unwrap();
    assert_eq!(verdict["interrupted"], true);
    assert!(verdict["verdict"]["totals"]["delivered"].as_u64().unwrap() > 0);
    assert!(lines.iter().any(|l| l == "INTERRUPTED"), "{lines:#?}");
    scratch.assert_clean();
}

#[test]
fn a_breached_gate_exits_1_with_the_numbers() {
    let scratch = Scratch::new("gate");
    let scenario = scratch.file(
        "s.toml",
        "name = \"it-gate\"\nduration = \"2s\"\n[publishers]\nrate = 200\n[gates]\np99_e2e_ms = 0.001\n",
    );
    let out = scratch.path.join("out");
    let (code, stdout, stderr) = output(scratch.warren_run(&scenario, &out));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("FAIL  p99_e2e_ms"), "{stdout}");
    let verdict: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("verdict.json")).unwrap()).unwrap();
    assert_eq!(verdict["passed"], false);
    assert!(out.join("events.json").exists());
    scratch.assert_clean();
}

/// `--no-verify`: the ledgers are off, counts and latencies stay, the drain still waits
/// for every confirmed message, and the report says nothing was checked. Bound by
/// messages, so a publisher behind its pace on a loaded machine still sends all 1,000.
#[test]
fn no_verify_counts_and_times_without_ledgers() {
    let scratch = Scratch::new("no-verify");
    let scenario = scratch.file(
        "s.toml",
        "name = \"it-no-verify\"\nmessages = 1000\n[publishers]\nrate = 500\n[gates]\nmax_lost_confirmed = 0\n",
    );
    let out = scratch.path.join("out");
    let mut command = scratch.warren_run(&scenario, &out);
    command.arg("--no-verify");
    let (code, stdout, stderr) = output(command);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("verification off (--no-verify)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("PASS (unverified: --no-verify)"),
        "{stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let totals = &summary["verdict"]["totals"];
    assert_eq!(summary["verdict"]["verified"], false);
    assert_eq!(totals["attempted"], 1000);
    assert_eq!(totals["confirmed"], 1000);
    assert_eq!(
        totals["delivered"], 1000,
        "the drain waited for every confirmed message"
    );
    assert!(
        summary["harness"]["ledger_bytes"].as_u64().unwrap() < 1024,
        "empty ledgers"
    );
    assert!(
        summary["latency"]["e2e_intended"]["count"]
            .as_u64()
            .unwrap()
            == 1000
    );
    assert_eq!(
        summary["gates"][0]["actual"], "not checked (--no-verify)",
        "{:#}",
        summary["gates"]
    );
    scratch.assert_clean();
}

/// Regression: warren started from a folder only its user can read (root's home, any
/// `mktemp -d`) ran rabbitmqctl as the `rabbitmq` user in that folder, whose Erlang code
/// server then printed `eacces` errors into the JSON warren parsed, and the run failed
/// before it began. Every child process now works in the node's own folder.
#[test]
fn a_run_started_in_a_folder_only_its_user_can_read_works() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("private-cwd");
    let private = scratch.path.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(private.join("s.toml"), ONE_NODE).unwrap();
    let mut command = warren();
    command
        .current_dir(&private)
        .env("TMPDIR", scratch.tmp())
        .args(["run", "s.toml", "--out", "out"]);
    let (code, stdout, stderr) = output(command);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains("eacces"), "{stdout}");
    let broker: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(private.join("out/broker.json")).unwrap())
            .unwrap();
    assert_eq!(
        broker["nodes"][0]["version"],
        crate::helpers::installed_rabbitmq_version().as_str(),
        "{broker}"
    );
    scratch.assert_clean();
}
