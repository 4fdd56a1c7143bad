//! One clock for a run: nanoseconds since the Unix epoch, read from the monotonic clock
//! (so it never jumps) and anchored once to the wall clock (so times written into message
//! headers mean the same thing to every task, and to other processes within clock skew).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A monotonic clock anchored to the wall clock at the start of the run.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    origin_unix_ns: u64,
}

impl Clock {
    /// Anchors a clock now.
    pub fn start() -> Self {
        let origin = Instant::now();
        let origin_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self {
            origin,
            origin_unix_ns,
        }
    }

    /// A clock for one worker of a shared run: its wall clock corrected by `offset_ns`
    /// (what it must add to agree with worker 0's), anchored at the last whole second of
    /// that corrected time, so that every worker counts seconds from a whole second of
    /// one time base and their per-second series add up second by second.
    pub fn aligned(offset_ns: i64) -> Self {
        let now = Instant::now();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let corrected = wall.saturating_add_signed(offset_ns);
        let into_second = corrected % 1_000_000_000;
        Self {
            origin: now
                .checked_sub(Duration::from_nanos(into_second))
                .unwrap_or(now),
            origin_unix_ns: corrected - into_second,
        }
    }

    /// A clock whose origin (now) reads `origin_unix_ns`: for rebuilding a run whose
    /// readings were recorded elsewhere.
    pub fn reading_at_origin(origin_unix_ns: u64) -> Self {
        Self {
            origin: Instant::now(),
            origin_unix_ns,
        }
    }

    /// The reading at the origin, ns since the Unix epoch.
    pub fn origin_unix_ns(&self) -> u64 {
        self.origin_unix_ns
    }

    /// Nanoseconds since the Unix epoch.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    /// The clock's reading at `instant`.
    #[inline]
    pub fn ns_at(&self, instant: Instant) -> u64 {
        self.origin_unix_ns + instant.saturating_duration_since(self.origin).as_nanos() as u64
    }

    /// The instant at which the clock reads `ns`.
    pub fn instant_at(&self, ns: u64) -> Instant {
        self.origin + Duration::from_nanos(ns.saturating_sub(self.origin_unix_ns))
    }

    /// The instant the clock was anchored.
    pub fn origin(&self) -> Instant {
        self.origin
    }
}
