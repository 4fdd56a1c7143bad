//! The AMQP client against a scripted TCP server that stands in for a broker gone wrong,
//! or a proxy that mangles bytes (real RabbitMQ cannot be made to send these): after a
//! valid handshake it sends one thing a client must survive. Each case must end in a clean
//! error and a "protocol error from the broker" event (or a lost connection), with no
//! panic on any task and no hang, for a publisher and for a consumer.

use std::sync::{Mutex, Once};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warren::amqp::{
    AmqpConnection, ConnectOptions, ConnectionEvent, FailureKind, PublishOutcome, PublishTarget,
    connect_with,
};
use warren::broker_uri::BrokerUri;

/// How long any one case may take before it counts as a hang.
const BOUND: Duration = Duration::from_secs(15);

/// Names of the threads on which a panic happened (every task of a case runs on the
/// case's own thread, so a panic in a task the client spawned shows up here).
static PANICKED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or("").to_string();
            PANICKED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(name);
            previous(info);
        }));
    });
}

/// One frame: type, channel, payload.
pub fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.push(0xCE);
    out
}

/// A method frame: class, method, arguments.
pub fn method(channel: u16, class: u16, id: u16, arguments: &[u8]) -> Vec<u8> {
    let mut payload = class.to_be_bytes().to_vec();
    payload.extend_from_slice(&id.to_be_bytes());
    payload.extend_from_slice(arguments);
    frame(1, channel, &payload)
}

fn short_string(text: &str) -> Vec<u8> {
    let mut out = vec![text.len() as u8];
    out.extend_from_slice(text.as_bytes());
    out
}

