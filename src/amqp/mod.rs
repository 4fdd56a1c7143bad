//! warren's own face over the AMQP client (lapin): the rest of the code talks to these
//! types, so a change of client or of lapin's API stays in this module.

mod channel;
mod probe;

pub use channel::{
    AmqpChannel, Deliveries, Delivery, Failure, FailureKind, PublishOutcome, PublishTarget,
    QueueSpec, StreamStart, within,
};
pub use probe::{ServerInfo, probe};

use std::str::FromStr;
use std::time::Duration;

use amq_protocol::uri::AMQPUri;
use futures_util::StreamExt;
use lapin::{Connection, ConnectionProperties, Event};

use crate::redact::{BrokerUri, redact};

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// Nothing accepted a TCP connection, or it did not answer as an AMQP broker.
    #[error("{uri}: {reason}")]
    Unreachable { uri: String, reason: String },
    /// The broker answered, and refused the connection (credentials, vhost, limits).
    #[error("{uri}: the broker refused the connection: {reason}")]
    Refused { uri: String, reason: String },
    /// No answer within the time allowed.
    #[error("{uri}: no answer within {seconds} s")]
    TimedOut { uri: String, seconds: u64 },
}

/// How to open a connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Shown in the broker's connection list (`rabbitmqctl list_connections user_provided_name`).
    pub name: String,
    /// AMQP heartbeat; zero turns heartbeats off.
    pub heartbeat: Duration,
    /// How long connecting may take.
    pub timeout: Duration,
}

/// An open AMQP connection.
pub struct AmqpConnection {
    inner: Connection,
}

/// Something the broker told a connection, outside any channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// connection.blocked (a resource alarm): publishing stalls.
    Blocked(String),
    /// connection.unblocked.
    Unblocked,
    /// The connection failed.
    Failed(String),
}

/// Opens an AMQP connection with default options, named `name`.
///
/// # Errors
/// [`AmqpError`] naming the redacted URI and what went wrong.
pub async fn connect(
    uri: &BrokerUri,
    name: &str,
    timeout: Duration,
) -> Result<AmqpConnection, AmqpError> {
    connect_with(
        uri,
        &ConnectOptions {
            name: name.to_string(),
            heartbeat: Duration::from_secs(10),
            timeout,
        },
    )
    .await
}

/// Opens an AMQP connection.
///
/// # Errors
/// [`AmqpError`] naming the redacted URI and what went wrong.
pub async fn connect_with(
    uri: &BrokerUri,
    options: &ConnectOptions,
) -> Result<AmqpConnection, AmqpError> {
    let mut parsed = AMQPUri::from_str(uri.expose()).map_err(|reason| AmqpError::Unreachable {
        uri: uri.redacted(),
        reason: redact(&reason),
    })?;
    parsed.query.heartbeat = Some(options.heartbeat.as_secs().min(u64::from(u16::MAX)) as u16);
    parsed.query.connection_timeout = Some(options.timeout.as_millis() as u64);
    let properties =
        ConnectionProperties::default().with_connection_name(options.name.as_str().into());
    match tokio::time::timeout(options.timeout, Connection::connect_uri(parsed, properties)).await {
        Err(_) => Err(AmqpError::TimedOut {
            uri: uri.redacted(),
            seconds: options.timeout.as_secs(),
        }),
        Ok(Ok(inner)) => Ok(AmqpConnection { inner }),
        Ok(Err(error)) => {
            let reason = redact(&error.to_string());
            let refused = matches!(
                error.kind(),
                lapin::ErrorKind::ProtocolError(_) | lapin::ErrorKind::AuthProviderError(_)
            ) || reason.contains("ACCESS_REFUSED")
                || reason.contains("NOT_ALLOWED");
            Err(if refused {
                AmqpError::Refused {
                    uri: uri.redacted(),
                    reason,
                }
            } else {
                AmqpError::Unreachable {
                    uri: uri.redacted(),
                    reason,
                }
            })
        }
    }
}

impl AmqpConnection {
    /// Opens a channel.
    ///
    /// # Errors
    /// A [`Failure`] classified from the client's error.
    pub async fn open_channel(&self) -> Result<AmqpChannel, Failure> {
        self.inner
            .create_channel()
            .await
            .map(AmqpChannel::new)
            .map_err(Failure::from)
    }

    /// Checks that a channel can be opened and closed on this connection.
    ///
    /// # Errors
    /// The client's error, as text with credentials redacted.
    pub async fn check_channel(&self) -> Result<(), String> {
        let channel = self.open_channel().await.map_err(|e| e.message)?;
        channel.close().await;
        Ok(())
    }

    /// True while the connection is usable.
    pub fn is_connected(&self) -> bool {
        self.inner.status().connected()
    }

    /// The stream of blocked / unblocked / failed events of this connection.
    pub fn events(&self) -> impl futures_util::Stream<Item = ConnectionEvent> + Send + 'static {
        self.inner.events_listener().filter_map(|event| async move {
            match event {
                Event::ConnectionBlocked(reason) => Some(ConnectionEvent::Blocked(reason)),
                Event::ConnectionUnblocked => Some(ConnectionEvent::Unblocked),
                Event::Error(error) => Some(ConnectionEvent::Failed(redact(&error.to_string()))),
                _ => None,
            }
        })
    }

    /// Closes the connection politely; errors are ignored (the broker may be gone).
    pub async fn close(&self) {
        let _ = tokio::time::timeout(
            channel::CLOSE_WITHIN,
            self.inner.close(200, "warren done".into()),
        )
        .await;
    }
}
