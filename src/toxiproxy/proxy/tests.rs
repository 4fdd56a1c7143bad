//! Each toxic against an echo server, through the engine.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::toxiproxy::toxics::{Stream, Toxic, ToxicKind};

async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = socket.read(&mut buffer).await {
                    if n == 0 || socket.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    address
}

async fn proxy(registry: &Registry, name: &str) -> String {
    registry
        .create(name, "127.0.0.1:0", &echo_server().await, true)
        .await
        .unwrap()
        .listen
}

fn toxic(name: &str, kind: ToxicKind, stream: Stream) -> Toxic {
    Toxic {
        name: name.into(),
        kind,
        stream,
        toxicity: 1.0,
    }
}

/// Sends `text` and reads it back; `None` when nothing comes within `wait`.
async fn echo(client: &mut TcpStream, text: &[u8], wait: Duration) -> Option<Vec<u8>> {
    client.write_all(text).await.ok()?;
    let mut buffer = vec![0u8; text.len()];
    tokio::time::timeout(wait, client.read_exact(&mut buffer))
        .await
        .ok()?
        .ok()?;
    Some(buffer)
}

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(5);

#[tokio::test]
async fn down_closes_connections_and_refuses_new_ones_until_up() {
    let registry = Registry::new();
    let listen = proxy(&registry, "p").await;
    let mut client = TcpStream::connect(&listen).await.unwrap();
    assert_eq!(
        echo(&mut client, b"hi", LONG).await.as_deref(),
        Some(&b"hi"[..])
    );
    registry.update("p", Some(false), None, None).await.unwrap();
    let mut buffer = [0u8; 1];
    assert!(matches!(client.read(&mut buffer).await, Ok(0) | Err(_)));
    assert!(TcpStream::connect(&listen).await.is_err());
    registry.update("p", Some(true), None, None).await.unwrap();
    let mut client = TcpStream::connect(&listen).await.unwrap();
    assert_eq!(
        echo(&mut client, b"back", LONG).await.as_deref(),
        Some(&b"back"[..])
    );
}

