//! The run's event log: what happened to connections and channels (lost, reconnected,
//! blocked, crashed on purpose...), with when and where. Events are rare, so one shared,
//! locked list is fine; nothing per message goes here. Events of one kind from one source
//! within one second are coalesced into the first (with a count and the last time), so a
//! storm of reconnect attempts stays a readable events.csv.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::metrics::Clock;

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// The run's queue is gone (deleted, or crashed and not restarted): the broker
    /// cancelled its consumers, and its reason for the queue follows.
    QueueDeleted,
    /// A consumer's delivery tags skipped: deliveries were lost on the way (only a
    /// network that drops bytes mid-stream does that); it reopened its channel.
    StreamHole,
    /// A consumer received nothing for its stall timeout while its queue held ready
    /// messages; it reopened its channel.
    ConsumerStalled,
    /// The final read of the queue after the drain: what it found.
    FinalRead,
    /// The workers of a shared run: clock offsets, meetings, a worker that did not come.
    Workers,
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
    /// How many more events of this kind from this source came within the same second,
    /// coalesced into this one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repeats: u64,
    /// When the last of those came (milliseconds, like `at_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ms: Option<f64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Event {
    /// An event that stands for itself alone.
    pub fn new(at_ms: f64, source: &str, kind: EventKind, detail: impl Into<String>) -> Self {
        Self {
            at_ms,
            source: source.to_string(),
            kind,
            detail: detail.into(),
            repeats: 0,
            last_ms: None,
        }
    }

    /// How many events this one stands for (itself and those coalesced into it).
    pub fn occurrences(&self) -> u64 {
        1 + self.repeats
    }

    /// The detail, and how many more like it were coalesced, for reports.
    pub fn described(&self) -> String {
        match self.last_ms {
            Some(last) if self.repeats > 0 => format!(
                "{} (and {} more like it until {:.3} ms)",
                self.detail, self.repeats, last
            ),
            _ => self.detail.clone(),
        }
    }
}

/// The events and where the latest of each (source, kind) is, to coalesce repeats.
#[derive(Debug, Default)]
struct Entries {
    events: Vec<Event>,
    latest: HashMap<(String, EventKind), usize>,
}

/// A cloneable handle on the run's event log.
#[derive(Debug, Clone)]
pub struct EventLog {
    clock: Clock,
    entries: Arc<Mutex<Entries>>,
}

impl EventLog {
    /// An empty log timed by `clock`.
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            entries: Arc::new(Mutex::new(Entries::default())),
        }
    }

    /// Records an event now; one of the same kind from the same source in the same second
    /// as the latest such event is counted into that one instead.
    pub fn record(&self, source: &str, kind: EventKind, detail: impl Into<String>) {
        let at_ms = self.clock.origin().elapsed().as_secs_f64() * 1_000.0;
        let detail = detail.into();
        tracing::info!(source, ?kind, detail = %detail, "event");
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key = (source.to_string(), kind);
        if let Some(&index) = entries.latest.get(&key) {
            let first = &mut entries.events[index];
            if (first.at_ms / 1_000.0).floor() == (at_ms / 1_000.0).floor() {
                first.repeats += 1;
                first.last_ms = Some(at_ms);
                return;
            }
        }
        let index = entries.events.len();
        entries.events.push(Event::new(at_ms, source, kind, detail));
        entries.latest.insert(key, index);
    }

    /// Every event so far, in order.
    pub fn snapshot(&self) -> Vec<Event> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .events
            .clone()
    }

    /// How many events of `kind` were recorded.
    pub fn count(&self, kind: EventKind) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .events
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.occurrences() as usize)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a run whose queue had crashed wrote 141,259 `republishing` rows; one
    /// source's events of one kind within a second are one row now, with their count.
    #[test]
    fn repeats_within_a_second_are_one_row_with_their_count() {
        let log = EventLog::new(Clock::start());
        for _ in 0..1_000 {
            log.record("publisher 1", EventKind::Republishing, "3 message(s)");
        }
        log.record("publisher 2", EventKind::Republishing, "1 message(s)");
        log.record("publisher 1", EventKind::ConnectFailed, "refused");
        let events = log.snapshot();
        // Unless the second turned over during the loop, publisher 1's are one row.
        let rows = events
            .iter()
            .filter(|e| e.source == "publisher 1" && e.kind == EventKind::Republishing)
            .count();
        assert!(rows <= 2, "{rows} rows");
        assert_eq!(log.count(EventKind::Republishing), 1_001);
        assert_eq!(log.count(EventKind::ConnectFailed), 1);
        let first = &events[0];
        assert!(first.repeats >= 500, "{first:?}");
        assert!(
            first.described().contains("more like it until"),
            "{first:?}"
        );
        assert_eq!(events.len(), rows + 2);
    }
}
