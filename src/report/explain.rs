//! What could explain messages lost by the verdict, from the scenario's own settings: a
//! queue policy that discards messages with nowhere to dead-letter them, transient
//! messages or queues, automatic acknowledgements. Said beside the losses, so a reader
//! tells a broken promise from a promise RabbitMQ never made.

use crate::broker::ReleaseVersion;
use crate::ledger::Counts;
use crate::scenario::{AckMode, Plan, QueueArgument, QueueType};

/// The quorum queues' delivery limit from RabbitMQ 4.0 on when `x-delivery-limit` is unset.
const DEFAULT_DELIVERY_LIMIT: u32 = 20;

/// Sentences naming the settings that could explain the run's losses (none without loss);
/// `broker` is the release the nodes announced, when known (some defaults depend on it).
pub fn losses(plan: &Plan, totals: &Counts, broker: Option<&str>) -> Vec<String> {
    if totals.lost_confirmed + totals.lost_unconfirmed == 0 {
        return Vec::new();
    }
    let mut reasons = Vec::new();
    let topology = &plan.topology;
    let argument = |name: &str| topology.arguments.get(name);
    let own_dead_letters = argument("x-dead-letter-exchange");
    if !topology.dead_letter {
        let nowhere = match own_dead_letters {
            Some(exchange) => format!(
                "into the scenario's own dead-letter exchange {}, which warren does not read",
                shown(exchange)
            ),
            None => "with no dead-letter exchange to keep them".into(),
        };
        let overflow = argument("x-overflow").map(shown);
        let drops_head = overflow.as_deref().is_none_or(|o| o == "drop-head");
        for limit in ["x-max-length", "x-max-length-bytes"] {
            if let (Some(value), true) = (argument(limit), drops_head) {
                reasons.push(format!(
                    "{limit} = {} (overflow drop-head): the broker discards the oldest messages of a full queue, {nowhere}",
                    shown(value)
                ));
            }
        }
        if let Some(ttl) = argument("x-message-ttl") {
            reasons.push(format!(
                "x-message-ttl = {} ms: the broker discards messages older than that, {nowhere}",
                shown(ttl)
            ));
        }
        if topology.queue_type == QueueType::Quorum {
            let redelivering = "a consumer that crashes or rejects";
            match argument("x-delivery-limit") {
                Some(limit) => reasons.push(format!(
                    "x-delivery-limit = {}: the quorum queue discards a message delivered more often than that ({redelivering}), {nowhere}",
                    shown(limit)
                )),
                None => {
                    let release = broker.and_then(ReleaseVersion::parse);
                    let four = ReleaseVersion { major: 4, minor: 0, patch: 0 };
                    let default = format!("the quorum queue discards a message delivered more than {DEFAULT_DELIVERY_LIMIT} times ({redelivering}), {nowhere}");
                    match release {
                        Some(release) if release >= four => reasons.push(format!(
                            "x-delivery-limit unset, and RabbitMQ {release} gives quorum queues a default of {DEFAULT_DELIVERY_LIMIT}: {default}"
                        )),
                        Some(_) => {}
                        None => reasons.push(format!(
                            "x-delivery-limit unset: if the broker is RabbitMQ 4.0 or later, its default of {DEFAULT_DELIVERY_LIMIT} applies: {default}"
                        )),
                    }
                }
            }
        }
    }
    if !plan.publishers.persistent {
        reasons.push("the messages were transient (publishers.persistent = false): RabbitMQ keeps them in memory only, so a broker restart or crash drops them, confirmed or not; it never promised to keep them".into());
    }
    if !topology.durable {
        reasons.push(
            "the queue is not durable: a broker restart deletes it, with its messages".into(),
        );
    }
    if plan.consumers.ack == AckMode::Auto {
        reasons.push("consumers.ack = \"auto\": the broker counts a message as delivered once it has sent it, so one lost on the way to a consumer is gone".into());
    }
    reasons
}

fn shown(value: &QueueArgument) -> String {
    match value {
        QueueArgument::Bool(b) => b.to_string(),
        QueueArgument::Int(i) => i.to_string(),
        QueueArgument::Float(f) => f.to_string(),
        QueueArgument::Text(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Plan {
        crate::scenario::parse(std::path::Path::new("t.toml"), text, Default::default())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_quorum_queues_default_delivery_limit_is_named_for_the_release_that_has_one() {
        let quorum =
            plan("name = \"q\"\n[topology]\ndead_letter = false\nqueue = { type = \"quorum\" }\n");
        let lost = Counts {
            lost_confirmed: 3,
            ..Counts::default()
        };
        let on = |release| losses(&quorum, &lost, release);
        assert!(
            on(Some("4.0.5")).iter().any(|e| e.starts_with(
                "x-delivery-limit unset, and RabbitMQ 4.0.5 gives quorum queues a default of 20"
            )),
            "{:?}",
            on(Some("4.0.5"))
        );
        assert!(on(Some("3.10.8")).is_empty(), "{:?}", on(Some("3.10.8")));
        assert!(
            on(None)
                .iter()
                .any(|e| e.contains("if the broker is RabbitMQ 4.0 or later")),
            "{:?}",
            on(None)
        );
        // Nothing lost: nothing to explain.
        assert!(losses(&quorum, &Counts::default(), Some("4.0.5")).is_empty());
        // An explicit limit is named as it is, whatever the release.
        let limited = plan(
            "name = \"q\"\n[topology]\ndead_letter = false\nqueue = { type = \"quorum\", arguments = { \"x-delivery-limit\" = 5 } }\n",
        );
        assert!(
            losses(&limited, &lost, Some("3.10.8"))
                .iter()
                .any(|e| e.starts_with("x-delivery-limit = 5:"))
        );
    }
}
