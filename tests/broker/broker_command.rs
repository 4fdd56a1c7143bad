//! `warren broker up | status | down`: detached nodes found again through the state file,
//! and a foreground `up` that Ctrl-C stops cleanly.

use std::time::Duration;

use crate::helpers::{Running, Scratch, broker_command, output, warren};

#[test]
fn detached_nodes_are_listed_by_status_and_stopped_by_down() {
    let scratch = Scratch::new("broker-detach");
    let (code, stdout, stderr) = output(broker_command(&scratch, &["up", "--detach"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("amqp://guest:guest@127.0.0.1:"), "{stdout}");

    let (code, stdout, _) = output(broker_command(&scratch, &["status"]));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains(" running "), "{stdout}");
    assert!(
        stdout.trim_end().ends_with("1 of 1 nodes running"),
        "{stdout}"
    );

    let (code, _, stderr) = output(broker_command(&scratch, &["up", "--detach"]));
    assert_eq!(code, 3, "a second `up` is refused while the first runs");
    assert!(stderr.contains("already running"), "{stderr}");

    let (code, stdout, _) = output(broker_command(&scratch, &["down"]));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("stopped 1 of 1 nodes"), "{stdout}");
    scratch.assert_clean();

    let (code, stdout, _) = output(broker_command(&scratch, &["status"]));
    assert_eq!(code, 3);
    assert!(stdout.contains("0 of 0 nodes running"), "{stdout}");
}

