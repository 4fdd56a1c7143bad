//! `warren toxiproxy`, the Toxiproxy-compatible API: every call of toxiproxy_rust (the Rust
//! ecosystem's Toxiproxy client) works against it, and raw HTTP calls get Toxiproxy's JSON
//! shapes and status codes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener as StdListener, TcpStream};
use std::time::{Duration, Instant};

use crate::helpers::warren;
use reqwest::blocking::Client as Http;
use serde_json::{Value, json};
use toxiproxy_rust::client::Client;
use toxiproxy_rust::proxy::ProxyPack;
use warren::toxiproxy::api;

/// `warren toxiproxy` on a free port, as a user runs it; interrupted (which deletes every
/// proxy) and reaped on drop.
struct Server {
    address: String,
    child: std::process::Child,
    echo: String,
}

impl Server {
    fn start() -> Self {
        let echo = StdListener::bind("127.0.0.1:0").unwrap();
        let echo_address = echo.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for mut socket in echo.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 1024];
                    while let Ok(n) = socket.read(&mut buffer) {
                        if n == 0 || socket.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let (child, address) = spawn_warren_toxiproxy();
        Self {
            address,
            child,
            echo: echo_address,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

/// `warren toxiproxy --listen 127.0.0.1:0`, its stdout read up to the first line (then
/// closed) and the address that line names.
fn spawn_warren_toxiproxy() -> (std::process::Child, String) {
    let mut child = warren()
        .args(["toxiproxy", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // "Toxiproxy-compatible API (Toxiproxy 2.12.0) on http://127.0.0.1:PORT; Ctrl-C stops it"
    let address = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    (child, address)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn round_trip(listen: &str, text: &[u8]) -> Duration {
    let started = Instant::now();
    let mut socket = TcpStream::connect(listen).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket.write_all(text).unwrap();
    let mut buffer = vec![0u8; text.len()];
    socket.read_exact(&mut buffer).unwrap();
    assert_eq!(buffer, text);
    started.elapsed()
}

#[test]
fn every_toxiproxy_rust_call_works_against_the_embedded_server() {
    let server = Server::start();
    let client = Client::new(server.address.as_str());
    assert!(client.is_running());
    let version: Value = serde_json::from_str(&client.version().unwrap()).unwrap();
    assert_eq!(version["version"], api::TOXIPROXY_VERSION);

    let proxies = client
        .populate(vec![
            ProxyPack::new("one".into(), "127.0.0.1:0".into(), server.echo.clone()),
            ProxyPack::new("two".into(), "127.0.0.1:0".into(), server.echo.clone()),
        ])
        .unwrap();
    assert_eq!(proxies.len(), 2);
    let all = client.all().unwrap();
    assert_eq!(all.len(), 2);
    let one = client.find_proxy("one").unwrap();
    let listen = one.proxy_pack.listen.clone();
    assert!(
        !listen.ends_with(":0"),
        "the port it got is shown: {listen}"
    );
    round_trip(&listen, b"plain");

    one.with_latency("downstream".into(), 200, 0, 1.0);
    assert!(round_trip(&listen, b"slow") >= Duration::from_millis(200));
    one.with_bandwidth("upstream".into(), 1000, 1.0)
        .with_slow_close("downstream".into(), 10, 1.0)
        .with_timeout("upstream".into(), 60_000, 0.0)
        .with_slicer("upstream".into(), 64, 8, 10, 1.0)
        .with_limit_data("downstream".into(), 1_000_000, 1.0);
    let toxics = one.toxics().unwrap();
    let mut names: Vec<&str> = toxics.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "bandwidth_upstream",
            "latency_downstream",
            "limit_data_downstream",
            "slicer_upstream",
            "slow_close_downstream",
            "timeout_upstream"
        ]
    );
    round_trip(&listen, b"through six toxics");
    one.delete_all_toxics().unwrap();
    assert!(one.toxics().unwrap().is_empty());

    one.disable().unwrap();
    assert!(!client.find_proxy("one").unwrap().proxy_pack.enabled);
    assert!(
        TcpStream::connect(&listen).is_err(),
        "a disabled proxy listens no more"
    );
    one.enable().unwrap();
    round_trip(&listen, b"back");
    one.with_down(|| assert!(TcpStream::connect(&listen).is_err()))
        .unwrap();
    round_trip(&listen, b"after down");

    one.with_latency("upstream".into(), 10, 0, 1.0);
    let reset = client.find_and_reset_proxy("one").unwrap();
    assert!(reset.toxics().unwrap().is_empty());
    client
        .find_proxy("two")
        .unwrap()
        .with_latency("downstream".into(), 5, 0, 1.0);
    client.reset().unwrap();
    assert!(
        client
            .find_proxy("two")
            .unwrap()
            .toxics()
            .unwrap()
            .is_empty()
    );
    client.find_proxy("two").unwrap().delete().unwrap();
    assert!(client.find_proxy("two").is_err());
    assert_eq!(client.all().unwrap().len(), 1);
}

fn call(http: &Http, method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let request = match method {
        "GET" => http.get(url),
        "POST" => http.post(url),
        "DELETE" => http.delete(url),
        other => panic!("{other}"),
    };
    let request = match body {
        Some(body) => request
            .header("Content-Type", "application/json")
            .body(body.to_string()),
        None => request,
    };
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, value)
}

#[test]
fn every_endpoint_answers_with_toxiproxys_shapes_and_status_codes() {
    let server = Server::start();
    let http = Http::new();
    let url = |path: &str| server.url(path);
    let upstream = server.echo.clone();

    assert_eq!(
        call(&http, "GET", &url("/version"), None),
        (200, json!({ "version": api::TOXIPROXY_VERSION }))
    );
    let (status, proxy) = call(
        &http,
        "POST",
        &url("/proxies"),
        Some(json!({ "name": "p", "listen": "127.0.0.1:0", "upstream": upstream })),
    );
    assert_eq!(status, 201);
    assert_eq!(
        (
            proxy["name"].clone(),
            proxy["enabled"].clone(),
            proxy["toxics"].clone()
        ),
        (json!("p"), json!(true), json!([]))
    );
    assert_eq!(proxy["upstream"], json!(upstream));
    let (status, error) = call(
        &http,
        "POST",
        &url("/proxies"),
        Some(json!({ "name": "p", "upstream": upstream })),
    );
    assert_eq!(
        (status, error),
        (
            409,
            json!({ "error": "proxy already exists", "status": 409 })
        )
    );
    assert_eq!(
        call(
            &http,
            "POST",
            &url("/proxies"),
            Some(json!({ "name": "q" }))
        )
        .0,
        400,
        "missing upstream"
    );
    assert_eq!(
        call(
            &http,
            "POST",
            &url("/proxies"),
            Some(json!({ "upstream": upstream }))
        )
        .0,
        400,
        "missing name"
    );
    let (status, error) = call(&http, "GET", &url("/proxies/nope"), None);
    assert_eq!(
        (status, error["status"].clone(), error["error"].clone()),
        (404, json!(404), json!("proxy not found"))
    );
    let (status, all) = call(&http, "GET", &url("/proxies"), None);
    assert_eq!((status, all["p"]["name"].clone()), (200, json!("p")));

    let (status, proxy) = call(
        &http,
        "POST",
        &url("/proxies/p"),
        Some(json!({ "enabled": false })),
    );
    assert_eq!((status, proxy["enabled"].clone()), (200, json!(false)));
    assert_eq!(
        call(
            &http,
            "POST",
            &url("/proxies/p"),
            Some(json!({ "enabled": true }))
        )
        .1["enabled"],
        json!(true)
    );

    let (status, toxic) = call(
        &http,
        "POST",
        &url("/proxies/p/toxics"),
        Some(json!({ "type": "latency", "attributes": { "latency": 100 } })),
    );
    assert_eq!(status, 200);
    assert_eq!(
        toxic,
        json!({ "name": "latency_downstream", "type": "latency", "stream": "downstream", "toxicity": 1.0, "attributes": { "latency": 100, "jitter": 0 } })
    );
    assert_eq!(
        call(
            &http,
            "POST",
            &url("/proxies/p/toxics"),
            Some(json!({ "type": "latency" }))
        )
        .0,
        409,
        "duplicate name"
    );
    assert_eq!(
        call(
            &http,
            "POST",
            &url("/proxies/p/toxics"),
            Some(json!({ "type": "explode" }))
        )
        .0,
        400,
        "unknown type"
    );
    assert_eq!(
        call(
            &http,
            "POST",
            &url("/proxies/p/toxics"),
            Some(json!({ "type": "latency", "name": "x", "stream": "sideways" }))
        )
        .0,
        400
    );
    assert_eq!(
        call(
            &http,
            "POST",
            &url("/proxies/p/toxics"),
            Some("{not json".into())
        )
        .0,
        400,
        "bad JSON"
    );
    assert_eq!(
        call(
            &http,
            "POST",
            &url("/proxies/nope/toxics"),
            Some(json!({ "type": "latency" }))
        )
        .0,
        404
    );
    let (status, reset_peer) = call(
        &http,
        "POST",
        &url("/proxies/p/toxics"),
        Some(
            json!({ "type": "reset_peer", "name": "rp", "stream": "upstream", "toxicity": 0.5, "attributes": { "timeout": 50 } }),
        ),
    );
    assert_eq!(
        (
            status,
            reset_peer["toxicity"].clone(),
            reset_peer["attributes"]["timeout"].clone()
        ),
        (200, json!(0.5), json!(50))
    );
    let (status, list) = call(&http, "GET", &url("/proxies/p/toxics"), None);
    assert_eq!((status, list.as_array().unwrap().len()), (200, 2));
    assert_eq!(
        call(&http, "GET", &url("/proxies/p/toxics/rp"), None).1["type"],
        json!("reset_peer")
    );
    let (status, updated) = call(
        &http,
        "POST",
        &url("/proxies/p/toxics/latency_downstream"),
        Some(json!({ "attributes": { "jitter": 5 } })),
    );
    assert_eq!(
        (status, updated["attributes"].clone()),
        (200, json!({ "latency": 100, "jitter": 5 }))
    );
    assert_eq!(
        call(&http, "DELETE", &url("/proxies/p/toxics/rp"), None),
        (204, Value::Null)
    );
    assert_eq!(
        call(&http, "DELETE", &url("/proxies/p/toxics/rp"), None).0,
        404
    );
    assert_eq!(
        call(&http, "GET", &url("/proxies/p/toxics/rp"), None),
        (404, json!({ "error": "toxic not found", "status": 404 }))
    );

    assert_eq!(
        call(&http, "POST", &url("/reset"), None),
        (204, Value::Null)
    );
    assert_eq!(
        call(&http, "GET", &url("/proxies/p/toxics"), None).1,
        json!([])
    );
    let (status, populated) = call(
        &http,
        "POST",
        &url("/populate"),
        Some(json!([{ "name": "p2", "listen": "127.0.0.1:0", "upstream": upstream }])),
    );
    assert_eq!(
        (status, populated["proxies"][0]["name"].clone()),
        (201, json!("p2"))
    );
    assert_eq!(
        call(&http, "DELETE", &url("/proxies/p"), None),
        (204, Value::Null)
    );
    assert_eq!(call(&http, "DELETE", &url("/proxies/p"), None).0, 404);
    assert_eq!(call(&http, "GET", &url("/no/such/route"), None).0, 404);
}

#[test]
fn warren_toxiproxy_serves_the_api_until_ctrl_c() {
    let port = crate::helpers::closed_port();
    let mut command = crate::helpers::warren();
    command.args(["toxiproxy", "--listen", &format!("127.0.0.1:{port}")]);
    let mut running = crate::helpers::Running::spawn(command);
    running.wait_for_line("Toxiproxy-compatible API", Duration::from_secs(10));
    let client = Client::new(format!("127.0.0.1:{port}").as_str());
    assert!(client.version().unwrap().contains(api::TOXIPROXY_VERSION));
    running.signal("INT");
    let (code, _) = running.finish(Duration::from_secs(10));
    assert_eq!(code, 0);
}

/// Output piped into something that stopped reading (`warren toxiproxy | head -1`): the
/// lines after it are dropped, not a panic, and Ctrl-C still ends it cleanly.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    // The reading end is closed once the first line is read: the next line has nowhere
    // to go.
    let (child, _) = spawn_warren_toxiproxy();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

/// Sends `head` and then up to `body_bytes` of body (a server that answered early may
/// stop reading: write errors end the sending), and returns the response's status line.
fn oversized_request(address: &str, head: &str, body_bytes: usize, chunked: bool) -> String {
    let mut socket = TcpStream::connect(address).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    socket.write_all(head.as_bytes()).unwrap();
    let block = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < body_bytes {
        let written = if chunked {
            socket
                .write_all(format!("{:x}\r\n", block.len()).as_bytes())
                .and_then(|()| socket.write_all(&block))
                .and_then(|()| socket.write_all(b"\r\n"))
        } else {
            socket.write_all(&block)
        };
        if written.is_err() {
            break;
        }
        sent += block.len();
    }
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = socket.read(&mut buffer) {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..n]);
        if response.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// A 100 MB POST (announced, or streamed in chunks) gets 413, and the server stays up.
#[test]
fn an_oversized_request_body_gets_413_and_the_server_stays_up() {
    let server = Server::start();
    let announced = format!(
        "POST /populate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        100 * 1024 * 1024
    );
    let status = oversized_request(&server.address, &announced, 4 * 1024 * 1024, false);
    assert!(status.contains(" 413"), "{status}");
    let chunked = "POST /proxies HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let status = oversized_request(&server.address, chunked, 4 * 1024 * 1024, true);
    assert!(status.contains(" 413"), "{status}");
    let http = Http::new();
    let (status, version) = call(&http, "GET", &server.url("/version"), None);
    assert_eq!(status, 200, "{version}");
}
