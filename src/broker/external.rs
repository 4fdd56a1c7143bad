//! External brokers: warren connects to nodes it does not own, checks each URI once at
//! start, and never shows a password.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::BrokerError;
use crate::amqp::{ServerInfo, TlsClient, connect, probe_uri};
use crate::broker_uri::BrokerUri;

/// A broker someone else runs, one URI per node.
#[derive(Debug, Clone)]
pub struct ExternalBroker {
    /// The nodes' URIs as the scenario gives them.
    pub uris: Vec<BrokerUri>,
    /// TLS for amqps URIs, from `[broker.tls]` (this system's roots when unset).
    pub tls: Option<TlsClient>,
}

/// How long one check of one URI may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

impl ExternalBroker {
    /// Checks every URI: an AMQP broker answers (over TLS for amqps, with `tls`), accepts
    /// the credentials and opens a channel.
    ///
    /// # Errors
    /// [`BrokerError::Unreachable`] naming the (redacted) URI and the reason, for the first
    /// URI that fails; [`BrokerError::Interrupted`] when `cancel` fires.
    pub async fn check(
        uris: Vec<BrokerUri>,
        tls: Option<TlsClient>,
        cancel: &CancellationToken,
    ) -> Result<Self, BrokerError> {
        for uri in &uris {
            tokio::select! {
                () = cancel.cancelled() => return Err(BrokerError::Interrupted),
                result = check_one(uri, tls.as_ref()) => { result?; }
            }
        }
        Ok(Self { uris, tls })
    }
}

async fn check_one(uri: &BrokerUri, tls: Option<&TlsClient>) -> Result<ServerInfo, BrokerError> {
    let unreachable = |reason: String| BrokerError::Unreachable {
        uri: uri.redacted(),
        reason,
    };
    let info = probe_uri(uri, tls, CHECK_TIMEOUT)
        .await
        .map_err(unreachable)?;
    let connection = connect(uri, tls, "warren check", CHECK_TIMEOUT)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let channel = connection.check_channel().await;
    connection.close().await;
    channel.map_err(|reason| {
        unreachable(format!(
            "connected, but no channel could be opened: {reason}"
        ))
    })?;
    Ok(info)
}
