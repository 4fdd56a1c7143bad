//! The files shipped beside the binary: every library scenario documents what it proves
//! and is listed, docker-compose.yml fits the external scenario, and the Kubernetes
//! workers serve metrics where their pods say.

use std::path::Path;

use crate::helpers::{deploy_yaml, scenario_header, scenarios_dir};

/// Every scenario's header documents what it proves and its expected verdict.
#[test]
fn every_scenario_is_documented_and_listed() {
    let readme = std::fs::read_to_string(scenarios_dir().join("README.md")).unwrap();
    for entry in std::fs::read_dir(scenarios_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("# What it proves:"),
            "{name}: no 'What it proves'"
        );
        assert!(
            text.contains("# Expected verdict:"),
            "{name}: no expected verdict"
        );
        assert!(
            readme.contains(&format!("[{name}]({name}.toml)")),
            "scenarios/README.md does not list {name}"
        );
        if !text.contains("mode = \"external\"") {
            assert!(
                scenario_header(&text, "expect").is_some()
                    && scenario_header(&text, "test-duration").is_some(),
                "{name}: managed scenarios say how they are tested"
            );
        }
    }
}

/// docker-compose.yml parses, and its services and ports are the external scenario's.
#[test]
fn docker_compose_fits_the_external_scenario() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("docker-compose.yml")).unwrap())
            .unwrap();
    let services = &compose["services"];
    let ports = |service: &str| -> Vec<String> {
        services[service]["ports"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{service} publishes no ports"))
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    };
    let rabbit = ports("rabbitmq");
    let toxiproxy = ports("toxiproxy");
    // A current RabbitMQ (a 4.x line) beside Toxiproxy 2.12.
    let image = |service: &str| services[service]["image"].as_str().unwrap().to_string();
    assert!(
        image("rabbitmq").starts_with("rabbitmq:4."),
        "{}",
        image("rabbitmq")
    );
    assert!(
        image("toxiproxy").ends_with(":2.12.0"),
        "{}",
        image("toxiproxy")
    );
    assert!(
        services["rabbitmq"]["healthcheck"].is_mapping()
            && services["toxiproxy"]["healthcheck"].is_mapping()
    );
    let plan = warren::scenario::load(
        &scenarios_dir().join("external-docker.toml"),
        Default::default(),
    )
    .unwrap();
    let warren::scenario::BrokerPlan::External(external) = &plan.broker else {
        panic!("external-docker is external")
    };
    let published = |list: &[String], port: u16| {
        list.iter().any(|p| {
            let host_part = p.rsplit_once(':').map_or(p.as_str(), |(h, _)| h);
            let host_ports = host_part.rsplit(':').next().unwrap_or_default();
            match host_ports.split_once('-') {
                Some((a, b)) => {
                    (a.parse::<u16>().unwrap()..=b.parse::<u16>().unwrap()).contains(&port)
                }
                None => host_ports.parse::<u16>().ok() == Some(port),
            }
        })
    };
    assert!(
        published(&rabbit, external.uris[0].port()),
        "the broker URI's port is published: {rabbit:?}"
    );
    let api_port: u16 = plan
        .proxy
        .toxiproxy
        .as_deref()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert!(published(&toxiproxy, api_port), "{toxiproxy:?}");
    let first = plan.proxy.first_port.unwrap();
    for port in first..first + 2 * external.uris.len() as u16 {
        assert!(
            published(&toxiproxy, port),
            "proxy port {port} is published: {toxiproxy:?}"
        );
    }
    let upstream = &plan.proxy.upstreams.as_ref().unwrap()[0];
    assert_eq!(
        upstream.split(':').next(),
        Some("rabbitmq"),
        "the proxy reaches the broker by its service name"
    );
    let environment = &services["rabbitmq"]["environment"];
    let user = environment["RABBITMQ_DEFAULT_USER"].as_str().unwrap();
    assert!(
        external.uris[0].redacted().contains(&format!("//{user}:")),
        "the scenario logs in as the compose file's user"
    );
}

/// The port each worker serves metrics on is the one its pod tells Prometheus to scrape.
#[test]
fn the_workers_serve_metrics_where_their_pods_say() {
    let manifest = deploy_yaml("workers.yaml");
    let template = &manifest["spec"]["template"];
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    let port = annotations["prometheus.io/port"].as_str().unwrap();
    let container = &template["spec"]["containers"][0];
    let listen = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str()?.strip_prefix("--metrics-listen="))
        .next()
        .expect("the workers serve metrics");
    assert_eq!(listen, format!(":{port}"));
    let declared = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("a port named metrics");
    assert_eq!(
        declared["containerPort"].as_u64().unwrap().to_string(),
        port
    );
}
