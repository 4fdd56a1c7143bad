//! A sleep with microsecond precision, for pacing, processing delays and toxics. tokio's
//! timer wheel has a resolution of one millisecond: a publisher paced at 5,000 msg/s woke
//! on each millisecond tick and sent five messages in a burst, and a 0.1 ms pause took
//! more than a millisecond. A Linux timerfd wakes the runtime's poll at the due time itself
//! (high-resolution timers, no timer slack).

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
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
    /// Unset until the first sleep; then `None` where the system gives no timerfd or it
    /// failed (tokio's timer is used instead).
    fd: Option<Option<AsyncFd<OwnedTimer>>>,
    /// The expiry the timerfd is armed for and whose expiry has not been read: a sleep
    /// until the same instant (a select loop re-making its sleep) re-arms nothing.
    armed: Option<Instant>,
    /// tokio's timer, where there is no timerfd.
    fallback: Option<Pin<Box<tokio::time::Sleep>>>,
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
        std::future::poll_fn(|cx| self.poll_until(cx, at)).await;
    }

    /// Ready at `at`; pending until then, with `cx`'s waker woken at that time. A call for
    /// another instant re-arms the timer.
    pub fn poll_until(&mut self, cx: &mut Context<'_>, at: Instant) -> Poll<()> {
        let Some(delay) = at
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            return Poll::Ready(());
        };
        if let Some(fd) = self.fd.get_or_insert_with(Self::make_fd).as_ref() {
            match poll_fd(fd, &mut self.armed, cx, at, delay) {
                Ok(poll) => return poll,
                Err(error) => {
                    tracing::debug!(%error, "the timerfd failed: pacing on tokio's millisecond timer");
                    self.fd = Some(None);
                }
            }
        }
        let deadline = tokio::time::Instant::from(at);
        let sleep = self
            .fallback
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx)
    }
}

/// Arms `fd` for `at` (unless `armed` says it is) and polls its expiry.
fn poll_fd(
    fd: &AsyncFd<OwnedTimer>,
    armed: &mut Option<Instant>,
    cx: &mut Context<'_>,
    at: Instant,
    delay: std::time::Duration,
) -> io::Result<Poll<()>> {
    if *armed != Some(at) {
        *armed = None;
        // A zero expiration would disarm the timer; `delay` is never zero here.
        fd.get_ref()
            .0
            .set(
                Expiration::OneShot(TimeSpec::from_duration(delay)),
                TimerSetTimeFlags::empty(),
            )
            .map_err(io::Error::from)?;
        *armed = Some(at);
    }
    loop {
        let mut ready = match fd.poll_read_ready(cx) {
            Poll::Pending => return Ok(Poll::Pending),
            Poll::Ready(ready) => ready?,
        };
        // Woken at or after `at`: this arming's expiry. Its count is left unread (one
        // system call less per sleep): re-arming resets it, and the poller is
        // edge-triggered, so every later expiry wakes it again.
        if Instant::now() >= at {
            ready.clear_ready();
            *armed = None;
            return Ok(Poll::Ready(()));
        }
        // Woken early: the expiry of an earlier arming, replaced since (reading finds
        // nothing, which clears the readiness, and the wait goes on), or this one's.
        if ready.try_io(|fd| read_expiry(&fd.get_ref().0)).is_ok() {
            *armed = None;
            return Ok(Poll::Ready(()));
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

    /// The sleep is armed to the microsecond: a 150 µs sleep leaves at most 150 µs on the
    /// timerfd (tokio's timer would have rounded it up to the next millisecond tick). Read
    /// from the timer itself, so it holds however loaded the machine is.
    #[tokio::test(flavor = "current_thread")]
    async fn a_sub_millisecond_sleep_is_armed_to_the_microsecond() {
        let mut timer = PreciseTimer::new();
        let delay = Duration::from_micros(150);
        let due = Instant::now() + delay;
        {
            let sleep = timer.sleep_until(due);
            tokio::pin!(sleep);
            if futures_util::poll!(sleep.as_mut()).is_ready() {
                // Descheduled for the whole 150 µs before the first poll: nothing was armed.
                assert!(Instant::now() >= due);
                return;
            }
        }
        assert_eq!(timer.armed, Some(due), "the timerfd, not tokio's timer");
        let fd = timer
            .fd
            .as_ref()
            .and_then(Option::as_ref)
            .expect("a timerfd");
        match fd.get_ref().0.get().unwrap() {
            // Expired already: it fired within the 150 µs.
            None => {}
            Some(Expiration::OneShot(left)) => {
                assert!(Duration::from(left) <= delay, "{left:?} left of {delay:?}");
            }
            Some(other) => panic!("armed as {other:?}"),
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

    #[tokio::test(flavor = "current_thread")]
    async fn a_sleep_dropped_and_made_again_for_the_same_instant_still_wakes_then() {
        let mut timer = PreciseTimer::new();
        let due = Instant::now() + Duration::from_millis(3);
        for _ in 0..3 {
            let sleep = timer.sleep_until(due);
            tokio::pin!(sleep);
            assert!(futures_util::poll!(sleep.as_mut()).is_pending());
        }
        // The expiry came while no sleep was waiting: the next one takes it at once.
        std::thread::sleep(Duration::from_millis(5));
        timer.sleep_until(due).await;
        assert!(Instant::now() >= due);
        // Taken: a sleep for a later instant is armed anew and waits for it.
        let later = Instant::now() + Duration::from_millis(10);
        timer.sleep_until(later).await;
        assert!(Instant::now() >= later);
    }
}
