//! A raw AMQP handshake that reads the broker's connection.start: it tells whether an
//! AMQP broker listens at an address and which product and version it is, without
//! credentials (the client library does not expose these server properties).

use std::time::Duration;

use amq_protocol::frame::{AMQPFrame, parse_frame};
use amq_protocol::protocol::{AMQPClass, connection};
use amq_protocol::types::AMQPValue;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a broker says about itself in connection.start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerInfo {
    /// Usually "RabbitMQ".
    pub product: String,
    /// The broker's version, like "3.10.8".
    pub version: String,
    /// The cluster's name, if the broker gives one.
    pub cluster_name: Option<String>,
    /// Runtime, like "Erlang/OTP 25.2.3".
    pub platform: Option<String>,
}

/// AMQP 0-9-1 protocol header.
const PROTOCOL_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";
/// A connection.start frame is a few hundred bytes; anything larger is not a broker.
const MAX_START_FRAME: usize = 64 * 1024;

/// Connects to `host:port`, sends the protocol header and reads connection.start.
///
/// # Errors
/// A message saying what failed: nothing listening, no answer in time, or an answer
/// that is not AMQP 0-9-1.
pub async fn probe(host: &str, port: u16, timeout: Duration) -> Result<ServerInfo, String> {
    match tokio::time::timeout(timeout, probe_inner(host, port)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no AMQP answer from {host}:{port} within {} ms",
            timeout.as_millis()
        )),
    }
}

async fn probe_inner(host: &str, port: u16) -> Result<ServerInfo, String> {
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    stream
        .write_all(PROTOCOL_HEADER)
        .await
        .map_err(|e| format!("{host}:{port}: {e}"))?;
    let mut buffer = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 4096];
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("{host}:{port}: {e}"))?;
        if read == 0 {
            return Err(format!(
                "{host}:{port} closed the connection without an AMQP greeting"
            ));
        }
        buffer.extend_from_slice(&chunk[..read]);
        if buffer.starts_with(b"AMQP") {
            return Err(format!(
                "{host}:{port} speaks another AMQP version (it answered with its protocol header)"
            ));
        }
        if let Some(info) = parse_start(&buffer)? {
            return Ok(info);
        }
        if buffer.len() > MAX_START_FRAME {
            return Err(format!(
                "{host}:{port} does not answer like an AMQP 0-9-1 broker"
            ));
        }
    }
}

/// Parses connection.start from the bytes read so far; `Ok(None)` means "read more".
fn parse_start(bytes: &[u8]) -> Result<Option<ServerInfo>, String> {
    const HEADER: usize = 7;
    if bytes.len() < HEADER {
        return Ok(None);
    }
    let size = u32::from_be_bytes([bytes[3], bytes[4], bytes[5], bytes[6]]) as usize;
    if bytes.len() < HEADER + size + 1 {
        return Ok(None);
    }
    let frame = parse_frame(&bytes[..HEADER + size + 1])
        .map(|(_, frame)| frame)
        .map_err(|e| format!("not an AMQP frame: {e:?}"))?;
    let AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Start(start))) = frame
    else {
        return Err(format!("expected connection.start, got {frame:?}"));
    };
    let text = |key: &str| {
        start
            .server_properties
            .inner()
            .get(key)
            .and_then(|value| match value {
                AMQPValue::LongString(s) => {
                    Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
                }
                AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
                _ => None,
            })
    };
    Ok(Some(ServerInfo {
        product: text("product").unwrap_or_else(|| "unknown".into()),
        version: text("version").unwrap_or_else(|| "unknown".into()),
        cluster_name: text("cluster_name"),
        platform: text("platform"),
    }))
}
