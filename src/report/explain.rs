//! What could explain messages lost by the verdict, from the scenario's own settings: a
//! queue policy that discards messages with nowhere to dead-letter them, transient
//! messages or queues, automatic acknowledgements. Said beside the losses, so a reader
//! tells a broken promise from a promise RabbitMQ never made.

use crate::ledger::Counts;
use crate::scenario::{AckMode, Plan, QueueArgument, QueueType};

/// Sentences naming the settings that could explain the run's losses (none without loss).
pub fn losses(plan: &Plan, totals: &Counts) -> Vec<String> {
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
        if let (QueueType::Quorum, Some(limit)) =
            (topology.queue_type, argument("x-delivery-limit"))
        {
            reasons.push(format!(
                "x-delivery-limit = {}: the quorum queue discards a message delivered more often than that (a consumer that crashes or rejects), {nowhere}",
                shown(limit)
            ));
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
