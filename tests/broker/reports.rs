//! The run folder: every output format, read back with the tools of its format (CSV
//! headers against docs/run-folder.md, the HdrHistogram interval log reader, an XML parser,
//! headless Chromium), runs.csv growing run by run, warren report and warren compare.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use serde_json::Value;
use warren::report::{csv, files, timeseries};

use crate::helpers::{Scratch, output, warren};

const SCENARIO: &str = "name = \"outputs\"\nduration = \"4s\"\n[publishers]\nrate = 300\n[[faults]]\nat = \"1s\"\nkind = \"latency\"\nlatency = \"30ms\"\nfor = \"1s\"\n";

fn json(path: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn first_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_run_folder_holds_every_output_and_each_reads_back() {
    let scratch = Scratch::new("outputs");
    let runs = scratch.path.join("runs");
    let (a, b) = (runs.join("a"), runs.join("b"));
    let passing = scratch.file("a.toml", SCENARIO);
    let failing = scratch.file(
        "b.toml",
        &format!("{SCENARIO}[gates]\np99_e2e_ms = 0.001\n"),
    );
    let (code, stdout, stderr) = output(scratch.warren_run(&passing, &a));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = output(scratch.warren_run(&failing, &b));
    assert_eq!(code, 1, "{stdout}{stderr}");

    for file in [
        "summary.json",
        "verdict.json",
        "events.json",
        "summary.csv",
        "timeseries.csv",
        "events.csv",
        "latency.hlog",
        "latency.hgrm",
        "confirm.hgrm",
        "report.html",
        "junit.xml",
        "plan.json",
        "broker.json",
    ] {
        assert!(a.join(file).exists(), "{file} missing");
    }

    // CSV headers are the documented ones.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/run-folder.md"))
            .unwrap();
    let documented = [
        csv::columns::<csv::SummaryRow>().join(","),
        csv::columns::<timeseries::TimeseriesRow>().join(","),
        csv::columns::<files::EventRow>().join(","),
    ];
    for header in &documented {
        assert!(
            readme.lines().any(|l| l == header),
            "docs/run-folder.md does not document the columns {header}"
        );
    }
    assert_eq!(first_line(&a.join("summary.csv")), documented[0]);
    assert_eq!(first_line(&a.join("timeseries.csv")), documented[1]);
    assert_eq!(first_line(&a.join("events.csv")), documented[2]);

    // runs.csv grew by one row per run, header once.
    let table = std::fs::read_to_string(runs.join("runs.csv")).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert_eq!(lines[0], documented[0]);
    assert!(
        lines[1].ends_with(",pass") && lines[2].ends_with(",fail"),
        "{table}"
    );

    // The per-second table shows the fault.
    let series = std::fs::read_to_string(a.join("timeseries.csv")).unwrap();
    assert!(series.lines().count() >= 5, "{series}");
    assert!(
        series.lines().any(|l| l.ends_with(",latency 30ms all 1s")),
        "{series}"
    );

    // latency.hlog read back with HdrHistogram's reader gives the report's totals.
    let summary = json(&a.join("summary.json"));
    let log = std::fs::read(a.join("latency.hlog")).unwrap();
    let mut totals: HashMap<String, u64> = HashMap::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&log) {
        if let Ok(LogEntry::Interval(interval)) = entry {
            let bytes = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                interval.encoded_histogram(),
            )
            .unwrap();
            let histogram: hdrhistogram::Histogram<u64> =
                deserializer.deserialize(&mut bytes.as_slice()).unwrap();
            *totals
                .entry(
                    interval
                        .tag()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                )
                .or_default() += histogram.len();
        }
    }
    assert_eq!(
        totals["e2e"],
        summary["latency"]["e2e_intended"]["count"]
            .as_u64()
            .unwrap()
    );
    assert_eq!(
        totals["confirm"],
        summary["latency"]["confirm"]["count"].as_u64().unwrap()
    );
    assert_eq!(
        totals["e2e_sent"],
        summary["latency"]["e2e_sent"]["count"].as_u64().unwrap()
    );
    assert!(
        std::fs::read_to_string(a.join("latency.hgrm"))
            .unwrap()
            .contains("#[Max     =")
    );

    // junit.xml parses; the breached gate is a failing test case with the numbers.
    for (run, failures) in [(&a, 0), (&b, 1)] {
        let text = std::fs::read_to_string(run.join("junit.xml")).unwrap();
        let document =
            roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("junit.xml: {e}\n{text}"));
        let suite = document
            .descendants()
            .find(|n| n.has_tag_name("testsuite"))
            .unwrap();
        assert_eq!(
            suite.attribute("failures"),
            Some(failures.to_string().as_str()),
            "{text}"
        );
        if failures > 0 {
            let case = document
                .descendants()
                .find(|n| {
                    n.has_tag_name("testcase") && n.attribute("name") == Some("gate p99_e2e_ms")
                })
                .unwrap();
            let failure = case
                .children()
                .find(|n| n.has_tag_name("failure"))
                .expect("a failure element");
            assert!(
                failure.attribute("message").unwrap().contains("actual"),
                "{text}"
            );
        }
    }

    // warren report rebuilds the HTML and CSV from summary.json.
    std::fs::remove_file(a.join("report.html")).unwrap();
    std::fs::remove_file(a.join("timeseries.csv")).unwrap();
    let mut rebuild = warren();
    rebuild.arg("report").arg(&a);
    let (code, stdout, stderr) = output(rebuild);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(a.join("report.html").exists() && a.join("timeseries.csv").exists());
    assert_eq!(
        std::fs::read_to_string(a.join("timeseries.csv")).unwrap(),
        series
    );
    assert_eq!(
        std::fs::read_to_string(runs.join("runs.csv"))
            .unwrap()
            .lines()
            .count(),
        3,
        "runs.csv untouched"
    );

    // warren compare: no regression against itself; a halved throughput is one.
    let worse = scratch.path.join("worse");
    std::fs::create_dir_all(&worse).unwrap();
    let mut halved = summary.clone();
    halved["throughput"]["delivered_per_s"] =
        (summary["throughput"]["delivered_per_s"].as_f64().unwrap() / 2.0).into();
    std::fs::write(worse.join("summary.json"), halved.to_string()).unwrap();
    let compare = |other: &PathBuf| {
        let mut command = warren();
        command
            .arg("compare")
            .arg(&a)
            .arg(other)
            .args(["--fail-on-regression", "10"]);
        output(command)
    };
    let (code, stdout, _) = compare(&a);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("delivered msg/s"), "{stdout}");
    let (code, stdout, _) = compare(&worse);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("REGRESSION: delivered msg/s 50.0% worse"),
        "{stdout}"
    );

    html_renders_without_requests_and_with_charts(&a.join("report.html"), &scratch);
    scratch.assert_clean();
}

