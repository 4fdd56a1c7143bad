//! Live counters: each task writes its own (a plain atomic store of a number it already
//! keeps, on a cache line of its own); the coordinator reads them for progress lines and
//! for the drain. Nothing is shared between tasks on the hot path.

use std::sync::atomic::{AtomicU64, Ordering};

/// A counter alone on its cache line, so tasks never slow each other down.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Counter(AtomicU64);

impl Counter {
    /// Publishes the task's current value.
    #[inline]
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Adds one (the task is the only writer, so a load and a store suffice: no locked
    /// instruction). For rare events: nacks, returns, republishes, redeliveries.
    #[inline]
    pub fn bump(&self) {
        self.0
            .store(self.0.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Reads the last published value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One publisher's live numbers.
#[derive(Debug, Default)]
pub struct PublisherCounters {
    pub sent: Counter,
    pub confirmed: Counter,
    pub failures: Counter,
    pub nacked: Counter,
    pub returned: Counter,
    /// Copies published again after a failure (counted in `sent` too).
    pub republished: Counter,
    /// Published and not yet answered (confirmed, nacked or returned).
    pub in_flight: Counter,
}

/// One consumer's live numbers.
#[derive(Debug, Default)]
pub struct ConsumerCounters {
    /// Every delivery.
    pub deliveries: Counter,
    /// Deliveries seen for the first time by this consumer.
    pub fresh: Counter,
    /// Deliveries the broker flagged redelivered.
    pub redelivered: Counter,
}

/// Sums over all tasks, at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub sent: u64,
    pub confirmed: u64,
    pub failures: u64,
    pub deliveries: u64,
    pub fresh: u64,
}

/// Sums the counters of every task.
pub fn totals(
    publishers: &[std::sync::Arc<PublisherCounters>],
    consumers: &[std::sync::Arc<ConsumerCounters>],
) -> Totals {
    Totals {
        sent: publishers.iter().map(|p| p.sent.get()).sum(),
        confirmed: publishers.iter().map(|p| p.confirmed.get()).sum(),
        failures: publishers.iter().map(|p| p.failures.get()).sum(),
        deliveries: consumers.iter().map(|c| c.deliveries.get()).sum(),
        fresh: consumers.iter().map(|c| c.fresh.get()).sum(),
    }
}
