//! The run's event log: what happened to connections and channels (lost, reconnected,
//! blocked, crashed on purpose...), with when and where. Events are rare, so one shared,
//! locked list is fine; nothing per message goes here.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::metrics::Clock;

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A connection was opened after a failure.
    Reconnected,
    /// A connection attempt failed.
    ConnectFailed,
    /// A connection failed (I/O error, missed heartbeats, closed by the broker).
    ConnectionLost,
    /// A channel failed.
    ChannelClosed,
    /// The broker blocked the connection (resource alarm).
    Blocked,
    /// The broker unblocked the connection.
    Unblocked,
    /// Unconfirmed messages waited longer than the confirm timeout.
    ConfirmTimeout,
    /// Unconfirmed messages were queued for republishing.
    Republishing,
    /// Unconfirmed messages were given up.
    Dropped,
    /// A consumer closed its channel without acknowledging, on purpose (crash_every).
    ConsumerCrash,
    /// The broker refused an operation for good; the task stopped.
    Refused,
    /// A fault began.
    FaultStart,
    /// A fault ended (was taken back, or its action completed).
    FaultEnd,
    /// A fault could not be made.
    FaultFailed,
    /// Publishing ended.
    PublishEnd,
    /// The drain ended.
    DrainEnd,
}

/// One event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the run's clock origin.
    pub at_ms: f64,
    /// Which task or connection: "publisher 3", "consumer 0", "publishers connection 1".
    pub source: String,
    pub kind: EventKind,
    /// Free text: the error, how many messages, the broker's reason.
    pub detail: String,
}

/// A cloneable handle on the run's event log.
#[derive(Debug, Clone)]
pub struct EventLog {
    clock: Clock,
    entries: Arc<Mutex<Vec<Event>>>,
}

impl EventLog {
    /// An empty log timed by `clock`.
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            entries: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Records an event now.
    pub fn record(&self, source: &str, kind: EventKind, detail: impl Into<String>) {
        let at_ms = self.clock.origin().elapsed().as_secs_f64() * 1_000.0;
        let event = Event {
            at_ms,
            source: source.to_string(),
            kind,
            detail: detail.into(),
        };
        tracing::info!(source, ?kind, detail = %event.detail, "event");
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }

    /// Every event so far, in order.
    pub fn snapshot(&self) -> Vec<Event> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many events of `kind` were recorded.
    pub fn count(&self, kind: EventKind) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|e| e.kind == kind)
            .count()
    }
}