/// Headless Chromium renders the page with every request sent to a trap: none may come,
/// and the screenshot must show the charts' colours.
fn html_renders_without_requests_and_with_charts(page: &Path, scratch: &Scratch) {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|name| Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("headless Chromium is needed for this test: scripts/test.sh installs Debian's chromium package");
    // The page itself names nothing to fetch.
    let html = std::fs::read_to_string(page).unwrap();
    for pattern in [
        "http://", "https://", "<script", "<link", "url(", "@import", "src=", "<img", "<iframe",
    ] {
        assert!(!html.contains(pattern), "report.html contains {pattern:?}");
    }
    // Every request Chromium makes goes to a trap that notes its host.
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    let trap_port = trap.local_addr().unwrap().port();
    let (hosts, caught) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for mut socket in trap.incoming().flatten() {
            let _ = socket.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut buffer = [0u8; 512];
            let n = std::io::Read::read(&mut socket, &mut buffer).unwrap_or(0);
            let line = String::from_utf8_lossy(&buffer[..n])
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            // A connection that sent nothing asked for nothing: Chromium opens sockets to
            // its proxy ahead of need (once seen in CI) and closes them unused.
            if !line.is_empty() && hosts.send(request_host(&line)).is_err() {
                break;
            }
        }
    });
    let shot = scratch.path.join("report.png");
    let status = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!(
            "--user-data-dir={}",
            scratch.path.join("chromium").display()
        ))
        .arg(format!("--proxy-server=http://127.0.0.1:{trap_port}"))
        .arg("--proxy-bypass-list=<-loopback>")
        .arg("--window-size=1050,2400")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    // Chromium has exited, so each of its connections has ended and is read at once: a last
    // request of ours, once noted, comes after every one of them.
    let mut last = std::net::TcpStream::connect(("127.0.0.1", trap_port)).unwrap();
    std::io::Write::write_all(&mut last, b"GET http://trap.end/ HTTP/1.1\r\n\r\n").unwrap();
    let mut requested = Vec::new();
    loop {
        // A hang guard only: the trap notes each request as soon as it is read.
        let host = caught
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the trap noted every request");
        if host == "trap.end" {
            break;
        }
        requested.push(host);
    }
    // Chromium contacts its own services (time, updates, accounts) even for an empty page;
    // anything else would be the page's doing.
    let own = |host: &str| host.ends_with(".google.com") || host.ends_with(".googleapis.com");
    assert!(
        requested.iter().all(|host| own(host)),
        "the page made requests: {requested:?}"
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    let near = |p: &[u8], rgb: [u8; 3]| p.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) < 24);
    let count = |rgb: [u8; 3]| {
        pixels[..info.buffer_size()]
            .chunks(channels)
            .filter(|p| near(p, rgb))
            .count()
    };
    let blue = count([0x1f, 0x77, 0xb4]);
    let orange = count([0xff, 0x7f, 0x0e]);
    let shaded = count([0xfb, 0xe4, 0xe4]);
    assert!(
        blue > 300 && orange > 300,
        "charts look blank: {blue} blue, {orange} orange pixels"
    );
    assert!(shaded > 1000, "no fault window shaded: {shaded} pixels");
}

/// The host of a proxy request line ("GET http://host/path HTTP/1.1", "CONNECT host:443 HTTP/1.1").
fn request_host(line: &str) -> String {
    let target = line.split_whitespace().nth(1).unwrap_or_default();
    let without_scheme = target.split_once("://").map_or(target, |(_, rest)| rest);
    let authority = without_scheme.split('/').next().unwrap_or_default();
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
        .to_string()
}
