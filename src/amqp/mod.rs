//! warren's own face over the AMQP client (lapin): the rest of the code talks to these
//! types, so a change of client or of lapin's API stays in this module.

mod probe;

pub use probe::{ServerInfo, probe};

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

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

/// An open AMQP connection.
pub struct AmqpConnection {
    inner: Connection,
}

/// Opens an AMQP connection, named `name` in the broker's management views.
///
/// # Errors
/// [`AmqpError`] naming the redacted URI and what went wrong.
pub async fn connect(
    uri: &BrokerUri,
    name: &str,
    timeout: Duration,
) -> Result<AmqpConnection, AmqpError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(timeout, Connection::connect(uri.expose(), properties)).await {
        Err(_) => Err(AmqpError::TimedOut {
            uri: uri.redacted(),
            seconds: timeout.as_secs(),
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
    /// Checks that a channel can be opened and closed on this connection.
    ///
    /// # Errors
    /// The client's error, as text with credentials redacted.
    pub async fn check_channel(&self) -> Result<(), String> {
        let channel = self
            .inner
            .create_channel()
            .await
            .map_err(|e| redact(&e.to_string()))?;
        channel
            .close(200, "warren check".into())
            .await
            .map_err(|e| redact(&e.to_string()))
    }

    /// Closes the connection politely; errors are ignored (the broker may be gone).
    pub async fn close(self) {
        let _ = self.inner.close(200, "warren done".into()).await;
    }
}
