//! The faults of a run in the report: when each really began and ended, and how long the
//! clients took to recover (first confirm, first delivery after its end).

use serde::{Deserialize, Serialize};

use crate::events::{Event, EventKind};
use crate::faults::outcome::FaultOutcome;
use crate::faults::runner::FaultRecord;
use crate::metrics::Clock;
use crate::metrics::activity::{Activity, first_after, longest_silence};

/// One fault, as the report shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultReport {
    pub label: String,
    pub action: String,
    pub node: Option<usize>,
    pub outcome: FaultOutcome,
    /// Seconds from the start of publishing.
    pub planned_s: f64,
    pub start_s: Option<f64>,
    pub end_s: Option<f64>,
    /// From the fault's end (or start, when it never ends) to the first confirm after it.
    pub recovery_confirm_s: Option<f64>,
    /// Same, to the first delivery.
    pub recovery_delivery_s: Option<f64>,
    /// False when the fault ended (or, never ending, began) after publishing had ended:
    /// no traffic was left to show a recovery, so none is claimed either way.
    #[serde(default = "observable_by_default")]
    pub observable: bool,
}

fn observable_by_default() -> bool {
    true
}

/// The longest time in which nothing happened.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Silence {
    pub start_s: f64,
    pub length_s: f64,
}

/// Faults and recovery of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FaultsReport {
    pub faults: Vec<FaultReport>,
    /// The longest window without a confirm (unavailability for publishers).
    pub longest_without_confirm: Option<Silence>,
    /// The longest window without a delivery.
    pub longest_without_delivery: Option<Silence>,
}

impl FaultsReport {
    /// Joins fault records with the clients' activity. `start_ns` is when message 0 was due,
    /// `publishing_end_ns` when publishing ended.
    pub fn build(
        records: &[FaultRecord],
        confirms: &[Activity],
        deliveries: &[Activity],
        start_ns: u64,
        publishing_end_ns: u64,
    ) -> Self {
        let seconds = |ns: u64| ns.saturating_sub(start_ns) as f64 / 1e9;
        let faults = records
            .iter()
            .map(|record| {
                let began = (record.started_ns > 0).then_some(record.started_ns);
                let from = record.ended_ns.or(began);
                let observable = from.is_none_or(|from| from < publishing_end_ns);
                let recovery = |activity: &[Activity]| {
                    let from = from.filter(|_| record.applied() && observable)?;
                    first_after(activity, from).map(|at| (at - from) as f64 / 1e9)
                };
                FaultReport {
                    label: record.label.clone(),
                    action: record.action.clone(),
                    node: record.node,
                    outcome: record.outcome.clone(),
                    planned_s: record.planned_s,
                    start_s: began.map(seconds),
                    end_s: record.ended_ns.map(seconds),
                    recovery_confirm_s: recovery(confirms),
                    recovery_delivery_s: recovery(deliveries),
                    observable,
                }
            })
            .collect();
        let silence = |activity: &[Activity]| {
            longest_silence(activity).map(|(from, to)| Silence {
                start_s: seconds(from),
                length_s: (to - from) as f64 / 1e9,
            })
        };
        Self {
            faults,
            longest_without_confirm: silence(confirms),
            longest_without_delivery: silence(deliveries),
        }
    }

    /// The longest recovery of the applied, observable faults (infinite when one never
    /// recovered); `None` when there is none. Without confirms only deliveries count.
    pub fn worst_recovery_s(&self, confirms: bool) -> Option<f64> {
        self.faults
            .iter()
            .filter(|f| f.outcome.is_applied() && f.observable)
            .map(|f| {
                let delivery = f.recovery_delivery_s.unwrap_or(f64::INFINITY);
                if confirms {
                    delivery.max(f.recovery_confirm_s.unwrap_or(f64::INFINITY))
                } else {
                    delivery
                }
            })
            .reduce(f64::max)
    }

    /// Applied faults whose recovery could not be observed (they ended after publishing).
    pub fn unobserved(&self) -> usize {
        self.faults
            .iter()
            .filter(|f| f.outcome.is_applied() && !f.observable)
            .count()
    }

    /// Fault start and end events for the event log, timed on the run's clock.
    pub fn events(records: &[FaultRecord], clock: &Clock) -> Vec<Event> {
        let origin = clock.ns_at(clock.origin());
        let at_ms = |ns: u64| ns.saturating_sub(origin) as f64 / 1e6;
        let mut events = Vec::new();
        for record in records.iter().filter(|r| r.started_ns > 0) {
            let detail = match record.node {
                Some(node) => format!("{} (node {node})", record.action),
                None => record.action.clone(),
            };
            if record.applied() {
                events.push(Event::new(
                    at_ms(record.started_ns),
                    &record.label,
                    EventKind::FaultStart,
                    detail.clone(),
                ));
                if let Some(ended) = record.ended_ns {
                    events.push(Event::new(
                        at_ms(ended),
                        &record.label,
                        EventKind::FaultEnd,
                        detail,
                    ));
                }
            } else {
                events.push(Event::new(
                    at_ms(record.started_ns),
                    &record.label,
                    EventKind::FaultFailed,
                    format!("{detail}: {}", record.outcome),
                ));
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn record(start: u64, end: Option<u64>) -> FaultRecord {
        FaultRecord {
            label: "faults[0]".into(),
            action: "down (all)".into(),
            planned_s: 0.0,
            started_ns: start,
            ended_ns: end,
            node: None,
            outcome: FaultOutcome::Applied,
        }
    }

    #[test]
    fn recovery_is_the_first_activity_after_the_fault_ended() {
        let mut confirms = Activity::default();
        for t in [S, 2 * S, 9 * S, 10 * S] {
            confirms.note(t);
        }
        let report = FaultsReport::build(
            &[record(3 * S, Some(5 * S))],
            &[confirms.clone()],
            &[confirms],
            S,
            20 * S,
        );
        let fault = &report.faults[0];
        assert_eq!(fault.recovery_confirm_s, Some(4.0));
        assert_eq!((fault.start_s, fault.end_s), (Some(2.0), Some(4.0)));
        let silence = report.longest_without_confirm.unwrap();
        assert_eq!((silence.start_s, silence.length_s), (1.0, 7.0));
        assert_eq!(report.worst_recovery_s(true), Some(4.0));
    }

    #[test]
    fn a_fault_that_ends_after_publishing_claims_no_recovery() {
        let mut confirms = Activity::default();
        confirms.note(S);
        let report = FaultsReport::build(&[record(2 * S, Some(5 * S))], &[confirms], &[], 0, 4 * S);
        assert!(!report.faults[0].observable);
        assert_eq!(report.faults[0].recovery_confirm_s, None);
        assert_eq!(report.worst_recovery_s(true), None);
        assert_eq!(report.unobserved(), 1);
    }

    #[test]
    fn a_fault_never_recovered_from_is_infinitely_long() {
        let mut confirms = Activity::default();
        confirms.note(S);
        let report =
            FaultsReport::build(&[record(2 * S, Some(3 * S))], &[confirms], &[], 0, 10 * S);
        assert_eq!(report.worst_recovery_s(true), Some(f64::INFINITY));
        assert_eq!(FaultsReport::default().worst_recovery_s(true), None);
    }
}
