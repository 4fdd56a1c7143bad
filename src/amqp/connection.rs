//! Connections: opening one from a broker URI (amqp or amqps), its blocked / unblocked /
//! failed events, channels, and a polite close.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use warren_amqp::callbacks::ConnectionCallback;
use warren_amqp::connection::{Connection, OpenConnectionArguments};
use warren_amqp::{Close, channel::Channel};

use super::channel::AmqpChannel;
use super::failure::{CLOSE_WITHIN, ConnectionState, Failure};
use super::tls::TlsClient;
use crate::broker_uri::BrokerUri;
use crate::redact::redact;

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
    /// The client could not send what opening takes (a virtual host over 255 bytes): no
    /// socket was opened.
    #[error("{uri}: {reason}")]
    Unsendable { uri: String, reason: String },
}

/// Whether the broker refused the connection: its connection.close during the handshake
/// carried 403 ACCESS_REFUSED (credentials, permissions) or 530 NOT_ALLOWED (a vhost it
/// lacks, a connection limit). Any other close (320 CONNECTION_FORCED from a node going
/// down) is passing, and worth a retry.
fn refused_by_reply(error: &warren_amqp::error::Error) -> bool {
    matches!(
        error,
        warren_amqp::error::Error::ConnectionOpenRefused {
            reply_code: ACCESS_REFUSED | NOT_ALLOWED,
            ..
        }
    )
}

/// AMQP's reply code for a refused login or permission.
const ACCESS_REFUSED: u16 = 403;
/// AMQP's reply code for an operation the broker does not allow (a vhost it lacks).
const NOT_ALLOWED: u16 = 530;

/// How to open a connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Shown in the broker's connection list (`rabbitmqctl list_connections user_provided_name`).
    pub name: String,
    /// AMQP heartbeat; zero takes the broker's (amqprs cannot turn heartbeats off).
    pub heartbeat: Duration,
    /// How long connecting may take.
    pub timeout: Duration,
    /// TLS for amqps URIs (`[broker.tls]`, or a TLS node's CA); this system's roots when
    /// unset.
    pub tls: Option<TlsClient>,
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

/// The client's callbacks for one connection: they turn the broker's connection.close,
/// blocked and unblocked into [`ConnectionEvent`]s.
struct ConnectionEvents {
    state: Arc<ConnectionState>,
    events: mpsc::UnboundedSender<ConnectionEvent>,
}

#[async_trait::async_trait]
impl ConnectionCallback for ConnectionEvents {
    async fn close(
        &mut self,
        _connection: &Connection,
        close: Close,
    ) -> Result<(), warren_amqp::error::Error> {
        let failure = Failure::from_connection_close(close.reply_code(), close.reply_text());
        let _ = self
            .events
            .send(ConnectionEvent::Failed(failure.message.clone()));
        self.state.ended.record(failure);
        Ok(())
    }

    async fn blocked(&mut self, _connection: &Connection, reason: String) {
        let _ = self.events.send(ConnectionEvent::Blocked(reason));
    }

    async fn unblocked(&mut self, _connection: &Connection) {
        let _ = self.events.send(ConnectionEvent::Unblocked);
    }

    async fn secret_updated(&mut self, _connection: &Connection) {}
}

/// An open AMQP connection.
pub struct AmqpConnection {
    inner: Connection,
    state: Arc<ConnectionState>,
    events: Mutex<Option<mpsc::UnboundedReceiver<ConnectionEvent>>>,
}

