//! When publishing ends. Usually `duration` after the start. With `after_faults`, the run's
//! faults hold it open: publishers go on until the fault runner settles it, once every
//! fault has ended, at `after_faults` past the last end: never before `duration`, and at most
//! [`HOLD_LIMIT`] after it, so that a fault that never ends cannot keep the load going. A
//! fault that a loaded machine makes late still ends inside the run, and recovery from it
//! is measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::metrics::Clock;

/// How far past `duration` faults may hold publishing.
pub const HOLD_LIMIT: Duration = Duration::from_secs(300);

/// The instant publishing started, and when it ends: what the fault runner is told.
#[derive(Clone)]
pub struct PublishingStart {
    /// When message 0 was due.
    pub start: Instant,
    /// The run's clock.
    pub clock: Clock,
    /// When publishing ends; `None` for a run bounded by a message count only.
    pub deadline: Option<PublishingDeadline>,
}

/// The end of publishing, shared by the publishers and the fault runner. Publishers read
/// it per message (one atomic load).
#[derive(Clone)]
pub struct PublishingDeadline {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Clock,
    /// `duration` after the start.
    planned_ns: u64,
    /// The latest it may be settled at.
    cap_ns: u64,
    /// The deadline now, on the run's clock: the cap while held.
    ns: AtomicU64,
    /// Told when the deadline is settled.
    settled: watch::Sender<bool>,
}

impl PublishingDeadline {
    /// A deadline `duration` after `start`, held open when `held`: until settled, it is
    /// the cap, [`HOLD_LIMIT`] later.
    pub fn new(clock: Clock, start: Instant, duration: Duration, held: bool) -> Self {
        let planned_ns = clock.ns_at(start + duration);
        let cap_ns = if held {
            clock.ns_at(start + duration + HOLD_LIMIT)
        } else {
            planned_ns
        };
        Self {
            inner: Arc::new(Inner {
                clock,
                planned_ns,
                cap_ns,
                ns: AtomicU64::new(cap_ns),
                settled: watch::channel(!held).0,
            }),
        }
    }

    /// The deadline now, as a reading of the run's clock.
    #[inline]
    pub fn ns(&self) -> u64 {
        self.inner.ns.load(Ordering::Relaxed)
    }

    /// The deadline now, as an instant.
    pub fn instant(&self) -> Instant {
        self.inner.clock.instant_at(self.ns())
    }

    /// `duration` after the start, as planned.
    pub fn planned_ns(&self) -> u64 {
        self.inner.planned_ns
    }

    /// Whether it is still held open.
    pub fn is_held(&self) -> bool {
        !*self.inner.settled.borrow()
    }

    /// Fixes the deadline at `at_least_ns`, but not before the planned one nor after the
    /// cap; returns where it is.
    pub fn settle(&self, at_least_ns: u64) -> u64 {
        let ns = at_least_ns
            .max(self.inner.planned_ns)
            .min(self.inner.cap_ns);
        self.inner.ns.store(ns, Ordering::Relaxed);
        self.inner.settled.send_replace(true);
        ns
    }

    /// Waits until the deadline passes, following it when it is settled meanwhile.
    pub async fn passed(&self) {
        loop {
            let settled = self.settled();
            let held = self.is_held();
            let at = tokio::time::Instant::from(self.instant());
            tokio::select! {
                () = tokio::time::sleep_until(at) => return,
                () = settled, if held => {}
            }
        }
    }

    /// Waits until the deadline is settled (at once if it is). Subscribe before reading
    /// the deadline: `let settled = d.settled(); let at = d.instant();`.
    pub fn settled(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut settled = self.inner.settled.subscribe();
        async move {
            let _ = settled.wait_for(|settled| *settled).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_not_held_is_duration_after_the_start() {
        let clock = Clock::start();
        let start = clock.origin();
        let deadline = PublishingDeadline::new(clock, start, Duration::from_secs(10), false);
        assert!(!deadline.is_held());
        assert_eq!(deadline.instant(), start + Duration::from_secs(10));
        assert_eq!(deadline.ns(), deadline.planned_ns());
    }

    #[test]
    fn a_held_deadline_is_the_cap_until_settled_between_duration_and_the_limit() {
        let clock = Clock::start();
        let start = clock.origin();
        let deadline = PublishingDeadline::new(clock, start, Duration::from_secs(10), true);
        assert!(deadline.is_held());
        assert_eq!(deadline.instant(), start + Duration::from_secs(310));
        let s = |secs: u64| clock.ns_at(start + Duration::from_secs(secs));
        // Faults that ended early: the planned deadline.
        assert_eq!(deadline.clone().settle(s(3)), s(10));
        assert!(!deadline.is_held());
        // Late: later, up to the cap.
        let late = PublishingDeadline::new(clock, start, Duration::from_secs(10), true);
        assert_eq!(late.settle(s(14)), s(14));
        assert_eq!(late.instant(), start + Duration::from_secs(14));
        let very_late = PublishingDeadline::new(clock, start, Duration::from_secs(10), true);
        assert_eq!(very_late.settle(s(400)), s(310));
    }

    #[tokio::test]
    async fn waiting_for_the_settlement_ends_when_it_comes_or_at_once_after() {
        let clock = Clock::start();
        let deadline =
            PublishingDeadline::new(clock, clock.origin(), Duration::from_secs(10), true);
        let waiting = tokio::spawn(deadline.settled());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        deadline.settle(0);
        waiting.await.unwrap();
        deadline.settled().await;
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_held_deadline_follows_its_settlement() {
        let clock = Clock::start();
        let start = clock.origin();
        let deadline = PublishingDeadline::new(clock, start, Duration::from_secs(10), true);
        let passed = tokio::spawn({
            let deadline = deadline.clone();
            async move { deadline.passed().await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        // Settled at 12 s, before the 310 s cap: the wait ends at 12 s.
        deadline.settle(clock.ns_at(start + Duration::from_secs(12)));
        passed.await.unwrap();
        let ended = tokio::time::Instant::now().into_std();
        assert!(ended >= start + Duration::from_secs(12));
        assert!(ended < start + Duration::from_secs(13));
    }
}
