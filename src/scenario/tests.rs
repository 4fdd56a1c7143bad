//! Scenario parsing and lowering on whole files: defaults, every section, overrides.

use std::path::Path;
use std::time::Duration;

use super::*;

fn plan(text: &str) -> Plan {
    parse(Path::new("t.toml"), text, Overrides::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn problems(text: &str) -> String {
    parse(Path::new("t.toml"), text, Overrides::default())
        .expect_err("the scenario should be refused")
        .to_string()
}

const DESIGN_EXAMPLE: &str = r#"
name = "seed-reliable-restart"
description = "Classic reliable recipe survives a broker restart with no confirmed loss"
duration = "60s"
seed = 42

[broker]
mode = "managed"
nodes = 1

[topology]
queue = { type = "classic", durable = true, arguments = { "x-max-length" = 100000, "x-overflow" = "reject-publish" } }
exchange = { name = "", kind = "direct" }

[publishers]
count = 4
confirm = true
max_in_flight = 256
persistent = true
mandatory = true
rate = 5000
size = { min = 100, max = "4KiB" }
on_failure = "republish"
connections = 2
confirm_timeout = "10s"
heartbeat = "5s"

[consumers]
count = 2
ack = "manual"
prefetch = 100
multiple_ack_every = 1
processing_delay = "1ms"
crash_every = 5000

[[faults]]
at = "20s"
kind = "broker_restart"

[[faults]]
at = "30s"
kind = "latency"
latency = "100ms"
latency_jitter = "10ms"
path = "publishers"
stream = "both"
for = "10s"

[[faults]]
every = "15s"
jitter = "2s"
count = 3
kind = "broker_pause"
for = "3s"

[chaos]
kinds = { down = 2, latency = 1, broker_kill = 1 }
every = "20s"
jitter = "5s"
for = "5s"

[gates]
max_lost_confirmed = 0
max_lost_unconfirmed = 0
max_duplicates = 1000
p99_e2e_ms = 250
min_throughput = 3000
max_recovery = "30s"

[sweep]
start = 1000
step = 2000
stop = 7000
step_duration = "30s"
p99_e2e_ms = 50

[report]
dir = "out"
formats = ["console", "csv", "json"]
"#;

#[test]
fn the_design_example_parses_into_a_complete_plan() {
    let plan = plan(DESIGN_EXAMPLE);
    assert_eq!(plan.name, "seed-reliable-restart");
    assert_eq!(plan.seed, 42);
    assert_eq!(plan.stop.duration, Some(Duration::from_secs(60)));
    assert_eq!(
        plan.broker,
        BrokerPlan::Managed(ManagedBrokerPlan {
            nodes: 1,
            first_port: None,
            keep: false,
            root: None,
            tls: None,
        })
    );
    assert_eq!(
        plan.topology.arguments["x-max-length"],
        QueueArgument::Int(100_000)
    );
    assert_eq!(
        plan.publishers.size,
        BodySize::Uniform {
            min: 100,
            max: 4096
        }
    );
    assert_eq!(plan.publishers.connections, 2);
    assert_eq!(plan.publishers.rate, Some(5000.0));
    assert_eq!(plan.consumers.crash_every, Some(5000));
    assert_eq!(
        plan.consumers.processing_delay,
        Some(Duration::from_millis(1))
    );
    assert_eq!(plan.faults.len(), 3);
    assert_eq!(
        plan.faults[0].action,
        FaultAction::BrokerRestart {
            node: NodeSelector::Index(0)
        }
    );
    assert_eq!(
        plan.faults[1].action,
        FaultAction::Toxic {
            toxic: Toxic::Latency {
                latency: Duration::from_millis(100),
                jitter: Duration::from_millis(10)
            },
            path: TrafficPath::Publishers,
            stream: StreamDirection::Both,
            toxicity: 1.0,
        }
    );
    assert_eq!(
        plan.faults[2].schedule.at,
        Duration::from_secs(15),
        "a repeating fault starts after one period"
    );
    assert_eq!(plan.faults[2].schedule.count, Some(3));
    let chaos = plan.chaos.expect("chaos");
    assert_eq!(chaos.kinds[&FaultKindName::Down], 2);
    assert_eq!(plan.gates.max_recovery, Some(Duration::from_secs(30)));
    assert_eq!(
        plan.sweep.expect("sweep").rates,
        vec![1000.0, 3000.0, 5000.0, 7000.0]
    );
    assert_eq!(
        plan.report.formats,
        vec![ReportFormat::Console, ReportFormat::Csv, ReportFormat::Json]
    );
}

#[test]
fn a_minimal_scenario_gets_the_documented_defaults() {
    let plan = plan("name = \"minimal\"\n");
    assert_eq!(plan.stop.duration, Some(Duration::from_secs(60)));
    assert_eq!(plan.seed, 1);
    assert_eq!(plan.drain_timeout, Duration::from_secs(30));
    assert_eq!(plan.broker.node_count(), 1);
    assert_eq!(plan.topology.queue_type, QueueType::Classic);
    assert!(plan.topology.durable);
    let p = &plan.publishers;
    assert_eq!(
        (
            p.count,
            p.confirm,
            p.max_in_flight,
            p.persistent,
            p.mandatory
        ),
        (1, true, 256, true, true)
    );
    assert_eq!(
        (p.rate, p.size, p.on_failure),
        (None, BodySize::Fixed(1024), OnFailure::Republish)
    );
    assert_eq!(p.heartbeat, Duration::from_secs(5));
    let c = &plan.consumers;
    assert_eq!(
        (c.count, c.ack, c.prefetch, c.multiple_ack_every),
        (1, AckMode::Manual, 100, 1)
    );
    assert_eq!(plan.gates.max_lost_confirmed, Some(0));
    assert_eq!(plan.gates.max_duplicates, None);
    assert_eq!(plan.report.dir, Path::new("reports"));
    assert_eq!(plan.report.formats.len(), 6);
}

#[test]
fn without_confirms_unconfirmed_messages_are_dropped_by_default() {
    let plan = plan(
        "name = \"naive\"\n[publishers]\nconfirm = false\npersistent = false\n[consumers]\nack = \"auto\"\n",
    );
    assert_eq!(plan.publishers.on_failure, OnFailure::Drop);
    assert!(
        problems("name = \"x\"\n[publishers]\nconfirm = false\non_failure = \"republish\"\n")
            .contains("needs confirm = true")
    );
    assert!(
        problems("name = \"x\"\n[publishers]\nconfirm = false\nmax_in_flight = 5\n")
            .contains("only used with confirm = true")
    );
}

#[test]
fn a_message_count_alone_bounds_the_run() {
    let plan = plan("name = \"counted\"\nmessages = 1_000\n");
    assert_eq!(
        plan.stop,
        StopCondition {
            duration: None,
            messages_per_publisher: Some(1000),
            after_faults: None,
        }
    );
}

#[test]
fn the_duration_override_replaces_the_file_and_is_named_in_fault_errors() {
    let text =
        "name = \"x\"\nduration = \"60s\"\n[[faults]]\nat = \"20s\"\nkind = \"broker_restart\"\n";
    let short = Overrides {
        duration: Some(Duration::from_secs(10)),
        ..Overrides::default()
    };
    let error = parse(Path::new("t.toml"), text, short)
        .unwrap_err()
        .to_string();
    assert!(error.contains("t.toml:4:6: faults[0].at"), "{error}");
    assert!(error.contains("set by --duration"), "{error}");
    let long = Overrides {
        duration: Some(Duration::from_secs(90)),
        ..Overrides::default()
    };
    assert_eq!(
        parse(Path::new("t.toml"), text, long)
            .unwrap()
            .stop
            .duration,
        Some(Duration::from_secs(90))
    );
}

#[test]
fn external_brokers_need_uris_and_consent_for_node_faults() {
    let text = r#"
name = "ext"
[broker]
mode = "external"
uris = ["amqp://u:secret@127.0.0.1:5672/%2f", "amqp://u:secret@127.0.0.1:5673/%2f"]
allow_destructive = true
restart_command = "docker compose restart rabbitmq"
[[faults]]
at = "10s"
kind = "broker_restart"
node = 1
"#;
    let plan = plan(text);
    let BrokerPlan::External(external) = &plan.broker else {
        panic!("external")
    };
    assert_eq!(external.uris.len(), 2);
    assert!(
        !serde_json::to_string(&plan).unwrap().contains("secret"),
        "passwords never reach a file"
    );
    assert_eq!(
        plan.faults[0].action,
        FaultAction::BrokerRestart {
            node: NodeSelector::Index(1)
        }
    );
    let managed_with_uris = problems("name = \"x\"\n[broker]\nuris = [\"amqp://h\"]\n");
    assert!(
        managed_with_uris.contains("broker.uris: only used with mode = \"external\""),
        "{managed_with_uris}"
    );
}

#[test]
fn node_faults_name_existing_nodes_and_node_kill_needs_a_cluster() {
    let kill = "name = \"x\"\n[[faults]]\nat = \"5s\"\nkind = \"node_kill\"\nnode = 2\n";
    let error = problems(kill);
    assert!(
        error.contains("faults[0].node = 2: expected a node index from 0 to 0"),
        "{error}"
    );
    assert!(error.contains("needs a cluster"), "{error}");
    let cluster = kill.replace("name = \"x\"\n", "name = \"x\"\n[broker]\nnodes = 3\n");
    assert_eq!(
        plan(&cluster).faults[0].action,
        FaultAction::NodeKill {
            node: NodeSelector::Index(2)
        }
    );
    let leader =
        "name = \"x\"\n[[faults]]\nat = \"5s\"\nkind = \"broker_kill\"\nnode = \"leader\"\n";
    assert_eq!(
        plan(leader).faults[0].action,
        FaultAction::BrokerKill {
            node: NodeSelector::Leader
        }
    );
    assert!(problems(&leader.replace("leader", "boss")).contains("\"leader\" or \"random\""));
}

#[test]
fn partitions_need_a_cluster_of_warren_s_own_nodes() {
    let one = "name = \"x\"\n[[faults]]\nat = \"5s\"\nkind = \"partition\"\nfor = \"5s\"\n";
    assert!(problems(one).contains("\"partition\": needs a cluster"));
    let external = one.replace(
        "name = \"x\"\n",
        "name = \"x\"\n[broker]\nmode = \"external\"\nuris = [\"amqp://a:b@127.0.0.1:5672/%2f\"]\nallow_destructive = true\n",
    );
    assert!(problems(&external).contains("only warren's own nodes can be partitioned"));
    let without_for = one.replace("for = \"5s\"\n", "");
    assert!(problems(&without_for).contains("for"));
    let cluster = plan(&one.replace("name = \"x\"\n", "name = \"x\"\n[broker]\nnodes = 3\n"));
    assert!(cluster.has_partitions());
    assert!(!plan("name = \"x\"\n").has_partitions());
}

#[test]
fn chaos_kinds_are_checked_by_name() {
    let error =
        problems("name = \"x\"\n[chaos]\nkinds = { dwon = 1 }\nevery = \"10s\"\nfor = \"2s\"\n");
    assert!(
        error.contains("t.toml:3:11: chaos.kinds.dwon: unknown fault kind"),
        "{error}"
    );
}

#[test]
fn a_stream_queue_takes_one_manual_ack_consumer_with_a_prefetch() {
    let error = problems(
        "name = \"x\"\n[topology]\nqueue = { type = \"stream\" }\n[consumers]\ncount = 2\nack = \"auto\"\nprefetch = 0\n",
    );
    for expected in [
        "t.toml:6:7: consumers.ack = \"auto\": a stream queue takes ack = \"manual\"",
        "t.toml:7:12: consumers.prefetch = 0: a stream queue needs a prefetch",
        "t.toml:5:9: consumers.count = 2: a stream queue takes 1 consumer",
    ] {
        assert!(error.contains(expected), "{expected}\n{error}");
    }
    let plan = plan("name = \"x\"\n[topology]\nqueue = { type = \"stream\" }\n");
    assert_eq!(plan.topology.queue_type, QueueType::Stream);
}

#[test]
fn an_error_chain_printed_whole_says_each_problem_once() {
    let invalid = load(
        Path::new("scenarios/network-chaos.toml"),
        Overrides {
            duration: Some(Duration::from_secs(5)),
            ..Overrides::default()
        },
    )
    .unwrap_err();
    let missing = load(Path::new("no/such/file.toml"), Overrides::default()).unwrap_err();
    for (error, needle) in [(invalid, "chaos.start"), (missing, "No such file")] {
        let chain = format!("{:#}", anyhow::Error::from(error));
        assert_eq!(chain.matches(needle).count(), 1, "{chain}");
    }
}

#[test]
fn heartbeats_are_whole_seconds() {
    let error = problems("name = \"x\"\n[publishers]\nheartbeat = \"500ms\"\n");
    assert!(
        error.contains("publishers.heartbeat = \"500ms\": AMQP heartbeats are whole seconds"),
        "{error}"
    );
}

#[test]
fn sweeps_take_a_list_or_a_range_but_not_both() {
    assert_eq!(
        plan("name = \"x\"\n[sweep]\nrates = [100, 200]\n")
            .sweep
            .unwrap()
            .rates,
        vec![100.0, 200.0]
    );
    assert!(problems("name = \"x\"\n[sweep]\nrates = [100]\nstart = 5\n").contains("not both"));
    assert!(
        problems("name = \"x\"\n[sweep]\nstart = 500\nstep = 10\nstop = 100\n")
            .contains("sweep.stop = 100")
    );
}

#[test]
fn unsupported_format_versions_are_refused() {
    assert!(
        problems("version = 2\nname = \"x\"\n")
            .contains("t.toml:1:11: version = 2: this warren reads scenario format version 1")
    );
}

#[test]
fn the_final_read_is_on_unless_the_queue_is_kept_or_the_scenario_says() {
    assert_eq!(
        plan("name = \"x\"\n").final_read,
        Some(Duration::from_secs(30))
    );
    let kept = plan("name = \"x\"\n[topology]\nqueue = { keep = true }\n");
    assert_eq!(kept.final_read, None);
    let asked = plan(
        "name = \"x\"\nfinal_read = true\nfinal_read_timeout = \"5s\"\n[topology]\nqueue = { keep = true }\n",
    );
    assert_eq!(asked.final_read, Some(Duration::from_secs(5)));
    assert_eq!(plan("name = \"x\"\nfinal_read = false\n").final_read, None);
    assert_eq!(
        plan("name = \"x\"\n").consumers.stall_timeout,
        Duration::from_secs(5)
    );
}

#[test]
fn dead_letters_are_read_for_warren_s_own_queues_only() {
    let own = plan("name = \"x\"\n");
    assert!(own.topology.dead_letter);
    assert_eq!(own.gates.max_dead_lettered, Some(0));
    for text in [
        "name = \"x\"\n[topology]\nqueue = { name = \"orders\" }\n",
        "name = \"x\"\n[topology]\nqueue = { type = \"stream\" }\n",
        "name = \"x\"\n[topology]\nqueue = { arguments = { \"x-dead-letter-exchange\" = \"mine\" } }\n",
        "name = \"x\"\n[topology]\ndead_letter = false\n",
    ] {
        let p = plan(text);
        assert!(!p.topology.dead_letter, "{text}");
        assert_eq!(p.gates.max_dead_lettered, None, "{text}");
    }
    let named =
        plan("name = \"x\"\n[topology]\nqueue = { name = \"orders\" }\ndead_letter = true\n");
    assert!(named.topology.dead_letter);
    let error = problems(
        "name = \"x\"\n[topology]\nqueue = { arguments = { \"x-dead-letter-exchange\" = \"mine\" } }\ndead_letter = true\n",
    );
    assert!(error.contains("t.toml:4:15: topology.dead_letter = true: the queue names its own x-dead-letter-exchange"), "{error}");
}

#[test]
fn a_blackhole_holds_both_ways_and_a_short_dropping_timeout_is_warned_about() {
    let p = plan(
        "name = \"x\"\nduration = \"20s\"\n[[faults]]\nkind = \"blackhole\"\nat = \"5s\"\nfor = \"2s\"\n",
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    match p.faults[0].action {
        FaultAction::Toxic {
            toxic: Toxic::Blackhole { hold },
            stream,
            ..
        } => {
            assert_eq!(hold, Duration::from_secs(2));
            assert_eq!(stream, StreamDirection::Both);
        }
        other => panic!("{other:?}"),
    }
    let short = "name = \"x\"\nduration = \"20s\"\n[consumers]\nheartbeat = \"10s\"\n[[faults]]\nkind = \"timeout\"\npath = \"consumers\"\nat = \"5s\"\nfor = \"2s\"\n";
    let warned = plan(short);
    assert_eq!(warned.warnings.len(), 1, "{:?}", warned.warnings);
    assert!(
        warned.warnings[0].starts_with("t.toml:6:8: faults[0].kind: kind = \"timeout\" drops bytes for 2s on the consumers' path, shorter than heartbeat detection (20s)"),
        "{}",
        warned.warnings[0]
    );
    // Long enough for heartbeats to notice, or closing the connection first: no warning.
    assert!(
        plan(
            &short
                .replace("for = \"2s\"", "for = \"12s\"")
                .replace("heartbeat = \"10s\"", "heartbeat = \"5s\"")
        )
        .warnings
        .is_empty()
    );
    assert!(
        plan(&short.replace("at = \"5s\"", "at = \"5s\"\ntimeout = \"1s\""))
            .warnings
            .is_empty()
    );
    // Both paths: one warning each.
    assert_eq!(
        plan(&short.replace("path = \"consumers\"", "path = \"all\""))
            .warnings
            .len(),
        2
    );
}

#[test]
fn many_queues_need_a_consumer_each_and_routes_that_reach_a_queue() {
    let p = plan("name = \"x\"\n[topology]\nqueues = 8\n[consumers]\ncount = 8\n");
    assert_eq!(p.topology.queues, 8);
    let error = problems("name = \"x\"\n[topology]\nqueues = 4\n[consumers]\ncount = 3\n");
    assert!(
        error.contains("consumers.count = 3: every queue needs a consumer"),
        "{error}"
    );
    let error = problems("name = \"x\"\n[topology]\nqueues = 0\n");
    assert!(error.contains("topology.queues = 0"), "{error}");
    let fanout = plan(
        "name = \"x\"\n[topology]\nqueues = 4\nexchange = { name = \"fan\", kind = \"fanout\" }\n[consumers]\ncount = 4\n",
    );
    assert!(fanout.warnings.is_empty());
    let error = problems(
        "name = \"x\"\n[topology]\nqueues = 2\nexchange = { name = \"fan\", kind = \"fanout\", bindings = [\"a\"] }\n[consumers]\ncount = 2\n",
    );
    assert!(
        error.contains("topology.exchange.bindings: a fanout exchange ignores binding keys"),
        "{error}"
    );
    let error = problems(
        "name = \"x\"\n[topology]\nqueues = 2\nexchange = { routing_key = \"k\" }\n[consumers]\ncount = 2\n",
    );
    assert!(
        error.contains("topology.exchange.routing_key: with queues = 2 on the default exchange"),
        "{error}"
    );
    // A key no binding matches: an error without mandatory, a warning with it.
    let nowhere = "name = \"x\"\n[topology]\nqueues = 2\nexchange = { name = \"t\", kind = \"topic\", routing_key = \"eu.{n}\", bindings = [\"us.*\"] }\n[consumers]\ncount = 2\n";
    let error = problems(&format!("{nowhere}[publishers]\nmandatory = false\n"));
    assert!(
        error.contains("topology.exchange.bindings: publisher 0 routes with key \"eu.1\", which reaches no queue"),
        "{error}"
    );
    assert_eq!(plan(nowhere).warnings.len(), 1);
    let error = problems(
        "name = \"x\"\n[topology]\nqueues = 2\nqueue = { type = \"stream\" }\n[consumers]\ncount = 3\nack = \"manual\"\nprefetch = 10\n",
    );
    assert!(
        error.contains("consumers.count = 3: a stream queue takes 1 consumer (2 for queues = 2)"),
        "{error}"
    );
}

/// A scenario in a folder of its own beside a throwaway CA's files (names relative to it).
struct TlsFolder(std::path::PathBuf);

impl TlsFolder {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("warren-scenario-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        crate::broker::tls::generate(&dir, &["localhost".into()]).unwrap();
        Self(dir)
    }

    fn parse(&self, text: &str) -> Result<Plan, String> {
        parse(&self.0.join("t.toml"), text, Overrides::default()).map_err(|e| e.to_string())
    }
}

impl Drop for TlsFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const EXTERNAL_TLS: &str = "name = \"t\"\n[broker]\nmode = \"external\"\nuris = [\"amqps://u:p@rabbit:5671/%2f\"]\n[broker.tls]\n";

#[test]
fn broker_tls_files_are_read_from_the_scenarios_folder_and_checked() {
    let folder = TlsFolder::new("files");
    let plan = folder
        .parse(&format!("{EXTERNAL_TLS}ca_file = \"ca_certificate.pem\"\ncert_file = \"client_certificate.pem\"\nkey_file = \"client_key.pem\"\nserver_name = \"rabbit.internal\"\n"))
        .unwrap();
    let BrokerPlan::External(external) = plan.broker else {
        panic!("external")
    };
    let tls = external.tls.expect("[broker.tls]");
    assert_eq!(tls.ca_file, Some(folder.0.join("ca_certificate.pem")));
    assert_eq!(tls.server_name.as_deref(), Some("rabbit.internal"));
    assert!(tls.verify);
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);

    // Another certificate's key: the key's field is named, with its line.
    let error = folder
        .parse(&format!(
            "{EXTERNAL_TLS}cert_file = \"client_certificate.pem\"\nkey_file = \"server_key.pem\"\n"
        ))
        .unwrap_err();
    assert!(
        error.contains("t.toml:7:12: broker.tls.key_file = \"server_key.pem\": ")
            && error.contains("this key does not belong to the certificate"),
        "{error}"
    );
    // A key given as the CA.
    let error = folder
        .parse(&format!(
            "{EXTERNAL_TLS}ca_file = \"ca_key_is_not_here.pem\"\n"
        ))
        .unwrap_err();
    assert!(
        error.contains("broker.tls.ca_file") && error.contains("cannot be read"),
        "{error}"
    );
}

#[test]
fn verify_false_is_a_warning_and_tls_settings_fit_only_their_broker() {
    let folder = TlsFolder::new("verify");
    let plan = folder
        .parse(&format!("{EXTERNAL_TLS}verify = false\n"))
        .unwrap();
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("broker.tls.verify = false")),
        "{:?}",
        plan.warnings
    );
    // A table for warren's own nodes, and tls = true for an external broker.
    let error = folder
        .parse("name = \"t\"\n[broker.tls]\nca_file = \"ca_certificate.pem\"\n")
        .unwrap_err();
    assert!(
        error.contains("warren makes the certificates of its own nodes"),
        "{error}"
    );
    let error = folder
        .parse("name = \"t\"\n[broker]\nmode = \"external\"\nuris = [\"amqps://h\"]\ntls = true\n")
        .unwrap_err();
    assert!(
        error.contains("an external broker speaks TLS where its URIs are amqps://"),
        "{error}"
    );
    let error = folder
        .parse("name = \"t\"\n[broker]\nmode = \"external\"\nuris = [\"amqp://h\"]\n[broker.tls]\nverify = true\n")
        .unwrap_err();
    assert!(error.contains("applies to amqps:// URIs"), "{error}");
    // tls = true for warren's own nodes, with client certificates.
    let plan = folder
        .parse("name = \"t\"\n[broker]\ntls = true\ntls_client_auth = true\n")
        .unwrap();
    let BrokerPlan::Managed(managed) = plan.broker else {
        panic!("managed")
    };
    assert_eq!(
        managed.tls,
        Some(crate::tls::ManagedTls { client_auth: true })
    );
    let error = folder
        .parse("name = \"t\"\n[broker]\ntls_client_auth = true\n")
        .unwrap_err();
    assert!(error.contains("only used with tls = true"), "{error}");
}

/// Names and keys of exactly 255 bytes, as sent, are taken: the limit is the short
/// string's, not one byte less.
#[test]
fn names_and_keys_of_255_bytes_as_sent_are_taken() {
    let scenario = |queue: &str, exchange: &str, key: &str| {
        format!(
            r#"
name = "limits"
duration = "10s"
[topology]
queues = 10
[topology.queue]
name = "{queue}"
[topology.exchange]
name = "{exchange}"
routing_key = "{key}"
[consumers]
count = 10
"#
        )
    };
    let queue = "q".repeat(252);
    let exchange = "e".repeat(255);
    let key = format!("{}{{n}}", "k".repeat(253));
    let plan = plan(&scenario(&queue, &exchange, &key));
    assert_eq!(plan.topology.queues, 10);
    let refused = problems(&scenario(
        &format!("{queue}q"),
        &exchange,
        &format!("{key}k"),
    ));
    assert!(
        refused.contains("topology.queue.name: with queues = 10"),
        "{refused}"
    );
    assert!(
        refused.contains("topology.exchange.routing_key: 256 bytes"),
        "{refused}"
    );
    assert!(!refused.contains("topology.exchange.name"), "{refused}");
}
