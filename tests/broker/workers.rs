//! Several warren workers running one scenario together (`--worker I/N`), met on a real
//! private node, and `warren merge` putting them back together: run through
//! scripts/workers.sh, as a user tries it before going to a cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::helpers::{Running, Scratch, output, warren};

/// A fixed number of messages per publisher, so totals do not depend on timing.
fn scenario(faults: &str, publishers: u32, consumers: u32, heartbeat: bool) -> String {
    let heartbeat = if heartbeat {
        "heartbeat = \"2s\"\n"
    } else {
        ""
    };
    format!(
        r#"name = "workers"
messages = 3000
seed = 7
[broker]
mode = "managed"
[topology]
queue = {{ type = "classic", durable = true }}
[publishers]
count = {publishers}
confirm = true
max_in_flight = 128
persistent = true
mandatory = true
on_failure = "republish"
rate = 600
size = 256
{heartbeat}[consumers]
count = {consumers}
ack = "manual"
prefetch = 100
multiple_ack_every = 10
{heartbeat}{faults}
[gates]
max_lost_confirmed = 0
"#
    )
}

/// scripts/workers.sh SCENARIO N, with this test's binary and folders.
fn workers_sh(scratch: &Scratch, scenario: &Path, count: u32, out: &Path) -> Command {
    let mut command = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/workers.sh"));
    command
        .env("WARREN", env!("CARGO_BIN_EXE_warren"))
        .env("WARREN_WORKERS_OUT", out)
        .env("WARREN_RUN_ID", format!("it-{}", std::process::id()))
        .env("TMPDIR", scratch.tmp())
        .env("RUST_LOG", "warn")
        .arg(scenario)
        .arg(count.to_string());
    command
}

/// The workers' console logs, for a failure's message.
fn logs(out: &Path) -> String {
    (0..3)
        .filter_map(|i| std::fs::read_to_string(out.join(format!("worker-{i}.log"))).ok())
        .collect::<Vec<_>>()
        .join("\n----\n")
}

