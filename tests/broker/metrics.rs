//! `--metrics-listen` against a real Prometheus server (Debian's `prometheus` package):
//! it scrapes a 20 s run with a fault, and its query API shows the deliveries growing, the
//! fault's window, the verdict, and data for every query of the Grafana dashboard.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Scratch, closed_port, output};

const SCENARIO: &str = r#"
name = "metrics"
duration = "20s"
seed = 3

[broker]
mode = "managed"

[publishers]
count = 2
rate = 500
max_in_flight = 128
heartbeat = "2s"
confirm_timeout = "4s"

[consumers]
count = 2
prefetch = 100
heartbeat = "2s"

# A 5 s network outage on the consumers' path: deliveries stop, confirmed messages pile
# up as missing, and the consumers reconnect.
[[faults]]
at = "6s"
kind = "blackhole"
stream = "both"
path = "consumers"
for = "5s"

[gates]
max_lost_confirmed = 0
max_lost_unconfirmed = 0
"#;

/// A Prometheus server of the test's own, scraping one target every second.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(scratch: &Scratch, target_port: u16) -> Self {
        let binary = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("Prometheus is not installed: scripts/test.sh installs Debian's `prometheus` package");
        let port = closed_port();
        let config = scratch.file(
            "prometheus.yml",
            &format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: warren\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        );
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                scratch.path.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        let prometheus = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while get(port, "/-/ready").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "Prometheus was not ready within 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        prometheus
    }

    /// `query_range` from `start` to `end` (Unix seconds), one point a second: each series'
    /// labels and values.
    fn range(&self, query: &str, start: f64, end: f64) -> Vec<(Value, Vec<f64>)> {
        let path = format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step=1",
            encode(query)
        );
        let (status, body) = get(self.port, &path);
        assert_eq!(status, 200, "{query}: {body}");
        let answer: Value = serde_json::from_str(&body).expect("JSON");
        answer["data"]["result"]
            .as_array()
            .expect("a matrix")
            .iter()
            .map(|series| {
                let values = series["values"]
                    .as_array()
                    .expect("values")
                    .iter()
                    .map(|point| point[1].as_str().expect("a number").parse().expect("f64"))
                    .collect();
                (series["metric"].clone(), values)
            })
            .collect()
    }

    /// An instant query at `at`: the single series' value.
    fn value(&self, query: &str, at: f64) -> f64 {
        let (status, body) = get(
            self.port,
            &format!("/api/v1/query?query={}&time={at:.3}", encode(query)),
        );
        assert_eq!(status, 200, "{query}: {body}");
        let answer: Value = serde_json::from_str(&body).expect("JSON");
        let result = answer["data"]["result"].as_array().expect("a vector");
        assert_eq!(result.len(), 1, "{query}: {body}");
        result[0]["value"][1]
            .as_str()
            .expect("a number")
            .parse()
            .expect("f64")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET on loopback: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

fn encode(query: &str) -> String {
    percent_encoding::utf8_percent_encode(query, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// Every PromQL expression of the dashboard (panels and annotations), with Grafana's
/// variables given values Prometheus understands.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/warren-dashboard.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard")).expect("JSON");
    let concrete = |expr: &str| {
        expr.replace("$__rate_interval", "5s")
            .replace("$instance", ".*")
    };
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            queries.push((
                panel["title"].as_str().expect("a title").to_string(),
                concrete(target["expr"].as_str().expect("an expression")),
            ));
        }
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .expect("annotations")
    {
        queries.push((
            format!("annotation {}", annotation["name"]),
            concrete(annotation["expr"].as_str().expect("an expression")),
        ));
    }
    queries
}

#[test]
fn prometheus_scrapes_a_run_with_a_fault_and_the_dashboard_has_data() {
    let scratch = Scratch::new("metrics");
    let metrics_port = closed_port();
    let prometheus = Prometheus::start(&scratch, metrics_port);
    let scenario = scratch.file("metrics.toml", SCENARIO);
    let out = scratch.path.join("out");
    let mut run = scratch.warren_run(&scenario, &out);
    run.args([
        "--progress",
        "plain",
        "--metrics-listen",
        &format!("127.0.0.1:{metrics_port}"),
        "--metrics-linger",
        "30s",
    ]);
    let started = unix_now();
    let (code, stdout, stderr) = output(run);
    let ended = unix_now();
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains(&format!("metrics: http://127.0.0.1:{metrics_port}/metrics")),
        "{stdout}"
    );
    assert!(
        stdout.contains("metrics: final figures scraped"),
        "{stdout}"
    );

    // Deliveries grow through the run.
    let delivered = prometheus.range("warren_delivered_total", started, ended);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let values = &delivered[0].1;
    println!(
        "warren_delivered_total, one point a second: {:?}",
        values.iter().map(|v| *v as u64).collect::<Vec<_>>()
    );
    assert!(
        values.windows(2).all(|w| w[0] <= w[1]),
        "a counter never goes down: {values:?}"
    );
    let rises = values.windows(2).filter(|w| w[0] < w[1]).count();
    assert!(rises >= 10, "delivered rose in {rises} seconds: {values:?}");
    assert!(
        *values.last().unwrap() >= 9_000.0,
        "20 s at 500 msg/s: {values:?}"
    );

    // The fault's window: 0 before it, 1 for about its 5 s, 0 after.
    let fault = prometheus.range("warren_fault_active", started, ended);
    assert_eq!(fault.len(), 1, "one fault: {fault:?}");
    let (labels, values) = &fault[0];
    println!(
        "warren_fault_active{{fault={}}}, one point a second: {:?}",
        labels["fault"],
        values.iter().map(|v| *v as u8).collect::<Vec<_>>()
    );
    let active = values.iter().filter(|v| **v == 1.0).count();
    assert!(
        (3..=8).contains(&active),
        "in effect for {active} s: {values:?}"
    );
    let first_active = values.iter().position(|v| *v == 1.0).unwrap();
    assert!(
        first_active >= 3 && values[..first_active].iter().all(|v| *v == 0.0),
        "0 from the start of publishing until the fault began at 6 s: {values:?}"
    );
    assert_eq!(values.last(), Some(&0.0), "over by the end: {values:?}");
    // While it held deliveries back, confirmed messages were missing.
    let missing = prometheus.range("warren_missing", started, ended);
    let most_missing = missing[0].1.iter().copied().fold(0.0, f64::max);
    println!("warren_missing peaked at {most_missing}");
    assert!(
        most_missing > 100.0,
        "missing during the outage: {:?}",
        missing[0].1
    );

    // The verdict, read after the run.
    let passed = prometheus.value("warren_verdict_passed", ended);
    let lost = prometheus.value("warren_lost_confirmed", ended);
    let duplicated = prometheus.value("warren_duplicated", ended);
    let reconnects = prometheus.value("warren_reconnects_total{role=\"consumer\"}", ended);
    println!(
        "at the end: warren_verdict_passed {passed}, warren_lost_confirmed {lost}, warren_duplicated {duplicated}, consumer reconnects {reconnects}"
    );
    assert_eq!(passed, 1.0);
    assert_eq!(lost, 0.0);
    assert!(
        reconnects >= 1.0,
        "the consumers reconnected after the outage"
    );
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("summary.json")).expect("summary.json"),
    )
    .expect("JSON");
    assert_eq!(
        summary["verdict"]["totals"]["duplicated"].as_f64(),
        Some(duplicated),
        "the gauge is the report's figure"
    );

    // Every query of the Grafana dashboard returns data for the run (the verdict's only
    // from the last scrape on, which the grid of whole seconds from the start may not
    // reach before `ended`).
    for (panel, query) in dashboard_queries() {
        let series = prometheus.range(&query, started, ended + 2.0);
        assert!(
            series.iter().any(|(_, values)| !values.is_empty()),
            "dashboard panel {panel:?}: {query} returned no data"
        );
    }
    drop(prometheus);
    scratch.assert_clean();
}
