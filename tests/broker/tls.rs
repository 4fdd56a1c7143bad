//! TLS against real RabbitMQ nodes: warren's own TLS nodes (one, and a cluster with a
//! leader kill), a node that demands client certificates, the one-line reasons a start-up
//! check gives when TLS cannot work, and network faults cutting TLS streams.

use serde_json::Value;

use crate::helpers::{Scratch, broker_command, output};

/// The reliable recipe, `seconds` of messages at 400 msg/s a publisher (bound by messages,
/// so a fault that ends late on a loaded machine still has publishing after it), over
/// `broker`, with `faults` appended.
fn reliable(name: &str, seconds: u32, broker: &str, faults: &str) -> String {
    let messages = seconds * 400;
    format!(
        "name = \"{name}\"\nmessages = {messages}\nseed = 7\n{broker}\n[topology]\nqueue = {{ type = \"classic\", durable = true }}\n[publishers]\ncount = 2\nconfirm = true\nmax_in_flight = 64\npersistent = true\nmandatory = true\nrate = 400\nheartbeat = \"1s\"\n[consumers]\ncount = 1\nack = \"manual\"\nprefetch = 50\nheartbeat = \"1s\"\n{faults}\n[gates]\nmax_lost_confirmed = 0\nmax_lost_unconfirmed = 0\n"
    )
}

/// Runs a scenario; its exit code, stdout and summary.json (Null when none was written).
fn run(scratch: &Scratch, file: &str, text: &str) -> (i32, String, Value) {
    let scenario = scratch.file(file, text);
    let out = scratch.path.join(format!("out-{file}"));
    let mut command = scratch.warren_run(&scenario, &out);
    command.args(["--progress", "plain"]);
    let (code, stdout, stderr) = output(command);
    let summary = std::fs::read_to_string(out.join("summary.json"))
        .map_or(Value::Null, |text| serde_json::from_str(&text).unwrap());
    (code, format!("{stdout}{stderr}"), summary)
}

fn lost_confirmed(summary: &Value) -> u64 {
    summary["verdict"]["totals"]["lost_confirmed"]
        .as_u64()
        .unwrap()
}

/// A detached TLS node from `warren broker up --tls --tls-client-auth`; `down` on drop.
struct TlsNode<'a> {
    scratch: &'a Scratch,
    state: Value,
}

impl<'a> TlsNode<'a> {
    fn up(scratch: &'a Scratch) -> Self {
        let (code, stdout, stderr) = output(broker_command(
            scratch,
            &["up", "--detach", "--tls", "--tls-client-auth"],
        ));
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(
            stdout.contains("amqps://guest:guest@127.0.0.1:"),
            "{stdout}"
        );
        assert!(stdout.contains("TLS CA"), "{stdout}");
        let state = serde_json::from_str(
            &std::fs::read_to_string(scratch.path.join("state.json")).unwrap(),
        )
        .unwrap();
        Self { scratch, state }
    }

    fn uri(&self, scheme: &str) -> String {
        let port = self.state["nodes"][0]["amqp_port"].as_u64().unwrap();
        format!("{scheme}://guest:guest@127.0.0.1:{port}/%2f")
    }

    fn file(&self, key: &str) -> String {
        self.state["tls"][key].as_str().unwrap().to_string()
    }

    /// An external `[broker]` naming this node, with a `[broker.tls]` of `tls` lines.
    fn broker(&self, scheme: &str, tls: &str) -> String {
        format!(
            "[broker]\nmode = \"external\"\nuris = [\"{}\"]\n{tls}",
            self.uri(scheme)
        )
    }
}

impl Drop for TlsNode<'_> {
    fn drop(&mut self) {
        let _ = output(broker_command(self.scratch, &["down"]));
    }
}

/// Asserts a start-up check ended with exit 3 and one error line containing `reason`.
fn refused(code: i32, output: &str, reason: &str) {
    assert_eq!(code, 3, "{output}");
    let errors: Vec<&str> = output.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{output}");
    assert!(errors[0].contains(reason), "{output}");
}