/// Opens an AMQP connection with default options, named `name`.
///
/// # Errors
/// [`AmqpError`] naming the redacted URI and what went wrong.
pub async fn connect(
    uri: &BrokerUri,
    tls: Option<&TlsClient>,
    name: &str,
    timeout: Duration,
) -> Result<AmqpConnection, AmqpError> {
    connect_with(
        uri,
        &ConnectOptions {
            name: name.to_string(),
            heartbeat: Duration::from_secs(10),
            timeout,
            tls: tls.cloned(),
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
    let unreachable = |reason: String| AmqpError::Unreachable {
        uri: uri.redacted(),
        reason: redact(&reason),
    };
    let heartbeat = options.heartbeat.as_secs().min(u64::from(u16::MAX)) as u16;
    // The URI was parsed once, faithfully (an IPv6 literal is that address): connect to
    // exactly what it names.
    let mut arguments =
        OpenConnectionArguments::new(uri.host(), uri.port(), uri.username(), uri.password());
    arguments
        .virtual_host(uri.vhost())
        .heartbeat(heartbeat)
        .connection_name(&options.name);
    if uri.is_tls() {
        let adaptor = match &options.tls {
            Some(tls) => tls.adaptor(uri),
            None => TlsClient::system()
                .map_err(|e| unreachable(e.to_string()))?
                .adaptor(uri),
        };
        arguments.tls_adaptor(adaptor);
    }
    let inner = match tokio::time::timeout(options.timeout, Connection::open(&arguments)).await {
        Err(_) => {
            return Err(AmqpError::TimedOut {
                uri: uri.redacted(),
                seconds: options.timeout.as_secs(),
            });
        }
        Ok(Err(error)) => {
            let reason = redact(&error.to_string());
            return Err(
                if let warren_amqp::error::Error::ShortStrTooLong(_) = error {
                    AmqpError::Unsendable {
                        uri: uri.redacted(),
                        reason,
                    }
                } else if refused_by_reply(&error) {
                    AmqpError::Refused {
                        uri: uri.redacted(),
                        reason,
                    }
                } else {
                    unreachable(reason)
                },
            );
        }
        Ok(Ok(inner)) => inner,
    };
    let state = Arc::new(ConnectionState::default());
    let (sender, receiver) = mpsc::unbounded_channel();
    let callbacks = ConnectionEvents {
        state: state.clone(),
        events: sender.clone(),
    };
    if let Err(error) = inner.register_callback(callbacks).await {
        return Err(unreachable(error.to_string()));
    }
    // A connection lost without the broker's connection.close (a broken socket, missed
    // heartbeats) only shows here.
    // A protocol error (bytes that are no AMQP, a frame for a channel that is not open, a
    // reply nobody asked for) ends the connection the same way, with its reason.
    let watched = inner.clone();
    let watched_state = state.clone();
    tokio::spawn(async move {
        if watched.listen_network_io_failure().await {
            let message = match watched.protocol_error() {
                Some(reason) => {
                    let failure = Failure::connection_lost(format!(
                        "protocol error from the broker: {reason}"
                    ));
                    watched_state.ended.record(failure.clone());
                    failure.message
                }
                None => "the connection was lost (network error or missed heartbeats)".into(),
            };
            let _ = sender.send(ConnectionEvent::Failed(message));
        }
    });
    Ok(AmqpConnection {
        inner,
        state,
        events: Mutex::new(Some(receiver)),
    })
}

impl AmqpConnection {
    /// Opens a channel.
    ///
    /// # Errors
    /// A [`Failure`] classified from the client's error.
    pub async fn open_channel(&self) -> Result<AmqpChannel, Failure> {
        if let Some(failure) = self.state.ended.get() {
            return Err(failure);
        }
        let channel: Channel = self.inner.open_channel(None).await.map_err(|error| {
            self.state.ended.get().unwrap_or_else(|| {
                if self.inner.is_open() {
                    Failure::channel_closed(error.to_string())
                } else {
                    Failure::connection_lost(error.to_string())
                }
            })
        })?;
        AmqpChannel::open(channel, self.state.clone()).await
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
        self.inner.is_open()
    }

    /// The stream of blocked / unblocked / failed events of this connection. There is one
    /// such stream per connection: later calls get an empty one.
    pub fn events(&self) -> impl futures_util::Stream<Item = ConnectionEvent> + Send + 'static {
        let receiver = self
            .events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        futures_util::stream::unfold(receiver, |receiver| async move {
            let mut receiver = receiver?;
            let event = receiver.recv().await?;
            Some((event, Some(receiver)))
        })
    }

    /// Closes the connection politely; errors are ignored (the broker may be gone).
    pub async fn close(&self) {
        if self.inner.is_open() {
            let _ = tokio::time::timeout(CLOSE_WITHIN, self.inner.clone().close()).await;
        }
    }
}
