//! deploy/kubernetes/ run on this machine as a cluster would run it: the commands,
//! environment and mounts of the Indexed Job's pods and of the merge Job's pod are read from
//! the manifests and the kustomization's settings, and run as processes against a real
//! private node standing in for the broker of the `warren-broker` Secret. (The manifests'
//! schemas are checked by scripts/check-deploy.sh, which scripts/test.sh runs.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::helpers::{DEPLOY, Running, Scratch, deploy_yaml, output, warren};

/// The literals of warren-settings in kustomization.yaml.
fn settings() -> BTreeMap<String, String> {
    let kustomization = deploy_yaml("kustomization.yaml");
    let generators = kustomization["configMapGenerator"].as_sequence().unwrap();
    let settings = generators
        .iter()
        .find(|g| g["name"] == "warren-settings")
        .expect("warren-settings is generated");
    settings["literals"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|l| {
            let (key, value) = l.as_str().unwrap().split_once('=').unwrap();
            (key.to_string(), value.to_string())
        })
        .collect()
}

/// The warren-scenario ConfigMap as a folder: its generator's files, the load lowered
/// from the example's 3,000 msg/s to what three debug builds and a node sustain on two
/// cores (the one edit; the rest is the file a cluster gets).
fn scenario_config_map(root: &Path) -> PathBuf {
    let kustomization = deploy_yaml("kustomization.yaml");
    let generator = kustomization["configMapGenerator"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "warren-scenario")
        .expect("warren-scenario is generated");
    let folder = root.join("config-map-warren-scenario");
    std::fs::create_dir_all(&folder).unwrap();
    for file in generator["files"].as_sequence().unwrap() {
        let name = file.as_str().unwrap();
        let text = std::fs::read_to_string(Path::new(DEPLOY).join(name)).unwrap();
        let lowered = text.replace("\nrate = 3000\n", "\nrate = 600\n");
        assert_ne!(lowered, text, "{name}: the example's rate is not 3000");
        std::fs::write(folder.join(name), lowered).unwrap();
    }
    folder
}

/// What a pod of a Job runs, as this machine runs it.
struct Pod {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// The pod of `job` (a manifest file) with completion index `index`, its mounts made
/// folders under `root`, its Secret holding `broker_uri`.
fn pod(job: &str, index: u32, root: &Path, broker_uri: &str) -> Pod {
    let settings = settings();
    let manifest = deploy_yaml(job);
    let spec = &manifest["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    assert_eq!(container["name"], "warren");
    let mut env = Vec::new();
    for var in container["env"].as_sequence().into_iter().flatten() {
        let name = var["name"].as_str().unwrap().to_string();
        let from = &var["valueFrom"];
        let value = if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
            match path {
                "metadata.annotations['batch.kubernetes.io/job-completion-index']" => {
                    index.to_string()
                }
                // Absent on a first attempt: the variable is empty.
                "metadata.annotations['batch.kubernetes.io/job-index-failure-count']" => {
                    String::new()
                }
                other => panic!("{job}: env {name} from {other}, which this test does not know"),
            }
        } else if from["configMapKeyRef"]["name"] == "warren-settings" {
            let key = from["configMapKeyRef"]["key"].as_str().unwrap();
            settings
                .get(key)
                .unwrap_or_else(|| panic!("{job}: env {name}: no setting {key}"))
                .clone()
        } else if from["secretKeyRef"]["name"] == "warren-broker" {
            assert_eq!(from["secretKeyRef"]["key"], "uri");
            broker_uri.to_string()
        } else {
            var["value"]
                .as_str()
                .unwrap_or_else(|| panic!("{job}: env {name}: {var:?}"))
                .to_string()
        };
        env.push((name, value));
    }
    // Mounts: the scenario ConfigMap holds the files of its generator; the results
    // volume is shared by every pod; an emptyDir is the pod's own.
    let volumes = spec["volumes"].as_sequence().unwrap();
    let mut mounts = Vec::new();
    for mount in container["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        let name = mount["name"].as_str().unwrap();
        let volume = volumes.iter().find(|v| v["name"] == name).unwrap();
        let local = if volume["configMap"]["name"] == "warren-scenario" {
            scenario_config_map(root)
        } else if !volume["persistentVolumeClaim"].is_null() {
            root.join("results-volume")
        } else {
            root.join(format!("{job}-{index}-{name}"))
        };
        std::fs::create_dir_all(&local).unwrap();
        mounts.push((mount["mountPath"].as_str().unwrap().to_string(), local));
    }
    let args = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            // Kubernetes expands $(VAR) from the container's environment.
            let mut arg = a.as_str().unwrap().to_string();
            for (name, value) in &env {
                arg = arg.replace(&format!("$({name})"), value);
            }
            // A path in a mount, alone or as a flag's value, becomes the local folder's
            // (once: the local folders may themselves lie under a mount's path, /tmp).
            let (flag, value) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    (format!("{flag}="), value.to_string())
                }
                _ => (String::new(), arg.clone()),
            };
            if let Some((path, local)) = mounts
                .iter()
                .find(|(path, _)| value == *path || value.starts_with(&format!("{path}/")))
            {
                arg = format!("{flag}{}{}", local.display(), &value[path.len()..]);
            }
            assert!(!arg.contains("$("), "{job}: {arg} is not expanded");
            arg
        })
        .collect();
    Pod { args, env }
}

