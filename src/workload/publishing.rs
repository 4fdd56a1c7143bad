//! The publishing phase: wait for every publisher to hand back its ledger, showing live
//! progress once a second, and stop publishers still busy well after the drain timeout.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::collector::Collector;
use super::fleet::{Publishers, every_report};
use super::publisher::PublisherReport;
use super::{ProgressSink, Totals, WorkloadError};
use crate::deadline::PublishingDeadline;
use crate::events::{EventKind, EventLog};
use crate::scenario::Plan;

/// How long after `duration + drain_timeout` publishers may still run before they are
/// cancelled (they normally end by then on their own).
const PUBLISHERS_GRACE: Duration = Duration::from_secs(5);

/// What the publishing phase works with.
pub(super) struct Publishing<'a> {
    pub plan: &'a Plan,
    pub publishers: Publishers,
    /// When message 0 was due.
    pub start: Instant,
    /// When publishing ends (it may move while faults hold it).
    pub deadline: Option<PublishingDeadline>,
    pub events: &'a EventLog,
    pub collector: &'a mut Collector,
    pub on_progress: Option<&'a mut ProgressSink>,
    pub totals: &'a (dyn Fn() -> Totals + Sync),
}

/// Waits for every publisher's report; the first that has none fails the run, named.
pub(super) async fn wait(phase: Publishing<'_>) -> Result<Vec<PublisherReport>, WorkloadError> {
    let Publishing {
        plan,
        publishers,
        start,
        deadline,
        events,
        collector,
        mut on_progress,
        totals,
    } = phase;
    let cancel = publishers.cancel.clone();
    let done = join_all(publishers.handles);
    tokio::pin!(done);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    // Publishers give up retrying `drain_timeout` after the deadline; should any still
    // run a little later (a broker that answers nothing, hundreds of them reconnecting),
    // they are cancelled, and hand in what they have.
    // Read again every second: faults may hold the deadline, and then settle it.
    let stop_at = || {
        deadline.as_ref().map(|d| {
            tokio::time::Instant::from(d.instant() + plan.drain_timeout + PUBLISHERS_GRACE)
        })
    };
    let mut stop_sent = false;
    let reports = loop {
        let stop_at = stop_at();
        tokio::select! {
            reports = &mut done => break reports,
            () = sleep_until_some(stop_at), if !stop_sent && stop_at.is_some() => {
                stop_sent = true;
                events.record(
                    "workload",
                    EventKind::Dropped,
                    "publishers still busy after the drain timeout were stopped",
                );
                cancel.cancel();
            }
            _ = ticker.tick() => {
                let line = collector.line(start.elapsed(), "publishing", totals());
                if let Some(report) = on_progress.as_mut() {
                    report(&line);
                }
            }
        }
    };
    events.record(
        "workload",
        EventKind::PublishEnd,
        format!("{} message(s) sent", totals().sent),
    );
    every_report("publisher", reports)
}

/// Sleeps until `at`, or forever when there is none.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