#[tokio::test]
async fn latency_delays_and_its_removal_releases_held_data() {
    let registry = Registry::new();
    let listen = proxy(&registry, "p").await;
    registry
        .add_toxic(
            "p",
            toxic(
                "latency_downstream",
                ToxicKind::Latency {
                    latency_ms: 200,
                    jitter_ms: 0,
                },
                Stream::Downstream,
            ),
        )
        .await
        .unwrap();
    let mut client = TcpStream::connect(&listen).await.unwrap();
    let started = Instant::now();
    assert!(echo(&mut client, b"slow", LONG).await.is_some());
    assert!(started.elapsed() >= Duration::from_millis(200));
    registry
        .update_toxic("p", "latency_downstream", |t| {
            t.kind = ToxicKind::Latency {
                latency_ms: 60_000,
                jitter_ms: 0,
            }
        })
        .await
        .unwrap();
    client.write_all(b"held").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    registry
        .remove_toxic("p", "latency_downstream")
        .await
        .unwrap();
    let mut buffer = [0u8; 4];
    tokio::time::timeout(LONG, client.read_exact(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &buffer, b"held",
        "removing the toxic released the data, none lost"
    );
}

#[tokio::test]
async fn a_blackhole_drops_data_and_a_timeout_closes_after_it() {
    let registry = Registry::new();
    let listen = proxy(&registry, "p").await;
    let mut client = TcpStream::connect(&listen).await.unwrap();
    registry
        .add_toxic(
            "p",
            toxic(
                "timeout_upstream",
                ToxicKind::Timeout { timeout_ms: 0 },
                Stream::Upstream,
            ),
        )
        .await
        .unwrap();
    assert_eq!(echo(&mut client, b"gone", SHORT).await, None);
    registry
        .remove_toxic("p", "timeout_upstream")
        .await
        .unwrap();
    assert_eq!(
        echo(&mut client, b"ok", LONG).await.as_deref(),
        Some(&b"ok"[..]),
        "the connection stayed open"
    );
    registry
        .add_toxic(
            "p",
            toxic(
                "timeout_downstream",
                ToxicKind::Timeout { timeout_ms: 200 },
                Stream::Downstream,
            ),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut buffer = [0u8; 1];
    assert!(matches!(
        tokio::time::timeout(LONG, client.read(&mut buffer)).await,
        Ok(Ok(0) | Err(_))
    ));
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn reset_peer_resets_the_connection() {
    let registry = Registry::new();
    let listen = proxy(&registry, "p").await;
    let mut client = TcpStream::connect(&listen).await.unwrap();
    assert!(echo(&mut client, b"x", LONG).await.is_some());
    registry
        .add_toxic(
            "p",
            toxic(
                "reset_peer_downstream",
                ToxicKind::ResetPeer { timeout_ms: 50 },
                Stream::Downstream,
            ),
        )
        .await
        .unwrap();
    let mut buffer = [0u8; 1];
    let result = tokio::time::timeout(LONG, client.read(&mut buffer))
        .await
        .unwrap();
    assert_eq!(
        result.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset)
    );
}

/// A client connected through a proxy whose downstream is limited to `rate_kbps`; the
/// registry must live as long as the client uses the proxy.
async fn behind_bandwidth(rate_kbps: u64) -> (std::sync::Arc<Registry>, TcpStream) {
    let registry = Registry::new();
    let listen = proxy(&registry, "p").await;
    registry
        .add_toxic(
            "p",
            toxic(
                "bandwidth_downstream",
                ToxicKind::Bandwidth { rate_kbps },
                Stream::Downstream,
            ),
        )
        .await
        .unwrap();
    let client = TcpStream::connect(&listen).await.unwrap();
    (registry, client)
}

#[tokio::test]
async fn bandwidth_slows_the_transfer() {
    let (_registry, mut client) = behind_bandwidth(10).await;
    let started = Instant::now();
    assert!(echo(&mut client, &[7u8; 4000], LONG).await.is_some());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "4 KB at 10 KB/s take 0.4 s: {:?}",
        started.elapsed()
    );
}

/// Each small piece is paced by its own time, not by a tenth of a second's piece: 100
/// echoes of 100 B at 1,000 KB/s are paused 0.1 ms each after their write, so the client
/// waits through 99 of them at least. That the
/// pause is not rounded up to a millisecond is the timer's own property, read from the
/// timerfd in `precise_timer`'s tests (a wall-clock upper bound here failed on a loaded
/// machine: 104 ms for 100 pauses).
#[tokio::test]
async fn bandwidth_paces_each_small_piece_by_its_own_time() {
    let (_registry, mut client) = behind_bandwidth(1000).await;
    let started = Instant::now();
    for _ in 0..100 {
        assert!(echo(&mut client, &[7u8; 100], LONG).await.is_some());
    }
    assert!(
        started.elapsed() >= Duration::from_micros(100) * 99,
        "100 pieces of 100 B at 1,000 KB/s took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn slicer_cuts_data_into_small_pieces() {
    let registry = Registry::new();
    let listen = proxy(&registry, "p").await;
    registry
        .add_toxic(
            "p",
            toxic(
                "slicer_downstream",
                ToxicKind::Slicer {
                    average_size: 10,
                    size_variation: 0,
                    delay_us: 2_000,
                },
                Stream::Downstream,
            ),
        )
        .await
        .unwrap();
    let mut client = TcpStream::connect(&listen).await.unwrap();
    client.write_all(&[1u8; 100]).await.unwrap();
    let mut reads = 0;
    let mut got = 0;
    while got < 100 {
        let mut buffer = [0u8; 100];
        got += tokio::time::timeout(LONG, client.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        reads += 1;
    }
    assert!(reads >= 5, "100 bytes came in {reads} reads");
}

#[tokio::test]
async fn limit_data_closes_after_the_limit() {
    let registry = Registry::new();
    let listen = proxy(&registry, "p").await;
    registry
        .add_toxic(
            "p",
            toxic(
                "limit_data_downstream",
                ToxicKind::LimitData { bytes: 5 },
                Stream::Downstream,
            ),
        )
        .await
        .unwrap();
    let mut client = TcpStream::connect(&listen).await.unwrap();
    client.write_all(b"0123456789").await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(LONG, client.read_to_end(&mut received))
        .await
        .unwrap()
        .ok();
    assert_eq!(received, b"01234");
}

#[tokio::test]
async fn slow_close_holds_the_close_back() {
    let registry = Registry::new();
    let listen = proxy(&registry, "p").await;
    registry
        .add_toxic(
            "p",
            toxic(
                "slow_close_downstream",
                ToxicKind::SlowClose { delay_ms: 300 },
                Stream::Upstream,
            ),
        )
        .await
        .unwrap();
    let mut client = TcpStream::connect(&listen).await.unwrap();
    assert!(echo(&mut client, b"a", LONG).await.is_some());
    let started = Instant::now();
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(LONG, client.read_to_end(&mut rest)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn toxicity_zero_spares_every_connection() {
    let registry = Registry::new();
    let listen = proxy(&registry, "p").await;
    let mut spared = toxic(
        "timeout_downstream",
        ToxicKind::Timeout { timeout_ms: 0 },
        Stream::Downstream,
    );
    spared.toxicity = 0.0;
    registry.add_toxic("p", spared).await.unwrap();
    let mut client = TcpStream::connect(&listen).await.unwrap();
    assert!(echo(&mut client, b"fine", LONG).await.is_some());
}

#[tokio::test]
async fn errors_carry_toxiproxys_status_codes() {
    let registry = Registry::new();
    let _ = proxy(&registry, "p").await;
    assert_eq!(
        registry
            .create("p", "127.0.0.1:0", "127.0.0.1:1", true)
            .await
            .unwrap_err()
            .status(),
        409
    );
    assert_eq!(registry.get("nope").await.unwrap_err().status(), 404);
    assert_eq!(
        registry
            .create("", "127.0.0.1:0", "x:1", true)
            .await
            .unwrap_err()
            .status(),
        400
    );
    let t = toxic(
        "t",
        ToxicKind::Latency {
            latency_ms: 1,
            jitter_ms: 0,
        },
        Stream::Upstream,
    );
    registry.add_toxic("p", t.clone()).await.unwrap();
    assert_eq!(registry.add_toxic("p", t).await.unwrap_err().status(), 409);
    assert_eq!(
        registry
            .remove_toxic("p", "other")
            .await
            .unwrap_err()
            .status(),
        404
    );
    registry.reset().await.unwrap();
    assert!(registry.toxics("p").await.unwrap().is_empty());
}