fn command(pod: &Pod, scratch: &Scratch) -> Command {
    let mut command = warren();
    // Each pod has a network of its own, so every worker serves metrics on the same port;
    // here they share one, and each takes a free port instead.
    let args = pod.args.iter().map(|arg| {
        if arg.starts_with("--metrics-listen=") {
            "--metrics-listen=127.0.0.1:0".to_string()
        } else {
            arg.clone()
        }
    });
    command.env("TMPDIR", scratch.tmp()).args(args);
    for (name, value) in &pod.env {
        command.env(name, value);
    }
    command
}

#[test]
fn the_indexed_job_and_the_merge_job_run_here_as_on_a_cluster() {
    // Three warrens and a node: not beside a cluster on two cores.
    let scratch = Scratch::several("kubernetes");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let node = runtime.block_on(super::helpers::started_cluster(&scratch, 1));
    let broker_uri = node.uris()[0].expose().to_string();
    let settings = settings();
    let workers: u32 = settings["workers"].parse().unwrap();
    let run_id = &settings["run-id"];
    assert!(workers >= 2, "the example runs several workers");

    // The merge Job starts as soon as it is applied, and waits for the workers' results.
    let merge = Running::spawn(command(
        &pod("merge.yaml", 0, &scratch.path, &broker_uri),
        &scratch,
    ));
    let pods: Vec<Pod> = (0..workers)
        .map(|i| pod("workers.yaml", i, &scratch.path, &broker_uri))
        .collect();
    let running: Vec<Running> = pods
        .iter()
        .map(|p| {
            let mut c = command(p, &scratch);
            // The example runs a minute; 25 s still takes in its fault (at 20 s, for 2 s).
            c.args(["--duration", "25s"]);
            Running::spawn(c)
        })
        .collect();
    let mut logs = String::new();
    let mut codes = Vec::new();
    for (i, r) in running.into_iter().enumerate() {
        let (code, lines) = r.finish(Duration::from_secs(300));
        logs.push_str(&format!(
            "---- worker {i}, exit {code}\n{}\n",
            lines.join("\n")
        ));
        codes.push(code);
    }
    assert_eq!(codes, vec![0; workers as usize], "{logs}");
    assert_eq!(
        logs.matches("metrics: http://127.0.0.1:").count(),
        workers as usize,
        "every worker serves its live metrics: {logs}"
    );
    let (merge_code, merge_lines) = merge.finish(Duration::from_secs(120));
    let merge_text = merge_lines.join("\n");
    assert_eq!(merge_code, 0, "{merge_text}\n{logs}");
    assert!(
        merge_text.contains(&format!("waiting up to {}", settings["merge-wait"])),
        "{merge_text}"
    );

    let run = scratch.path.join("results-volume").join(run_id);
    for i in 0..workers {
        assert!(run.join(format!("worker-{i}/worker-results.json")).exists());
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("merged/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["passed"], true, "{merge_text}");
    let totals = &summary["verdict"]["totals"];
    let attempted = totals["attempted"].as_u64().unwrap();
    assert!(attempted > 1_000, "{totals}");
    assert_eq!(totals["confirmed"], attempted, "{totals}");
    assert_eq!(totals["delivered"], attempted, "{totals}");
    assert_eq!(totals["lost_confirmed"], 0, "{totals}");
    // Every worker cut its own clients' connections.
    for i in 0..workers {
        let results =
            std::fs::read_to_string(run.join(format!("worker-{i}/worker-results.json"))).unwrap();
        let results: serde_json::Value = serde_json::from_str(&results).unwrap();
        assert!(
            results["faults"].to_string().contains("reset_peer"),
            "worker {i}: {}",
            results["faults"]
        );
    }
    for file in ["report.html", "junit.xml", "summary.csv", "workers.json"] {
        assert!(run.join("merged").join(file).exists(), "{file}");
    }

    // The same Job applied again with the same run id: every worker refuses (exit 2,
    // which the pod failure policy fails the index on) and nothing is overwritten.
    let before = std::fs::read(run.join("worker-0/worker-results.json")).unwrap();
    let (code, _, stderr) = output(command(&pods[0], &scratch));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("each run needs its own run id"), "{stderr}");
    assert_eq!(
        std::fs::read(run.join("worker-0/worker-results.json")).unwrap(),
        before
    );

    runtime.block_on(node.shutdown());
    scratch.assert_clean();
}
