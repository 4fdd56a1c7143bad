//! Runs refused before any broker starts, so they need no RabbitMQ: no install, a release
//! too old, a root without RabbitMQ or without root rights, an external broker nobody
//! answers for, a metrics address in use, a sweep of a scenario without a sweep. Each exits
//! with its code, says why in one line and leaves nothing behind.

use crate::helpers::{Scratch, closed_port, output, warren};

const ONE_NODE: &str =
    "name = \"refused\"\nduration = \"2s\"\n[broker]\nnodes = 1\n[publishers]\nrate = 500\n";

#[test]
fn without_rabbitmq_installed_the_error_says_how_to_install_it() {
    let scratch = Scratch::new("no-install");
    let scenario = scratch.file("s.toml", ONE_NODE);
    let mut command = warren();
    command
        .env("TMPDIR", scratch.tmp())
        .env_remove("WARREN_RABBITMQ_ROOT")
        .env("WARREN_RABBITMQ_BIN", scratch.path.join("empty"))
        .arg("run")
        .arg(&scenario);
    let (code, _, stderr) = output(command);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("rabbitmq-server was not found"), "{stderr}");
    assert!(
        stderr.contains("apt-get install -y rabbitmq-server"),
        "{stderr}"
    );
    scratch.assert_clean();
}

#[test]
fn a_rabbitmq_older_than_3_10_is_refused_before_any_node_starts() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("old-release");
    let scenario = scratch.file("s.toml", ONE_NODE);
    // An install laid out as the generic Unix tarball of 3.9.29, whose scripts would
    // leave a mark if they ran.
    let sbin = scratch.path.join("rabbitmq_server-3.9.29/sbin");
    std::fs::create_dir_all(&sbin).unwrap();
    let mark = scratch.path.join("ran");
    for script in ["rabbitmq-server", "rabbitmqctl"] {
        let path = sbin.join(script);
        std::fs::write(&path, format!("#!/bin/sh\ntouch {}\n", mark.display())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut command = warren();
    command
        .env("TMPDIR", scratch.tmp())
        .env_remove("WARREN_RABBITMQ_ROOT")
        .env("WARREN_RABBITMQ_BIN", &sbin)
        .arg("run")
        .arg(&scenario);
    let (code, _, stderr) = output(command);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("RabbitMQ 3.9.29") && stderr.contains("3.10 to 4.x"),
        "{stderr}"
    );
    assert!(!mark.exists(), "a script of the old install ran");
    scratch.assert_clean();
}

#[test]
fn another_root_without_rabbitmq_or_without_root_rights_is_refused_clearly() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("bad-root");
    // A root with the folder the scenario check looks for, but no programs in it.
    let root = scratch.path.join("root");
    std::fs::create_dir_all(root.join("usr/lib/rabbitmq")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    let mut command = warren();
    command
        .env("TMPDIR", scratch.tmp())
        .env("WARREN_RABBITMQ_ROOT", &root)
        .arg("run")
        .arg(scratch.file("s.toml", ONE_NODE));
    let (code, _, stderr) = output(command);
    assert_eq!(code, 3, "{stderr}");
    // As root, the root is looked into and found empty; as an ordinary user, chroot is out
    // of reach first.
    if nix::unistd::geteuid().is_root() {
        assert!(
            stderr.contains(&format!(
                "rabbitmq-server was not found in the RabbitMQ root {}",
                root.display()
            )) && stderr.contains("scripts/rabbitmq.sh 4.0"),
            "{stderr}"
        );
    } else {
        assert!(
            stderr.contains("runs inside it with chroot, which needs root"),
            "{stderr}"
        );
    }
    // A relative root in a scenario is bad input: exit 2, naming the field.
    let relative = scratch.file(
        "relative.toml",
        &ONE_NODE.replace("nodes = 1", "nodes = 1\nroot = \"var/cache/x\""),
    );
    let mut command = warren();
    command.arg("run").arg(&relative);
    let (code, _, stderr) = output(command);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("relative.toml:") && stderr.contains("broker.root"),
        "{stderr}"
    );
    // Not root: chroot is out of reach, and the error says so before anything starts. Run
    // as root, the test runs warren as nobody, from a copy of the binary an ordinary user
    // can run (the build folder may be private); run as an ordinary user, as that user.
    let binary = scratch.path.join("warren");
    std::fs::copy(env!("CARGO_BIN_EXE_warren"), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let in_root = scratch.file(
        "in-root.toml",
        &ONE_NODE.replace(
            "nodes = 1",
            &format!("nodes = 1\nroot = {:?}", root.display().to_string()),
        ),
    );
    std::fs::set_permissions(&in_root, std::fs::Permissions::from_mode(0o644)).unwrap();
    let own = scratch.path.join("not-root");
    std::fs::create_dir(&own).unwrap();
    let mut command = std::process::Command::new(&binary);
    if nix::unistd::geteuid().is_root() {
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        nix::unistd::chown(&own, Some(nobody.uid), Some(nobody.gid)).unwrap();
        std::os::unix::process::CommandExt::uid(&mut command, nobody.uid.as_raw());
        std::os::unix::process::CommandExt::gid(&mut command, nobody.gid.as_raw());
    }
    command
        .current_dir(&scratch.path)
        .env("HOME", &own)
        .env("TMPDIR", &own)
        .env("RUST_LOG", "warn")
        .args(["run", "in-root.toml", "--out"])
        .arg(own.join("out"));
    let (code, _, stderr) = output(command);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("runs inside it with chroot, which needs root"),
        "{stderr}"
    );
    scratch.assert_clean();
}

#[test]
fn an_unreachable_external_broker_exits_3_without_showing_its_password() {
    let scratch = Scratch::new("external-down");
    let port = closed_port();
    let scenario = scratch.file(
        "s.toml",
        &format!("name = \"ext\"\nduration = \"5s\"\n[broker]\nmode = \"external\"\nuris = [\"amqp://warren:hunter2@127.0.0.1:{port}/%2f\"]\n"),
    );
    let command = scratch.warren_run(&scenario, &scratch.path.join("out"));
    let (code, stdout, stderr) = output(command);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("amqp://warren:****@127.0.0.1:{port}/%2f")),
        "{stderr}"
    );
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(!stdout.contains("hunter2") && !stderr.contains("hunter2"));
}

/// An address something else already listens on: exit 3 before the broker starts, one line
/// naming it, no run folder.
#[test]
fn a_metrics_address_in_use_stops_the_run_before_anything_starts() {
    let scratch = Scratch::new("metrics-busy");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let scenario = scratch.file("metrics.toml", ONE_NODE);
    let out = scratch.path.join("out");
    let mut run = scratch.warren_run(&scenario, &out);
    run.args(["--metrics-listen", &addr.to_string()]);
    let (code, stdout, stderr) = output(run);
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "the metrics endpoint could not be started: cannot listen on {addr}: "
        )),
        "{stderr}"
    );
    assert!(!stdout.contains("broker up"), "{stdout}");
    assert!(!out.exists());
    scratch.assert_clean();
}

#[test]
fn sweeping_a_scenario_without_a_sweep_section_is_bad_input() {
    let scratch = Scratch::new("no-sweep");
    let scenario = scratch.file("s.toml", "name = \"x\"\n");
    let mut command = warren();
    command
        .env("TMPDIR", scratch.tmp())
        .arg("sweep")
        .arg(&scenario);
    let (code, stdout, stderr) = output(command);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("s.toml: has no [sweep] section"),
        "{stderr}"
    );
    assert!(scratch.tmp_entries().is_empty());
}
