//! Lowering `[topology]`: the queue template and how many queues are made from it, the
//! exchange and its bindings, dead letters, and the checks that tie them to the clients
//! (every queue has a consumer, every publisher's messages reach a queue).

use std::collections::BTreeMap;

use super::checks::{only_with, whole};
use super::diagnostic::Checker;
use super::file::TopologySection;
use super::plan::*;
use super::routing::{QUEUE_NUMBER, Routes, queue_names};
use crate::protocol::SHORT_STRING_MAX;

/// The most queues one run makes.
pub const MAX_QUEUES: u32 = 10_000;

/// What a stream queue asks of its consumers. A stream is a log: RabbitMQ refuses
/// automatic acknowledgements and a consumer without a prefetch on it, and every consumer
/// reads every message, where warren counts one delivery per message.
pub(super) fn stream_consumers(
    c: &mut Checker<'_>,
    topology: &TopologyPlan,
    consumers: &ConsumerPlan,
) {
    if topology.queue_type != QueueType::Stream {
        return;
    }
    if consumers.ack != AckMode::Manual {
        c.error("consumers.ack", " = \"auto\": a stream queue takes ack = \"manual\" (RabbitMQ refuses automatic acknowledgements on streams)");
    }
    if consumers.prefetch == 0 {
        c.error("consumers.prefetch", " = 0: a stream queue needs a prefetch from 1 to 65535 (RabbitMQ refuses a stream consumer without one)");
    }
    if consumers.count != topology.queues {
        c.error("consumers.count", format!(" = {}: a stream queue takes 1 consumer ({} for queues = {}): every consumer of a stream reads every message, and warren counts one delivery per message", consumers.count, topology.queues, topology.queues));
    }
}

pub(super) fn topology(c: &mut Checker<'_>, section: TopologySection) -> TopologyPlan {
    let queue = section.queue.unwrap_or_default();
    let exchange = section.exchange.unwrap_or_default();
    let queue_type = queue.queue_type.unwrap_or(QueueType::Classic);
    if queue.durable == Some(false) && queue_type != QueueType::Classic {
        c.error("topology.queue.durable", format!(" = false: {} queues are always durable; remove the field or use type = \"classic\"", if queue_type == QueueType::Quorum { "quorum" } else { "stream" }));
    }
    if let Some(name) = &queue.name {
        if name.is_empty() || name.len() > SHORT_STRING_MAX || name.starts_with("amq.") {
            c.error("topology.queue.name", format!(" = {name:?}: expected 1 to {SHORT_STRING_MAX} bytes, not starting with \"amq.\" (reserved by the broker); omit it for a fresh name per run"));
        }
    }
    let mut arguments = BTreeMap::new();
    for (key, value) in queue.arguments.unwrap_or_default() {
        let path = format!("topology.queue.arguments.{key}");
        if !key.starts_with("x-") {
            c.key_error(
                &path,
                "queue arguments are x-arguments, like \"x-max-length\" = 10000",
            );
            continue;
        }
        if key == "x-queue-type" {
            c.key_error(&path, "set topology.queue.type instead");
            continue;
        }
        let argument = match value {
            toml::Value::Boolean(b) => QueueArgument::Bool(b),
            toml::Value::Integer(i) => QueueArgument::Int(i),
            toml::Value::Float(f) => QueueArgument::Float(f),
            toml::Value::String(s) => QueueArgument::Text(s),
            other => {
                c.error(
                    &path,
                    format!(
                        "a {} cannot be a queue argument; expected a string, number or boolean",
                        other.type_str()
                    ),
                );
                continue;
            }
        };
        arguments.insert(key, argument);
    }
    let exchange_name = exchange.name.unwrap_or_default();
    let exchange_kind = exchange.kind.unwrap_or(ExchangeKind::Direct);
    let queues = whole(
        c,
        "topology.queues",
        section.queues,
        1,
        1,
        u64::from(MAX_QUEUES),
        "a number of queues",
    ) as u32;
    let bindings = exchange.bindings.unwrap_or_default();
    if !bindings.is_empty() {
        if exchange_name.is_empty() {
            c.error("topology.exchange.bindings", "the default exchange \"\" takes no bindings (it routes by queue name); name an exchange to bind with keys");
        } else if matches!(exchange_kind, ExchangeKind::Fanout | ExchangeKind::Headers) {
            c.error("topology.exchange.bindings", format!("a {} exchange ignores binding keys (every bound queue gets every message); remove them", serde_name(&exchange_kind)));
        }
    }
    if exchange_name.is_empty() {
        if exchange_kind != ExchangeKind::Direct {
            c.error("topology.exchange.kind", format!(" = {:?}: the default exchange \"\" is always direct; name an exchange to use another kind", serde_name(&exchange_kind)));
        }
        only_with(
            c,
            "topology.exchange.durable",
            &exchange.durable,
            false,
            "a named exchange",
        );
    }
    let own_dead_letters = arguments.contains_key("x-dead-letter-exchange");
    let dead_letter = match section.dead_letter {
        Some(true) if queue_type == QueueType::Stream => {
            c.error(
                "topology.dead_letter",
                " = true: a stream never dead-letters; remove it",
            );
            false
        }
        Some(true) if own_dead_letters => {
            c.error("topology.dead_letter", " = true: the queue names its own x-dead-letter-exchange, which warren does not read; remove one of the two");
            false
        }
        Some(on) => on,
        // A queue the scenario names may exist already, with other arguments.
        None => queue_type != QueueType::Stream && !own_dead_letters && queue.name.is_none(),
    };
    TopologyPlan {
        dead_letter,
        queue_name: queue.name,
        queues,
        queue_type,
        durable: queue.durable.unwrap_or(true),
        keep: queue.keep.unwrap_or(false),
        arguments,
        exchange: exchange_name,
        exchange_kind,
        exchange_durable: exchange.durable.unwrap_or(true),
        routing_key: exchange.routing_key,
        bindings,
    }
}