fn long_string(text: &str) -> Vec<u8> {
    let mut out = (text.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out
}

/// A frame read from the client.
struct ClientFrame {
    kind: u8,
    channel: u16,
    payload: Vec<u8>,
}

impl ClientFrame {
    fn method(&self) -> Option<(u16, u16)> {
        (self.kind == 1 && self.payload.len() >= 4).then(|| {
            (
                u16::from_be_bytes([self.payload[0], self.payload[1]]),
                u16::from_be_bytes([self.payload[2], self.payload[3]]),
            )
        })
    }
}

async fn read_frame(socket: &mut TcpStream) -> Option<ClientFrame> {
    let mut header = [0u8; 7];
    socket.read_exact(&mut header).await.ok()?;
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
    let mut payload = vec![0u8; size + 1];
    socket.read_exact(&mut payload).await.ok()?;
    payload.pop();
    Some(ClientFrame {
        kind: header[0],
        channel: u16::from_be_bytes([header[1], header[2]]),
        payload,
    })
}

/// The broker's side of the handshake, announcing `frame_max` and `heartbeat`.
pub async fn handshake(socket: &mut TcpStream, frame_max: u32, heartbeat: u16) -> Option<()> {
    start(socket).await?;
    tune(socket, frame_max, heartbeat).await?;
    socket.write_all(&method(0, 10, 41, &[0])).await.ok()
}

/// The handshake's middle: connection.tune with `frame_max` and `heartbeat`, then the
/// client's tune-ok and connection.open.
async fn tune(socket: &mut TcpStream, frame_max: u32, heartbeat: u16) -> Option<()> {
    let mut tune = 2047u16.to_be_bytes().to_vec();
    tune.extend_from_slice(&frame_max.to_be_bytes());
    tune.extend_from_slice(&heartbeat.to_be_bytes());
    socket.write_all(&method(0, 10, 30, &tune)).await.ok()?;
    read_frame(socket).await?; // tune-ok
    read_frame(socket).await?; // open
    Some(())
}

/// connection.start's arguments as RabbitMQ shapes them: version 0-9, server properties
/// of long strings and a nested table (capabilities), mechanisms, locales.
fn start_arguments() -> Vec<u8> {
    let mut properties = Vec::new();
    for (key, value) in [
        ("product", "scripted"),
        ("version", "3.99.1"),
        ("cluster_name", "scripted@test"),
        ("platform", "Erlang/OTP 99"),
    ] {
        properties.extend_from_slice(&short_string(key));
        properties.push(b'S');
        properties.extend_from_slice(&long_string(value));
    }
    let mut capabilities = short_string("publisher_confirms");
    capabilities.extend_from_slice(&[b't', 1]);
    properties.extend_from_slice(&short_string("capabilities"));
    properties.push(b'F');
    properties.extend_from_slice(&(capabilities.len() as u32).to_be_bytes());
    properties.extend_from_slice(&capabilities);
    let mut start = vec![0, 9];
    start.extend_from_slice(&(properties.len() as u32).to_be_bytes());
    start.extend_from_slice(&properties);
    start.extend_from_slice(&long_string("PLAIN AMQPLAIN"));
    start.extend_from_slice(&long_string("en_US"));
    start
}

/// The handshake's first exchange: the protocol header, connection.start, start-ok.
async fn start(socket: &mut TcpStream) -> Option<()> {
    let mut protocol = [0u8; 8];
    socket.read_exact(&mut protocol).await.ok()?;
    socket
        .write_all(&method(0, 10, 10, &start_arguments()))
        .await
        .ok()?;
    read_frame(socket).await?; // start-ok
    Some(())
}

/// Answers one connection's protocol header with `greeting`, split in two writes (a probe
/// reads until the frame is whole), then waits for the probe to hang up.
async fn greeting_broker(listener: TcpListener, greeting: Vec<u8>) {
    let Ok((mut socket, _)) = listener.accept().await else {
        return;
    };
    let mut protocol = [0u8; 8];
    if socket.read_exact(&mut protocol).await.is_err() {
        return;
    }
    let (first, rest) = greeting.split_at(greeting.len() / 2);
    for part in [first, rest] {
        if socket.write_all(part).await.is_err() || socket.flush().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = socket.read(&mut [0u8; 64]).await;
}

/// warren's probe names a broker from its connection.start alone, without logging in, and
/// says why anything else is not one: a start on channel 1, a heartbeat, a broken frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_reads_the_brokers_greeting_and_refuses_what_is_not_one() {
    let mut broken = method(0, 10, 10, &start_arguments());
    *broken.last_mut().unwrap() = 0;
    let cases = [
        (method(0, 10, 10, &start_arguments()), None),
        (
            method(1, 10, 10, &start_arguments()),
            Some("expected connection.start on channel 0"),
        ),
        (frame(8, 0, &[]), Some("expected connection.start")),
        (broken, Some("not an AMQP frame")),
    ];
    for (greeting, refusal) in cases {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let broker = tokio::spawn(greeting_broker(listener, greeting));
        let answer = warren::amqp::probe("127.0.0.1", port, Duration::from_secs(10)).await;
        match refusal {
            None => {
                let info = answer.unwrap();
                assert_eq!(
                    (
                        info.product.as_str(),
                        info.version.as_str(),
                        info.cluster_name.as_deref(),
                        info.platform.as_deref()
                    ),
                    (
                        "scripted",
                        "3.99.1",
                        Some("scripted@test"),
                        Some("Erlang/OTP 99")
                    )
                );
            }
            Some(reason) => {
                let error = answer.unwrap_err();
                assert!(error.contains(reason), "{error}");
            }
        }
        broker.await.unwrap();
    }
}

/// What the scripted broker sends once the client is set up.
#[derive(Debug, Clone, Copy)]
enum Misbehaviour {
    RandomBytes(u64),
    TruncatedMethod,
    ShortContentHeader,
    UnknownChannel,
    ChannelFrameOnChannelZero,
    BodyLongerThanDeclared,
    UnaskedCloseOk,
    UnaskedReply,
}

impl Misbehaviour {
    fn bytes(self) -> Vec<u8> {
        match self {
            Misbehaviour::RandomBytes(seed) => {
                let mut state = seed;
                (0..256)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        (state >> 33) as u8
                    })
                    .collect()
            }
            Misbehaviour::TruncatedMethod => frame(1, 1, &[0, 60]),
            Misbehaviour::ShortContentHeader => {
                let mut out = deliver(1);
                out.extend(frame(2, 1, &[0, 60, 0, 0]));
                out
            }
            Misbehaviour::UnknownChannel => deliver(9),
            Misbehaviour::ChannelFrameOnChannelZero => {
                let mut ack = 1u64.to_be_bytes().to_vec();
                ack.push(0);
                method(0, 60, 80, &ack)
            }
            Misbehaviour::BodyLongerThanDeclared => {
                let mut out = deliver(1);
                let mut header = vec![0, 60, 0, 0];
                header.extend_from_slice(&5u64.to_be_bytes());
                header.extend_from_slice(&[0, 0]);
                out.extend(frame(2, 1, &header));
                out.extend(frame(3, 1, b"ten bytes!"));
                out
            }
            Misbehaviour::UnaskedCloseOk => method(1, 20, 41, &[]),
            Misbehaviour::UnaskedReply => method(1, 60, 11, &[]),
        }
    }

    /// The words the client's error must contain; `None` where only the end is certain.
    fn reason(self) -> Option<&'static str> {
        match self {
            Misbehaviour::RandomBytes(_) => None,
            Misbehaviour::TruncatedMethod | Misbehaviour::ShortContentHeader => {
                Some("malformed frame")
            }
            Misbehaviour::UnknownChannel | Misbehaviour::ChannelFrameOnChannelZero => {
                Some("which is not open")
            }
            Misbehaviour::BodyLongerThanDeclared => Some("were left of the message"),
            Misbehaviour::UnaskedCloseOk => Some("which nobody was closing"),
            Misbehaviour::UnaskedReply => Some("which nobody asked for"),
        }
    }
}

