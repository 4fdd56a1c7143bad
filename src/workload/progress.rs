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
}

/// One consumer's live numbers.
#[derive(Debug, Default)]
pub struct ConsumerCounters {
    /// Every delivery.
    pub deliveries: Counter,
    /// Deliveries seen for the first time by this consumer.
    pub fresh: Counter,
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