#[test]
fn a_node_that_demands_client_certificates_takes_warrens_and_names_what_others_lack() {
    // Its node and fault runs load the machine: not beside a cluster or a sweep.
    let scratch = Scratch::several("tls-client-auth");
    let node = TlsNode::up(&scratch);
    assert!(
        node.state["nodes"][0]["uri"]
            .as_str()
            .unwrap()
            .starts_with("amqps://"),
        "{}",
        node.state
    );
    let trusted = format!(
        "[broker.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        node.file("ca_cert"),
        node.file("client_cert"),
        node.file("client_key")
    );

    // With warren's certificate: the reliable recipe through a blackhole longer than
    // heartbeat detection, a reset of every connection and a slicer, over TLS.
    // A slicer cuts the TLS records into pieces a few bytes long on their way.
    let faults = "[[faults]]\nat = \"2s\"\nkind = \"blackhole\"\nstream = \"both\"\nfor = \"4s\"\n[[faults]]\nat = \"9s\"\nkind = \"reset_peer\"\nfor = \"1s\"\n[[faults]]\nat = \"12s\"\nkind = \"slicer\"\naverage_size = 16\nsize_variation = 8\nstream = \"both\"\nfor = \"2s\"\n";
    let (code, out, summary) = run(
        &scratch,
        "faults.toml",
        &reliable("tls-faults", 16, &node.broker("amqps", &trusted), faults),
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(lost_confirmed(&summary), 0, "{out}");
    assert!(
        summary["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "reconnected"),
        "the faults cut the TLS connections: {out}"
    );
    assert!(
        summary["nodes"][0]["version"].is_string(),
        "the TLS probe read the node's greeting: {}",
        summary["nodes"]
    );

    // No client certificate.
    let ca_only = format!("[broker.tls]\nca_file = \"{}\"\n", node.file("ca_cert"));
    let (code, out, _) = run(
        &scratch,
        "no-cert.toml",
        &reliable("tls-no-cert", 2, &node.broker("amqps", &ca_only), ""),
    );
    refused(code, &out, "demands a client certificate");

    // A CA that did not issue the node's certificate.
    let wrong_ca = format!(
        "[broker.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        node.file("server_cert"),
        node.file("client_cert"),
        node.file("client_key")
    );
    let (code, out, _) = run(
        &scratch,
        "wrong-ca.toml",
        &reliable("tls-wrong-ca", 2, &node.broker("amqps", &wrong_ca), ""),
    );
    refused(code, &out, "certificate is not trusted");

    // The same without verification: it runs, and says so.
    let unverified = wrong_ca.replace("[broker.tls]\n", "[broker.tls]\nverify = false\n");
    let (code, out, summary) = run(
        &scratch,
        "unverified.toml",
        &reliable("tls-unverified", 2, &node.broker("amqps", &unverified), ""),
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning:") && out.contains("verify = false"),
        "{out}"
    );
    let warnings = summary["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("verify = false")),
        "{warnings:?}"
    );

    // The TLS port named as plain AMQP.
    let (code, out, _) = run(
        &scratch,
        "plain.toml",
        &reliable("tls-plain", 2, &node.broker("amqp", ""), ""),
    );
    refused(code, &out, "use amqps://");
    drop(node);
    scratch.assert_clean();
}

#[test]
fn a_tls_node_of_warrens_own_runs_the_reliable_recipe_over_amqps() {
    let scratch = Scratch::new("tls-managed");
    let (code, out, summary) = run(
        &scratch,
        "managed.toml",
        &reliable("tls-managed", 4, "[broker]\ntls = true\n", ""),
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(lost_confirmed(&summary), 0);
    let broker: Value = serde_json::from_str(
        &std::fs::read_to_string(scratch.path.join("out-managed.toml/broker.json")).unwrap(),
    )
    .unwrap();
    let uri = broker["nodes"][0]["uri"].as_str().unwrap();
    assert!(uri.starts_with("amqps://guest:****@127.0.0.1:"), "{broker}");
    assert_eq!(broker["connected"], 1, "{broker}");
    scratch.assert_clean();
}

#[test]
fn a_three_node_tls_cluster_loses_nothing_confirmed_when_its_leader_is_killed() {
    let scratch = Scratch::cluster("tls-cluster");
    // Bound by time, and held until 8 s after the kill has ended: beside two busy loops,
    // finding the leader outlasted 32 s of messages once, and the kill never began.
    let text = reliable(
        "tls-cluster",
        16,
        "[broker]\nnodes = 3\ntls = true\ntls_client_auth = true\n",
        "[[faults]]\nat = \"4s\"\nkind = \"broker_kill\"\nnode = \"leader\"\nfor = \"3s\"\n",
    )
    .replace(
        "messages = 6400",
        "duration = \"16s\"\nafter_faults = \"8s\"",
    )
    .replace(
        "queue = { type = \"classic\", durable = true }",
        "queue = { type = \"quorum\" }",
    );
    let (code, out, summary) = run(&scratch, "cluster.toml", &text);
    assert_eq!(code, 0, "{out}");
    assert_eq!(lost_confirmed(&summary), 0, "{out}");
    let outcome = &summary["faults"]["faults"][0]["outcome"];
    assert_eq!(outcome, "applied", "{out}");
    scratch.assert_clean();
}