/// basic.deliver of tag 1 to consumer "c" on `channel`.
fn deliver(channel: u16) -> Vec<u8> {
    let mut arguments = short_string("c");
    arguments.extend_from_slice(&1u64.to_be_bytes());
    arguments.push(0);
    arguments.extend(short_string(""));
    arguments.extend(short_string("q"));
    method(channel, 60, 60, &arguments)
}

/// Answers the client's requests; once the client is set up (confirm.select-ok or
/// consume-ok sent), sends `bad` once. Publishes are acknowledged as their body completes.
async fn scripted_broker(listener: TcpListener, frame_max: u32, bad: Option<Vec<u8>>) {
    let Ok((mut socket, _)) = listener.accept().await else {
        return;
    };
    if handshake(&mut socket, frame_max, 2).await.is_none() {
        return;
    }
    let mut bad = bad;
    let mut published = 0u64;
    let mut body_left = 0u64;
    while let Some(frame) = read_frame(&mut socket).await {
        let reply = match (frame.method(), frame.kind) {
            (Some((20, 10)), _) => Some(method(frame.channel, 20, 11, &[0, 0, 0, 0])),
            (Some((85, 10)), _) => Some(method(frame.channel, 85, 11, &[])),
            (Some((60, 10)), _) => Some(method(frame.channel, 60, 11, &[])),
            (Some((60, 20)), _) => Some(method(frame.channel, 60, 21, &short_string("c"))),
            (Some((20, 40)), _) => Some(method(frame.channel, 20, 41, &[])),
            (Some((10, 50)), _) => {
                let _ = socket.write_all(&method(0, 10, 51, &[])).await;
                return;
            }
            (None, 2) if frame.payload.len() >= 12 => {
                body_left = u64::from_be_bytes(frame.payload[4..12].try_into().unwrap());
                None
            }
            (None, 3) => {
                assert!(
                    frame.payload.len() + 8 <= frame_max.max(131_072) as usize,
                    "a body frame larger than frame_max"
                );
                body_left = body_left.saturating_sub(frame.payload.len() as u64);
                (body_left == 0).then(|| {
                    published += 1;
                    let mut ack = published.to_be_bytes().to_vec();
                    ack.push(0);
                    method(frame.channel, 60, 80, &ack)
                })
            }
            _ => None,
        };
        let set_up = matches!(frame.method(), Some((85, 10)) | Some((60, 20)));
        if let Some(reply) = reply {
            if socket.write_all(&reply).await.is_err() {
                return;
            }
        }
        if set_up {
            if let Some(bytes) = bad.take() {
                let _ = socket.write_all(&bytes).await;
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Publisher,
    Consumer,
}

/// A runtime of the test's own (one thread: every task a case spawns runs on it).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Starts a scripted broker announcing `frame_max` that sends `bad` once the client is
/// set up; returns its port.
async fn scripted(frame_max: u32, bad: Option<Vec<u8>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(scripted_broker(listener, frame_max, bad));
    port
}

/// Opens a connection to the scripted broker on `port`.
async fn connect_to(port: u16) -> Result<AmqpConnection, warren::amqp::AmqpError> {
    let uri: BrokerUri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
        .parse()
        .unwrap();
    let options = ConnectOptions {
        name: "scripted".into(),
        heartbeat: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        tls: None,
    };
    connect_with(&uri, &options).await
}

/// Connects to the scripted broker and opens a channel.
async fn client(port: u16) -> (AmqpConnection, warren::amqp::AmqpChannel) {
    let connection = connect_to(port).await.expect("the handshake succeeds");
    let channel = connection.open_channel().await.expect("a channel opens");
    (connection, channel)
}

/// Runs one case on a thread of its own, with a runtime of its own: returns the client's
/// error and the connection's failure event.
fn run_case(name: &'static str, role: Role, bad: Misbehaviour) -> (String, Option<String>) {
    record_panics();
    let thread = format!("misbehaving-{name}-{role:?}");
    let handle = std::thread::Builder::new()
        .name(thread.clone())
        .spawn(move || {
            runtime().block_on(async move {
                let port = scripted(131_072, Some(bad.bytes())).await;
                tokio::time::timeout(BOUND, async move {
                    let (connection, channel) = client(port).await;
                    let mut events = Box::pin(connection.events());
                    let error = match role {
                        Role::Publisher => {
                            channel.confirm_select().await.map(|_| ()).err();
                            let target = PublishTarget::new("", "q", false, true);
                            let mut error = None;
                            for _ in 0..100 {
                                match channel.publish(&target, b"payload").await {
                                    Ok(PublishOutcome::Acked) => {
                                        tokio::time::sleep(Duration::from_millis(50)).await;
                                    }
                                    Ok(other) => panic!("unexpected {other:?}"),
                                    Err(failure) => {
                                        error = Some(failure);
                                        break;
                                    }
                                }
                            }
                            error.expect("publishing fails once the broker misbehaves")
                        }
                        Role::Consumer => {
                            channel.qos(10).await.expect("qos");
                            let mut deliveries = channel
                                .consume("q", "c", false, None)
                                .await
                                .expect("consume");
                            loop {
                                match deliveries.next().await {
                                    Some(Ok(_)) => continue,
                                    Some(Err(failure)) => break failure,
                                    None => panic!("deliveries ended without an error"),
                                }
                            }
                        }
                    };
                    assert_eq!(error.kind, FailureKind::ConnectionLost, "{error:?}");
                    let mut failed = None;
                    while let Some(event) = events.next().await {
                        if let ConnectionEvent::Failed(reason) = event {
                            failed = Some(reason);
                            break;
                        }
                    }
                    (error.message, failed)
                })
                .await
                .unwrap_or_else(|_| panic!("{name} as {role:?}: no end within {BOUND:?}"))
            })
        })
        .unwrap();
    let result = handle.join();
    let panicked: Vec<String> = PANICKED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|t| **t == thread)
        .cloned()
        .collect();
    assert!(panicked.is_empty(), "{name} as {role:?}: a task panicked");
    result.unwrap_or_else(|_| panic!("{name} as {role:?}: the case panicked"))
}

#[test]
fn every_misbehaviour_ends_the_connection_with_a_reason_and_no_panic() {
    let cases = [
        ("random-bytes", Misbehaviour::RandomBytes(7)),
        ("random-bytes-2", Misbehaviour::RandomBytes(1234)),
        ("truncated-method", Misbehaviour::TruncatedMethod),
        ("short-content-header", Misbehaviour::ShortContentHeader),
        ("unknown-channel", Misbehaviour::UnknownChannel),
        ("channel-zero", Misbehaviour::ChannelFrameOnChannelZero),
        ("body-longer", Misbehaviour::BodyLongerThanDeclared),
        ("unasked-close-ok", Misbehaviour::UnaskedCloseOk),
        ("unasked-reply", Misbehaviour::UnaskedReply),
    ];
    for (name, bad) in cases {
        for role in [Role::Publisher, Role::Consumer] {
            let (error, event) = run_case(name, role, bad);
            let event = event.unwrap_or_else(|| panic!("{name} as {role:?}: no failed event"));
            if let Some(words) = bad.reason() {
                assert!(
                    event.starts_with("protocol error from the broker: ") && event.contains(words),
                    "{name} as {role:?}: event {event:?}"
                );
                assert!(error.contains(words), "{name} as {role:?}: error {error:?}");
            }
        }
    }
}

/// frame_max 0 means "no limit": the body split underflowed on it. Large bodies still go
/// out in frames no larger than the client's own default.
#[test]
fn a_broker_announcing_frame_max_zero_gets_whole_messages() {
    record_panics();
    runtime().block_on(async {
        let port = scripted(0, None).await;
        let (_connection, channel) = client(port).await;
        channel.confirm_select().await.unwrap();
        let target = PublishTarget::new("", "q", false, true);
        let body = vec![7u8; 300_000];
        let outcome = tokio::time::timeout(BOUND, channel.publish(&target, &body))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outcome, PublishOutcome::Acked);
    });
}

/// A frame_max below AMQP's minimum is refused at connection time, with the reason.
#[test]
fn a_broker_announcing_a_tiny_frame_max_is_refused_with_the_reason() {
    runtime().block_on(async {
        let port = scripted(7, None).await;
        let error = connect_to(port).await.err().expect("refused");
        assert!(error.to_string().contains("frame_max 7"), "{error}");
    });
}

/// A broker that answers start-ok (or, with `after_open`, connection.open) with
/// connection.close `code` and `text`, as RabbitMQ does for bad credentials (403) or a
/// vhost it does not have (530).
async fn closing_broker(listener: TcpListener, after_open: bool, code: u16, text: &str) {
    let Ok((mut socket, _)) = listener.accept().await else {
        return;
    };
    if start(&mut socket).await.is_none() {
        return;
    }
    if after_open && tune(&mut socket, 131_072, 2).await.is_none() {
        return;
    }
    let mut close = code.to_be_bytes().to_vec();
    close.extend_from_slice(&short_string(text));
    close.extend_from_slice(&[0, 10, 0, if after_open { 40 } else { 11 }]);
    let _ = socket.write_all(&method(0, 10, 50, &close)).await;
    read_frame(&mut socket).await; // close-ok, or the end
}

/// The broker closing the connection during the handshake is "the broker refused the
/// connection" for ACCESS_REFUSED and NOT_ALLOWED only, read from the reply code: a node
/// shutting down (320) is unreachable for now, whatever digits its reason holds (the
/// reason's text was searched for "403" and "530").
#[test]
fn a_close_during_the_handshake_is_a_refusal_by_its_reply_code() {
    use warren::amqp::AmqpError;
    runtime().block_on(async {
        for (after_open, code, text, refused) in [
            (
                false,
                403,
                "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN",
                true,
            ),
            (true, 530, "NOT_ALLOWED - vhost perf not found", true),
            (
                true,
                320,
                "CONNECTION_FORCED - node rabbit@host-4030 is shutting down (530 left)",
                false,
            ),
            (false, 541, "INTERNAL_ERROR - 403", false),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(closing_broker(listener, after_open, code, text));
            let error = tokio::time::timeout(BOUND, connect_to(port))
                .await
                .expect("no hang")
                .err()
                .expect("the broker closed the connection");
            assert_eq!(
                matches!(error, AmqpError::Refused { .. }),
                refused,
                "{code}: {error}"
            );
            assert!(
                matches!(
                    error,
                    AmqpError::Refused { .. } | AmqpError::Unreachable { .. }
                ),
                "{error:?}"
            );
            let message = error.to_string();
            assert!(
                message.contains(&code.to_string()) && message.contains(text),
                "the reply code and text are in the error: {message}"
            );
        }
    });
}

mod arbitrary_streams {
    //! A property test: any byte stream after a valid handshake ends the connection
    //! cleanly (the scripted broker closes its socket after the bytes, so nothing waits
    //! on heartbeats), with no panic on any task. The streams are built from frames that
    //! look nearly right (known frame types and classes, right or wrong lengths, the open
    //! channel or others), since random bytes alone fail on the first frame header.

    use proptest::prelude::*;

    use super::*;

    /// One frame of the stream: a kind (method with a known class, header, body,
    /// heartbeat, or any byte), a channel, a payload and whether its length is honest.
    fn arbitrary_frame() -> impl Strategy<Value = Vec<u8>> {
        let kind = prop_oneof![Just(1u8), Just(2), Just(3), Just(8), any::<u8>()];
        let channel = prop_oneof![Just(1u16), Just(0), Just(2), any::<u16>()];
        let class_method = prop_oneof![
            Just((60u16, 60u16)),
            Just((60, 80)),
            Just((60, 120)),
            Just((60, 50)),
            Just((60, 72)),
            Just((60, 71)),
            Just((60, 21)),
            Just((60, 30)),
            Just((20, 40)),
            Just((20, 41)),
            Just((20, 20)),
            Just((10, 50)),
            Just((10, 60)),
            Just((10, 61)),
            (any::<u16>(), any::<u16>()),
        ];
        let payload = proptest::collection::vec(any::<u8>(), 0..40);
        (
            kind,
            channel,
            class_method,
            payload,
            any::<bool>(),
            any::<u8>(),
        )
            .prop_map(|(kind, channel, (class, id), payload, honest, skew)| {
                let mut body = payload;
                if kind == 1 {
                    let mut with_method = class.to_be_bytes().to_vec();
                    with_method.extend_from_slice(&id.to_be_bytes());
                    with_method.extend(body);
                    body = with_method;
                }
                let mut out = frame(kind, channel, &body);
                if !honest {
                    let size = (body.len() as u32).saturating_add(u32::from(skew) % 16);
                    out[3..7].copy_from_slice(&size.to_be_bytes());
                }
                out
            })
    }

    fn arbitrary_stream() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(arbitrary_frame(), 1..6).prop_map(|frames| frames.concat()),
            proptest::collection::vec(any::<u8>(), 0..64),
        ]
    }

    /// The scripted broker of one case: the handshake, channel.open-ok, then `bytes`,
    /// then its socket closes.
    async fn fuzzing_broker(listener: TcpListener, bytes: Vec<u8>) {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        if handshake(&mut socket, 131_072, 2).await.is_none() {
            return;
        }
        while let Some(frame) = read_frame(&mut socket).await {
            if frame.method() == Some((20, 10)) {
                let _ = socket
                    .write_all(&method(frame.channel, 20, 11, &[0, 0, 0, 0]))
                    .await;
                break;
            }
        }
        let _ = socket.write_all(&bytes).await;
        let _ = socket.shutdown().await;
    }

    /// One case: connect, open a channel, then consume or publish while the stream
    /// arrives; everything must end within a few seconds.
    async fn one_case(bytes: Vec<u8>, consume: bool) -> Result<(), String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let broker = tokio::spawn(fuzzing_broker(listener, bytes));
        let outcome = tokio::time::timeout(Duration::from_secs(5), async move {
            let connection = connect_to(port).await.expect("the handshake succeeds");
            // The stream may end the connection while the channel is still being set
            // up (its callbacks registered): an error then, which is an end too.
            let Ok(channel) = connection.open_channel().await else {
                connection.close().await;
                return;
            };
            if consume {
                if let Ok(mut deliveries) = channel.consume("q", "c", false, None).await {
                    while let Some(Ok(_)) = deliveries.next().await {}
                }
            } else {
                let target = PublishTarget::new("", "q", false, true);
                let _ = channel.publish(&target, b"payload").await;
            }
            connection.close().await;
        })
        .await;
        broker.abort();
        outcome.map_err(|_| "no end within 5 s".to_string())
    }

    #[test]
    fn arbitrary_streams_after_the_handshake_never_panic_or_hang() {
        record_panics();
        let thread = "misbehaving-arbitrary-streams";
        let handle = std::thread::Builder::new()
            .name(thread.into())
            .spawn(|| {
                let runtime = runtime();
                let config = ProptestConfig {
                    cases: 10_000,
                    failure_persistence: None,
                    rng_seed: proptest::test_runner::RngSeed::Fixed(20261202),
                    ..ProptestConfig::default()
                };
                let mut runner = proptest::test_runner::TestRunner::new(config);
                runner
                    .run(&(arbitrary_stream(), any::<bool>()), |(bytes, consume)| {
                        runtime
                            .block_on(one_case(bytes, consume))
                            .map_err(TestCaseError::fail)?;
                        let panicked = PANICKED
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .iter()
                            .any(|t| t == "misbehaving-arbitrary-streams");
                        prop_assert!(!panicked, "a task panicked");
                        Ok(())
                    })
                    .map_err(|e| e.to_string())
            })
            .unwrap();
        let result = handle.join().expect("the property test itself panicked");
        assert!(result.is_ok(), "{}", result.unwrap_err());
        let _ = thread;
    }
}
