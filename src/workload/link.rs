//! Connections shared by a group of tasks, and reconnection: when a task finds its
//! connection dead it asks for a new one; the first to ask reconnects (capped exponential
//! backoff, trying every broker URI in turn), the others get the new connection. The lock
//! is only taken to get or replace a connection, never per message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::amqp::Endpoints;
use crate::amqp::{AmqpConnection, ConnectOptions, ConnectionEvent, connect_with};
use crate::events::{EventKind, EventLog};

/// First wait after a failed connection attempt.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest wait between attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// One connection slot: a connection and the generation it belongs to.
pub struct Link {
    /// Shown in events and in the broker's connection list.
    pub name: String,
    uris: Arc<Endpoints>,
    options: ConnectOptions,
    events: EventLog,
    state: Mutex<LinkState>,
    /// Connections made after the first (read by the live metrics).
    reconnects: AtomicU64,
}

struct LinkState {
    connection: Option<Arc<AmqpConnection>>,
    /// Bumped at every new connection, so a task can say which one failed on it.
    generation: u64,
    /// Index of the URI to try next.
    next_uri: usize,
}

/// A connection handed to a task, with its generation.
pub struct Leased {
    pub connection: Arc<AmqpConnection>,
    pub generation: u64,
}

impl Link {
    /// A slot named `name` that connects to `uris`, starting with `first_uri`.
    pub fn new(
        name: String,
        uris: Arc<Endpoints>,
        first_uri: usize,
        heartbeat: Duration,
        events: EventLog,
    ) -> Self {
        let options = ConnectOptions {
            name: name.clone(),
            heartbeat,
            timeout: Duration::from_secs(10),
            tls: uris.tls().cloned(),
        };
        let next_uri = first_uri % uris.len().max(1);
        Self {
            name,
            uris,
            options,
            events,
            state: Mutex::new(LinkState {
                connection: None,
                generation: 0,
                next_uri,
            }),
            reconnects: AtomicU64::new(0),
        }
    }

    /// A live connection. `failed` names the generation the caller saw fail (it is then
    /// replaced unless someone already did). `None` when `cancel` fires first.
    pub async fn lease(&self, failed: Option<u64>, cancel: &CancellationToken) -> Option<Leased> {
        let mut state = self.state.lock().await;
        if let Some(connection) = &state.connection {
            let stale = failed == Some(state.generation) || !connection.is_connected();
            if !stale {
                return Some(Leased {
                    connection: connection.clone(),
                    generation: state.generation,
                });
            }
            if let Some(old) = state.connection.take() {
                tokio::spawn(async move { old.close().await });
            }
        }
        let reconnecting = state.generation > 0;
        let mut backoff = BACKOFF_START;
        loop {
            let uri = &self.uris[state.next_uri];
            state.next_uri = (state.next_uri + 1) % self.uris.len();
            let attempt = tokio::select! {
                () = cancel.cancelled() => return None,
                attempt = connect_with(uri, &self.options) => attempt,
            };
            match attempt {
                Ok(connection) => {
                    let connection = Arc::new(connection);
                    self.watch(&connection);
                    state.generation += 1;
                    state.connection = Some(connection.clone());
                    if reconnecting {
                        self.reconnects.fetch_add(1, Ordering::Relaxed);
                        self.events
                            .record(&self.name, EventKind::Reconnected, uri.redacted());
                    }
                    return Some(Leased {
                        connection,
                        generation: state.generation,
                    });
                }
                Err(error) => {
                    self.events
                        .record(&self.name, EventKind::ConnectFailed, error.to_string());
                    tokio::select! {
                        () = cancel.cancelled() => return None,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                }
            }
        }
    }

    /// Records the connection's blocked / unblocked / failed events until it closes.
    fn watch(&self, connection: &AmqpConnection) {
        let mut events = Box::pin(connection.events());
        let log = self.events.clone();
        let name = self.name.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                match event {
                    ConnectionEvent::Blocked(reason) => {
                        log.record(&name, EventKind::Blocked, reason)
                    }
                    ConnectionEvent::Unblocked => log.record(&name, EventKind::Unblocked, ""),
                    ConnectionEvent::Failed(reason) => {
                        log.record(&name, EventKind::ConnectionLost, reason);
                        break;
                    }
                }
            }
        });
    }

    /// How many connections were made after the first.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Closes the current connection, if any.
    pub async fn close(&self) {
        let connection = self.state.lock().await.connection.take();
        if let Some(connection) = connection {
            connection.close().await;
        }
    }
}
