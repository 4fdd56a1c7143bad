//! A raw AMQP handshake that reads the broker's connection.start: it tells whether an
//! AMQP broker listens at an address and which product and version it is, without
//! credentials (the client library does not expose these server properties).

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_amqp::FieldValue;

use super::tls::TlsClient;
use crate::broker_uri::BrokerUri;

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

/// Like [`probe`], for a URI: over TLS for amqps (with `tls`, or this system's roots),
/// so a TLS failure is told in one line that says which (an untrusted certificate, a
/// wrong name, a client certificate the broker demands, a plain port).
///
/// # Errors
/// A message saying what failed.
pub async fn probe_uri(
    uri: &BrokerUri,
    tls: Option<&TlsClient>,
    timeout: Duration,
) -> Result<ServerInfo, String> {
    if !uri.is_tls() {
        return probe(uri.host(), uri.port(), timeout).await;
    }
    let address = uri.address();
    let work = async {
        let system;
        let tls = match tls {
            Some(tls) => tls,
            None => {
                system = TlsClient::system().map_err(|e| e.to_string())?;
                &system
            }
        };
        let stream = TcpStream::connect((uri.host(), uri.port()))
            .await
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        let stream = tls.handshake(stream, uri).await?;
        // In TLS 1.3 the broker judges the client's certificate after the handshake: a
        // refusal arrives as the first read's error.
        let closed = format!(
            "{address} closed the TLS connection without an AMQP greeting{}",
            if tls.offers_certificate() {
                ""
            } else {
                " (does the broker demand a client certificate? set [broker.tls] cert_file and key_file)"
            }
        );
        read_start(
            stream,
            &address,
            |e| tls.explain_after_handshake(&e, uri),
            closed,
        )
        .await
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no AMQP answer over TLS from {address} within {} ms",
            timeout.as_millis()
        )),
    }
}

async fn probe_inner(host: &str, port: u16) -> Result<ServerInfo, String> {
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let address = format!("{host}:{port}");
    let closed = format!(
        "{address} closed the connection without an AMQP greeting (if it is a TLS port, use amqps://)"
    );
    read_start(stream, &address, |e| format!("{address}: {e}"), closed).await
}

/// The first byte of a TLS record that carries an alert or a handshake message: what a
/// TLS port answers to the AMQP protocol header, if it answers at all.
const TLS_ALERT: u8 = 0x15;
const TLS_HANDSHAKE: u8 = 0x16;

/// Sends the protocol header on `stream` and reads connection.start.
async fn read_start<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    address: &str,
    explain: impl Fn(std::io::Error) -> String,
    closed: String,
) -> Result<ServerInfo, String> {
    stream.write_all(PROTOCOL_HEADER).await.map_err(&explain)?;
    stream.flush().await.map_err(&explain)?;
    let mut buffer = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.map_err(&explain)?;
        if read == 0 {
            return Err(closed);
        }
        buffer.extend_from_slice(&chunk[..read]);
        if matches!(buffer[0], TLS_ALERT | TLS_HANDSHAKE) {
            return Err(format!(
                "{address} answers in TLS: it is a TLS port, use amqps://"
            ));
        }
        if buffer.starts_with(b"AMQP") {
            return Err(format!(
                "{address} speaks another AMQP version (it answered with its protocol header)"
            ));
        }
        if let Some(info) = parse_start(&buffer)? {
            return Ok(info);
        }
        if buffer.len() > MAX_START_FRAME {
            return Err(format!(
                "{address} does not answer like an AMQP 0-9-1 broker"
            ));
        }
    }
}

/// Parses connection.start from the bytes read so far; `Ok(None)` means "read more".
fn parse_start(bytes: &[u8]) -> Result<Option<ServerInfo>, String> {
    let Some(properties) = warren_amqp::decode_connection_start(bytes)? else {
        return Ok(None);
    };
    let text = |key: &str| {
        properties
            .as_ref()
            .iter()
            .find(|(name, _)| name.as_ref() == key)
            .and_then(|(_, value)| match value {
                FieldValue::S(text) => Some(text.as_ref().clone()),
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
