//! Warnings: what a scenario may say but probably does not mean. They refuse nothing;
//! `warren validate` and `warren run` print them with the file, line and field.

use std::time::Duration;

use super::diagnostic::Checker;
use super::plan::*;

/// Warns where a `timeout` toxic drops bytes for less time than heartbeats take to notice:
/// the connection lives on with a hole in its stream, which no real network makes
/// (TCP retransmits). That models a middlebox that drops bytes, not an outage.
pub(super) fn dropping_toxics(
    c: &mut Checker<'_>,
    faults: &[FaultPlan],
    chaos: Option<&ChaosPlan>,
    publishers: &PublisherPlan,
    consumers: &ConsumerPlan,
) {
    let warning = |path: TrafficPath, lasting: Duration| -> Option<String> {
        let (role, heartbeat, effect) = match path {
            TrafficPath::Publishers => (
                "publishers",
                publishers.heartbeat,
                "a publish dropped mid-stream shifts the broker's confirms onto other messages",
            ),
            _ => (
                "consumers",
                consumers.heartbeat,
                "deliveries dropped mid-stream leave a hole the consumer must detect",
            ),
        };
        let detected = heartbeat * 2;
        (heartbeat.is_zero() || lasting < detected).then(|| {
            format!(
                "kind = \"timeout\" drops bytes for {} on the {role}' path, shorter than heartbeat detection ({}): the connection survives with bytes missing mid-stream, which a real network never does ({effect}); for an outage use kind = \"blackhole\"",
                super::units::format_duration(lasting),
                super::units::format_duration(detected),
            )
        })
    };
    for (i, fault) in faults.iter().enumerate() {
        let FaultAction::Toxic {
            toxic: Toxic::Timeout { timeout },
            path,
            ..
        } = fault.action
        else {
            continue;
        };
        let Some(lasting) = fault.schedule.lasting else {
            continue;
        };
        // A timeout that closes the connection before the fault ends leaves no hole.
        if !timeout.is_zero() && timeout < lasting {
            continue;
        }
        let paths: &[TrafficPath] = match path {
            TrafficPath::All => &[TrafficPath::Publishers, TrafficPath::Consumers],
            ref one => std::slice::from_ref(one),
        };
        for one in paths {
            if let Some(message) = warning(*one, lasting) {
                c.warn(&format!("faults[{i}].kind"), message);
            }
        }
    }
    if let Some(chaos) = chaos.filter(|c| c.kinds.contains_key(&FaultKindName::Timeout)) {
        for one in [TrafficPath::Publishers, TrafficPath::Consumers] {
            if let Some(message) = warning(one, chaos.lasting) {
                c.warn("chaos.kinds.timeout", message);
            }
        }
    }
}
