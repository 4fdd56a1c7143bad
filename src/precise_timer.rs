//! A sleep with microsecond precision, for pacing, processing delays and toxics. tokio's
//! timer wheel has a resolution of one millisecond: a publisher paced at 5,000 msg/s woke
//! on each millisecond tick and sent five messages in a burst, and a 0.1 ms pause took
//! more than a millisecond. A Linux timerfd wakes the runtime's poll at the due time itself
//! (high-resolution timers, no timer slack).

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// One timer, reused for every sleep of one task (a sleep re-arms it). Its timerfd is
/// made at the first sleep, so a task that never waits costs nothing.
#[derive(Default)]
pub struct PreciseTimer {
    /// Unset until the first sleep; then `None` where the system gives no timerfd (tokio's
    /// timer is used instead).
    fd: Option<Option<AsyncFd<OwnedTimer>>>,
}

/// A timerfd as tokio's poller takes it (nix's `TimerFd` implements `AsFd` only).
struct OwnedTimer(TimerFd);

impl AsRawFd for OwnedTimer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Registers `timer` with the runtime's poller.
#[allow(unsafe_code)]
fn register(timer: TimerFd) -> io::Result<AsyncFd<OwnedTimer>> {
    // SAFETY: the descriptor is owned by the `TimerFd`, which the `AsyncFd` owns for its
    // whole life, so it stays open and the same until the `AsyncFd` is dropped.
    unsafe { AsyncFd::register_with_interest(OwnedTimer(timer), Interest::READABLE) }
        .map_err(io::Error::from)
}

impl PreciseTimer {
    /// A timer on the monotonic clock (the clock of [`Instant`]); tokio's own timer where
    /// the system refuses a timerfd.
    pub fn new() -> Self {
        Self::default()
    }

    fn make_fd() -> Option<AsyncFd<OwnedTimer>> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(io::Error::from)
        .and_then(register);
        if let Err(error) = &fd {
            tracing::debug!(%error, "no timerfd: pacing on tokio's millisecond timer");
        }
        fd.ok()
    }

    /// Returns at `at` (a wake-up later: tens of microseconds), or at once when it has passed.
    /// Cancel-safe: dropped early, the next call re-arms the timer.
    pub async fn sleep_until(&mut self, at: Instant) {
        let Some(delay) = at
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            return;
        };
        let Some(fd) = self.fd.get_or_insert_with(Self::make_fd).as_ref() else {
            return tokio::time::sleep_until(at.into()).await;
        };
        // A zero expiration would disarm the timer; `delay` is never zero here.
        let armed = fd.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(delay)),
            TimerSetTimeFlags::empty(),
        );
        if armed.is_err() {
            return tokio::time::sleep_until(at.into()).await;
        }
        loop {
            let Ok(mut ready) = fd.readable().await else {
                return tokio::time::sleep_until(at.into()).await;
            };
            // Reading takes the expiry. Nothing to read (an expiry of an earlier arming,
            // replaced since) clears the readiness, and the wait goes on.
            if ready.try_io(|fd| read_expiry(&fd.get_ref().0)).is_ok() {
                return;
            }
        }
    }
}

/// Reads a timerfd's expiry count; `WouldBlock` when it has not expired.
fn read_expiry(timer: &TimerFd) -> io::Result<u64> {
    let mut count = [0u8; 8];
    match nix::unistd::read(timer.as_fd(), &mut count) {
        Ok(_) => Ok(u64::from_ne_bytes(count)),
        Err(Errno::EAGAIN) => Err(io::ErrorKind::WouldBlock.into()),
        Err(errno) => Err(errno.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn wakes_at_each_due_time_never_before_it() {
        let mut timer = PreciseTimer::new();
        let start = Instant::now();
        for i in 1..=50u32 {
            let due = start + Duration::from_micros(300) * i;
            timer.sleep_until(due).await;
            assert!(Instant::now() >= due, "woke early at {i}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_passed_due_time_returns_at_once_and_a_dropped_sleep_leaves_no_stale_wake() {
        let mut timer = PreciseTimer::new();
        timer
            .sleep_until(Instant::now() - Duration::from_secs(1))
            .await;
        // Armed for 200 µs, then dropped; its expiry comes and is never read.
        {
            let sleep = timer.sleep_until(Instant::now() + Duration::from_micros(200));
            tokio::pin!(sleep);
            assert!(futures_util::poll!(sleep.as_mut()).is_pending());
        }
        std::thread::sleep(Duration::from_millis(2));
        let later = Instant::now() + Duration::from_millis(20);
        timer.sleep_until(later).await;
        assert!(Instant::now() >= later, "a stale expiry woke it");
    }
}