/// Waits until worker `index`'s console (under `out`) shows it publishing. The bound only
/// keeps a broken worker from hanging the suite: with both cores busy, a worker's node
/// took more than 120 s to come up and start it publishing.
fn wait_until_publishing(out: &Path, index: u32) {
    let log = out.join(format!("worker-{index}.log"));
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("publishing")) {
        assert!(
            std::time::Instant::now() < deadline,
            "worker {index} never published:\n{}",
            logs(out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The processes of worker `index` of this test's run (whose folders are under `out`):
/// their pids, or with `full` their pids and command lines. Matched by the worker's own
/// results folder, never by its share alone: the other tests' workers are "2/3" too, and
/// they all run at once (a test killed another's worker 2 that way).
fn worker_processes(out: &Path, index: u32, full: bool) -> String {
    let folder = format!("{}/worker-{index}", out.display());
    // pgrep reads an extended regular expression: the folder is matched literally.
    let literal: String = folder
        .chars()
        .flat_map(|c| {
            let special = "\\.^$|?*+()[]{}".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect();
    let pattern = format!("--out {literal}( |$)");
    let (_, ps, _) = output({
        let mut c = Command::new("pgrep");
        c.args([if full { "-af" } else { "-f" }, "--", &pattern]);
        c
    });
    ps
}

fn json(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn totals(summary: &Value) -> (u64, u64, u64, u64, u64) {
    let t = &summary["verdict"]["totals"];
    let n = |k: &str| t[k].as_u64().unwrap();
    (
        n("attempted"),
        n("confirmed"),
        n("delivered"),
        n("lost_confirmed"),
        n("unexpected"),
    )
}

#[test]
fn three_workers_merge_into_the_verdict_of_one_process_and_consume_each_others_messages() {
    // Several warrens and a node: not beside a cluster on two cores.
    let scratch = Scratch::several("workers-three");
    // Consumers run on workers 0 and 1 only: worker 2's messages are all consumed
    // elsewhere, and the others' are shared round robin.
    let file = scratch.file("workers.toml", &scenario("", 3, 2, false));
    let out = scratch.path.join("workers");
    let (code, stdout, stderr) = output(workers_sh(&scratch, &file, 3, &out));
    assert_eq!(code, 0, "{stdout}\n{stderr}\n{}", logs(&out));
    for index in 0..3 {
        assert!(
            out.join(format!("worker-{index}/worker-results.json"))
                .exists(),
            "worker {index}'s folder"
        );
    }
    let merged = json(out.join("merged/summary.json"));
    assert_eq!(merged["passed"], true);
    let single_out = scratch.path.join("single");
    let (code, stdout, _) = output(scratch.warren_run(&file, &single_out));
    assert_eq!(code, 0, "{stdout}");
    let single = json(single_out.join("summary.json"));
    assert_eq!(totals(&merged), totals(&single));
    assert_eq!(totals(&merged), (9_000, 9_000, 9_000, 0, 0));
    for key in ["duplicated", "lost_unconfirmed"] {
        assert_eq!(merged["verdict"]["totals"][key], 0, "{key}");
    }

    // Every worker's consumer took messages of every publisher, mostly other workers'.
    let mut foreign = 0u64;
    let mut all = 0u64;
    for index in 0..2u64 {
        let results = json(out.join(format!("worker-{index}/worker-results.json")));
        let shards = results["consumers"][0].as_array().unwrap();
        for shard in shards {
            for (producer, deliveries) in shard["producers"].as_array().unwrap().iter().enumerate()
            {
                if deliveries.is_null() {
                    continue;
                }
                let seen: warren::ledger::SeqSet =
                    serde_json::from_value(deliveries["seen"].clone()).unwrap();
                all += seen.len();
                if producer as u64 % 3 != index {
                    foreign += seen.len();
                }
            }
        }
    }
    assert_eq!(all, 9_000);
    assert!(
        foreign * 2 > all,
        "{foreign} of {all} messages were consumed by another worker than their publisher's"
    );
    let workers = json(out.join("merged/workers.json"));
    assert_eq!(workers["workers"].as_array().unwrap().len(), 3);
    scratch.assert_clean();
}

#[test]
fn a_restart_by_worker_0_and_a_network_fault_on_every_worker_lose_nothing_confirmed() {
    // Several warrens and a node: not beside a cluster on two cores.
    let scratch = Scratch::several("workers-faults");
    let faults = r#"
[[faults]]
at = "1s"
kind = "reset_peer"
for = "1s"

[[faults]]
at = "3s"
kind = "broker_restart"
"#;
    let file = scratch.file("faults.toml", &scenario(faults, 2, 2, true));
    let out = scratch.path.join("workers");
    let (code, stdout, stderr) = output(workers_sh(&scratch, &file, 2, &out));
    assert_eq!(code, 0, "{stdout}\n{stderr}\n{}", logs(&out));
    let merged = json(out.join("merged/summary.json"));
    assert_eq!(merged["verdict"]["totals"]["lost_confirmed"], 0);
    assert_eq!(merged["verdict"]["totals"]["attempted"], 6_000);
    // Worker 0 restarted the broker; worker 1 cut its own clients' connections too.
    let faults = merged["faults"].to_string();
    assert!(faults.contains("broker_restart"), "{faults}");
    let worker_1 = json(out.join("worker-1/worker-results.json"));
    let worker_1_faults = worker_1["faults"].as_array().unwrap();
    assert_eq!(worker_1_faults.len(), 1, "{worker_1_faults:?}");
    assert!(worker_1_faults[0].to_string().contains("reset_peer"));
    scratch.assert_clean();
}

#[test]
fn a_worker_killed_mid_run_makes_the_merge_fail_naming_it() {
    // Several warrens and a node: not beside a cluster on two cores.
    let scratch = Scratch::several("workers-killed");
    let file = scratch.file("killed.toml", &scenario("", 3, 3, false));
    let out = scratch.path.join("workers");
    let mut command = workers_sh(&scratch, &file, 3, &out);
    // Long enough for the workers to meet on a loaded machine (beside two busy loops,
    // 10 s was not), short enough to end the survivors' wait for a killed worker.
    command.args(["--barrier-timeout", "60s"]);
    let all = Running::spawn(command);
    // Worker 2's console shows publishing; then it is killed with SIGKILL.
    wait_until_publishing(&out, 2);
    let ps = worker_processes(&out, 2, false);
    assert!(!ps.trim().is_empty(), "worker 2's process was not found");
    for pid in ps.split_whitespace() {
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
    let (code, lines) = all.finish(Duration::from_secs(400));
    let text = lines.join("\n");
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("worker 2/3 exited with 137"), "{text}");
    // The merge waits for results still to come (as the Kubernetes merge Job does), but
    // the others' say they did not complete: it ends at once, naming the missing one.
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = output({
        let mut c = warren();
        c.arg("merge")
            .arg(&out)
            .args(["--wait", "5m", "--out"])
            .arg(scratch.path.join("merged"));
        c
    });
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("worker-2") && stderr.contains("did not finish"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(240),
        "the merge waited for a worker that cannot come"
    );
    scratch.assert_clean();
}

#[test]
fn a_worker_that_arrives_after_the_start_cannot_join_the_run() {
    // Several warrens and a node: not beside a cluster on two cores.
    let scratch = Scratch::several("workers-late");
    // 200 s of messages: the run is still going when the late worker arrives, however
    // loaded the machine; it is stopped once the late worker is refused.
    let file = scratch.file(
        "late.toml",
        &scenario("", 2, 2, false).replace("messages = 3000", "messages = 60000"),
    );
    let out = scratch.path.join("workers");
    let mut command = workers_sh(&scratch, &file, 2, &out);
    // Long enough for the workers to meet on a loaded machine (beside two busy loops,
    // 10 s was not), short enough to end the survivors' wait for a killed worker.
    command.args(["--barrier-timeout", "60s"]);
    let run = Running::spawn(command);
    wait_until_publishing(&out, 1);
    // A second worker 1 (as Kubernetes starts when a pod is replaced), on the same broker.
    let ps = worker_processes(&out, 1, true);
    let uri = ps
        .split_whitespace()
        .skip_while(|w| *w != "--broker-uri")
        .nth(1)
        .unwrap_or_else(|| panic!("worker 1's broker: {ps}"))
        .to_string();
    let mut late = scratch.warren_run(&file, &scratch.path.join("late"));
    late.env("WARREN_WORKER_ATTEMPT", "1").args([
        "--worker",
        "1/2",
        "--run-id",
        &format!("it-{}", std::process::id()),
        "--broker-uri",
        &uri,
    ]);
    let late_started = std::time::Instant::now();
    let (code, stdout, stderr) = output(late);
    let late_took = late_started.elapsed();
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("worker 1 arrived") && stderr.contains("cannot join a run in progress"),
        "{stderr}"
    );
    // SIGTERM, not SIGINT: a shell started in the background with SIGINT ignored (as CI
    // may start the suite) cannot trap it, and the run would go on to its end.
    run.signal("TERM");
    let (code, lines) = run.finish(Duration::from_secs(300));
    assert_eq!(
        code,
        130,
        "workers.sh stopped by SIGTERM; the late worker took {late_took:?}:\n{stdout}\n{stderr}\nworkers.sh:\n{}\n{}",
        lines.join("\n"),
        logs(&out)
    );
    assert_nothing_taken_by_a_stranger(&out, 2);
    scratch.assert_clean();
}

/// Checks that the `count` workers' consumers (one each, on one queue) received every
/// message of every producer, up to where they were stopped: a consumer outside the run
/// that took and acknowledged some would leave holes. A stop leaves holes too, but only
/// at the end: a message a consumer had not yet handled came after all it had, so above
/// the lowest of the consumers' highest.
fn assert_nothing_taken_by_a_stranger(out: &Path, count: u32) {
    let mut received: Vec<roaring::RoaringBitmap> = Vec::new();
    let mut handled_to: Vec<u32> = Vec::new();
    for index in 0..count {
        let results = json(out.join(format!("worker-{index}/worker-results.json")));
        let mut highest = vec![0u32; count as usize];
        for shard in results["consumers"][0].as_array().unwrap() {
            for (producer, deliveries) in shard["producers"].as_array().unwrap().iter().enumerate()
            {
                if deliveries.is_null() {
                    continue;
                }
                let seen: warren::ledger::SeqSet =
                    serde_json::from_value(deliveries["seen"].clone()).unwrap();
                let seen = seen.to_bitmap();
                if received.len() <= producer {
                    received.resize(producer + 1, roaring::RoaringBitmap::new());
                }
                highest[producer] = highest[producer].max(seen.max().unwrap_or(0));
                received[producer] |= seen;
            }
        }
        handled_to = if index == 0 {
            highest
        } else {
            handled_to
                .iter()
                .zip(&highest)
                .map(|(a, b)| *a.min(b))
                .collect()
        };
    }
    assert_eq!(
        received.len(),
        count as usize,
        "every producer's messages were received"
    );
    for (producer, (received, &to)) in received.iter().zip(&handled_to).enumerate() {
        let holes: Vec<u32> = (0..to).filter(|seq| !received.contains(*seq)).collect();
        assert!(
            holes.is_empty(),
            "producer {producer}: {} message(s) below {to} reached neither worker, from {:?}",
            holes.len(),
            &holes[..holes.len().min(10)]
        );
    }
}

#[test]
fn a_worker_nobody_meets_fails_at_the_barrier_with_exit_3() {
    let scratch = Scratch::new("workers-barrier");
    let file = scratch.file("alone.toml", &scenario("", 2, 2, false));
    let mut command = scratch.warren_run(&file, &scratch.path.join("out"));
    command.args([
        "--worker",
        "0/2",
        "--run-id",
        "nobody-comes",
        "--barrier-timeout",
        "3s",
    ]);
    let (code, stdout, stderr) = output(command);
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("worker(s) [1] of 2 did not reach `Ready` within 3 s"),
        "{stderr}"
    );
    // Without a run id, a worker is bad input.
    let mut command = scratch.warren_run(&file, &scratch.path.join("out2"));
    command.args(["--worker", "0/2"]);
    let (code, _, stderr) = output(command);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--run-id"), "{stderr}");
    scratch.assert_clean();
}