#[test]
fn status_reports_a_node_that_died() {
    let scratch = Scratch::new("broker-dead");
    let (code, stdout, stderr) = output(broker_command(&scratch, &["up", "--detach"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.path.join("state.json")).unwrap())
            .unwrap();
    let pid = state["nodes"][0]["pid"].as_u64().unwrap();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let stdout = loop {
        let (code, stdout, _) = output(broker_command(&scratch, &["status"]));
        if code == 3 || std::time::Instant::now() > deadline {
            break stdout;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(stdout.contains(" stopped "), "{stdout}");
    assert!(
        stdout.trim_end().ends_with("0 of 1 nodes running"),
        "{stdout}"
    );
    let (code, _, _) = output(broker_command(&scratch, &["down"]));
    assert_eq!(code, 0);
    scratch.assert_clean();
}

#[test]
fn ctrl_c_stops_a_foreground_broker_up() {
    let scratch = Scratch::new("broker-sigint");
    let mut running = Running::spawn(broker_command(&scratch, &["up"]));
    running.wait_for_line("running until Ctrl-C", Duration::from_secs(600));
    assert!(
        scratch.path.join("state.json").exists(),
        "status works while up runs"
    );
    running.signal("INT");
    let (code, lines) = running.finish(Duration::from_secs(300));
    assert_eq!(code, 0, "{lines:#?}");
    assert!(lines.iter().any(|l| l == "stopped"), "{lines:#?}");
    assert!(!scratch.path.join("state.json").exists());
    scratch.assert_clean();
}

/// Private nodes work for an ordinary user too. When the tests run as root (as in CI), this
/// runs warren as `nobody` through setpriv; as an ordinary user every other test already
/// covers that case, and this one checks the same thing directly.
#[test]
fn an_ordinary_user_can_start_and_stop_private_nodes() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("ordinary-user");
    let as_root = nix_is_root();
    // A copy of the binary in the scratch folder, in case the checkout is not readable by nobody.
    let binary = scratch.path.join("warren");
    std::fs::copy(env!("CARGO_BIN_EXE_warren"), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Started, like a newcomer's shell, in a folder only that user can read.
    let private = scratch.path.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    if as_root {
        std::os::unix::fs::chown(&private, Some(65534), Some(65534)).unwrap();
    }
    let wrap = |args: &[&str]| {
        let mut command = if as_root {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"])
                .arg(&binary);
            c
        } else {
            warren()
        };
        command
            .current_dir(&private)
            .env("TMPDIR", scratch.tmp())
            .env("HOME", &scratch.path)
            // An ordinary user runs the machine's RabbitMQ, even on the 4.0 leg: another
            // root needs chroot (run_command checks that refusal).
            .env_remove("WARREN_RABBITMQ_ROOT")
            .env("WARREN_STATE_FILE", scratch.path.join("state/broker.json"))
            .arg("broker")
            .args(args);
        command
    };
    if as_root {
        for dir in [scratch.path.clone(), scratch.tmp()] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
    }
    let (code, stdout, stderr) = output(wrap(&["up", "--detach"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(scratch.path.join("state/broker.json")).unwrap(),
    )
    .unwrap();
    let pid = state["nodes"][0]["pid"].as_u64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    let expected_uid = if as_root {
        "65534".to_string()
    } else {
        current_uid()
    };
    assert!(
        uid_line.split_whitespace().nth(1) == Some(expected_uid.as_str()),
        "{uid_line}"
    );
    let (code, stdout, _) = output(wrap(&["status"]));
    assert_eq!(code, 0, "{stdout}");
    let (code, stdout, _) = output(wrap(&["down"]));
    assert_eq!(code, 0, "{stdout}");
    scratch.assert_clean();
}

fn nix_is_root() -> bool {
    current_uid() == "0"
}

fn current_uid() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().to_string()
}

/// A detached private node, for tests that point external scenarios at it; `down` on drop.
struct DetachedNode<'a> {
    scratch: &'a Scratch,
    state: serde_json::Value,
}

impl<'a> DetachedNode<'a> {
    fn up(scratch: &'a Scratch) -> Self {
        let (code, stdout, stderr) = output(broker_command(scratch, &["up", "--detach"]));
        assert_eq!(code, 0, "{stdout}{stderr}");
        let state = serde_json::from_str(
            &std::fs::read_to_string(scratch.path.join("state.json")).unwrap(),
        )
        .unwrap();
        Self { scratch, state }
    }

    fn port(&self) -> u64 {
        self.state["nodes"][0]["amqp_port"].as_u64().unwrap()
    }

    /// rabbitmqctl against the node through `warren broker ctl` (its cookie, port mapper
    /// and account).
    fn ctl(&self, args: &[&str]) {
        let mut words = vec!["ctl", "--"];
        words.extend_from_slice(args);
        let (code, stdout, stderr) = output(broker_command(self.scratch, &words));
        assert_eq!(code, 0, "warren broker ctl {args:?}: {stdout}{stderr}");
    }
}

impl Drop for DetachedNode<'_> {
    fn drop(&mut self) {
        let _ = output(broker_command(self.scratch, &["down"]));
    }
}

/// Regression: the URI parser read `[::1]` (any IPv6 literal) as `localhost`, so an
/// external scenario naming another broker silently tested the local one. The node here
/// listens on 127.0.0.1 only: a scenario naming [::1] on its port must not reach it.
#[test]
fn an_ipv6_literal_never_reaches_a_broker_on_another_address() {
    let scratch = Scratch::new("ipv6-literal");
    let node = DetachedNode::up(&scratch);
    let port = node.port();
    let external_as = |name: &str, scheme: &str, host: &str| {
        scratch.file(
            &format!("{name}.toml"),
            &format!(
                "name = \"{name}\"\nduration = \"2s\"\n[broker]\nmode = \"external\"\nuris = [\"{scheme}://guest:guest@{host}:{port}/%2f\"]\n"
            ),
        )
    };
    let external = |name: &str, host: &str| external_as(name, "amqp", host);
    let scenario = external("ipv6", "[::1]");
    let (code, stdout, stderr) = output(scratch.warren_run(&scenario, &scratch.path.join("out")));
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(stderr.contains(&format!("[::1]:{port}")), "{stderr}");
    // The same scenario on the node's own address runs.
    let scenario = external("ipv4", "127.0.0.1");
    let (code, stdout, stderr) = output(scratch.warren_run(&scenario, &scratch.path.join("out4")));
    assert_eq!(code, 0, "{stdout}{stderr}");
    // The plain port named as amqps: one line that says so, exit 3.
    let scenario = external_as("tls-on-plain", "amqps", "127.0.0.1");
    let (code, stdout, stderr) = output(scratch.warren_run(&scenario, &scratch.path.join("outs")));
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stderr.contains("does not answer in TLS: is it a plain AMQP port? (then use amqp://)"),
        "{stderr}"
    );
    drop(node);
    scratch.assert_clean();
}

/// Passwords with reserved characters and percent-encodings never show: not on the
/// console, not in any file of the run folder, not in errors. A user with such a password
/// runs a real workload on a private node; the same URI with a wrong password fails.
#[test]
fn a_password_with_reserved_characters_never_shows_anywhere() {
    let scratch = Scratch::new("password-leak");
    let node = DetachedNode::up(&scratch);
    let port = node.port();
    let password = "p@ss/w?rd#%25 :é[x]";
    node.ctl(&["add_user", "leaktest", password]);
    node.ctl(&["set_permissions", "-p", "/", "leaktest", ".*", ".*", ".*"]);
    let encoded = "p%40ss%2Fw%3Frd%23%2525%20%3A%C3%A9%5Bx%5D";
    let forms = [password, encoded, "p@ss/w?rd", "%2Fw%3Frd"];
    let check = |label: &str, text: &str| {
        for form in forms {
            assert!(!text.contains(form), "{label} shows {form:?}:\n{text}");
        }
    };
    for (name, secret, expected) in [("right", encoded, 0), ("wrong", "n0t%2Fit%40all", 3)] {
        let scenario = scratch.file(
            &format!("{name}.toml"),
            &format!(
                "name = \"leak-{name}\"\nduration = \"2s\"\n[broker]\nmode = \"external\"\nuris = [\"amqp://leaktest:{secret}@127.0.0.1:{port}/%2f\"]\n[publishers]\nrate = 200\n"
            ),
        );
        let out = scratch.path.join(format!("out-{name}"));
        let (code, stdout, stderr) = output(scratch.warren_run(&scenario, &out));
        assert_eq!(code, expected, "{name}: {stdout}{stderr}");
        check("stdout", &stdout);
        check("stderr", &stderr);
        if name == "wrong" {
            assert!(!stderr.contains("n0t"), "{stderr}");
        }
        for entry in std::fs::read_dir(&out).into_iter().flatten().flatten() {
            let bytes = std::fs::read(entry.path()).unwrap();
            check(
                &entry.path().display().to_string(),
                &String::from_utf8_lossy(&bytes),
            );
        }
    }
    // Written raw, a password with a reserved character makes the URI invalid: the error
    // names the field and hides the password (the old scan stopped at the '/').
    let scenario = scratch.file(
        "raw.toml",
        &format!(
            "name = \"leak-raw\"\n[broker]\nmode = \"external\"\nuris = [\"amqp://leaktest:hid/den@127.0.0.1:{port}/%2f\"]\n"
        ),
    );
    let mut validate = warren();
    validate.arg("validate").arg(&scenario);
    let (code, stdout, stderr) = output(validate);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stdout.contains("broker.uris[0]") || stderr.contains("broker.uris[0]"),
        "{stdout}{stderr}"
    );
    assert!(
        !stdout.contains("hid") && !stderr.contains("hid"),
        "{stdout}{stderr}"
    );
    assert!(
        !stdout.contains("den@") && !stderr.contains("den@"),
        "{stdout}{stderr}"
    );
    drop(node);
    scratch.assert_clean();
}