/// What the queues ask of the clients: every queue has at least one consumer (consumer j
/// reads queue j mod N), and every publisher's routing key reaches at least one queue
/// (otherwise its confirmed messages would go nowhere, silently).
pub(super) fn clients_and_routes(
    c: &mut Checker<'_>,
    topology: &TopologyPlan,
    publishers: &PublisherPlan,
    consumers: &ConsumerPlan,
) {
    if consumers.count < topology.queues {
        c.error("consumers.count", format!(" = {}: every queue needs a consumer (consumer j reads queue j mod N), so at least topology.queues = {}", consumers.count, topology.queues));
    }
    if topology.queues > 1 && topology.exchange.is_empty() && topology.routing_key.is_some() {
        c.error("topology.exchange.routing_key", format!("with queues = {} on the default exchange each publisher routes by the name of its own queue; name an exchange to route by key", topology.queues));
        return;
    }
    // Names do not change the routing of numbered templates; a placeholder run id will do.
    let base = topology
        .queue_name
        .clone()
        .unwrap_or_else(|| "warren-run-00000000".into());
    let routes = Routes::new(topology, &queue_names(&base, topology.queues));
    let slots = (publishers.count as usize).min(routes.routing_keys.len());
    if let Some(slot) = (0..slots).find(|&slot| routes.reached[slot].is_empty()) {
        let field = if topology.bindings.is_empty() {
            "topology.exchange.routing_key"
        } else {
            "topology.exchange.bindings"
        };
        let message = format!(
            "publisher {slot} routes with key {:?}, which reaches no queue of the run (`{QUEUE_NUMBER}` in a key stands for the queue's number, 1 to {})",
            routes.routing_keys[slot], topology.queues
        );
        if publishers.mandatory {
            c.warn(
                field,
                format!("{message}; with mandatory on, the broker returns its messages"),
            );
        } else {
            c.error(field, format!("{message}: its messages would vanish unreported; route it to a queue, or set publishers.mandatory = true to count them as returned"));
        }
    }
}
