//! The names and keys a scenario makes warren send as AMQP short strings (at most
//! [`SHORT_STRING_MAX`] bytes), checked as written and as warren will send them: queue
//! names with their generated `-N` and `.dead-letters` suffixes, and routing and binding
//! keys with `{n}` expanded for the run's last queue. A longer one would only be refused
//! once the broker is up.

use super::diagnostic::Checker;
use super::plan::TopologyPlan;
use super::routing::{QUEUE_NUMBER, queue_names};
use crate::protocol::SHORT_STRING_MAX;

/// What a queue's dead letters are named after: `{queue}.dead-letters`, for the exchange
/// and the queue both.
pub const DEAD_LETTERS_SUFFIX: &str = ".dead-letters";

/// Records an error for every name or key of `topology` that is longer than a short
/// string once warren has made it.
pub(super) fn short_strings(c: &mut Checker<'_>, topology: &TopologyPlan) {
    if let Some(base) = &topology.queue_name {
        queue_name(c, topology, base);
    }
    if topology.exchange.len() > SHORT_STRING_MAX {
        c.error(
            "topology.exchange.name",
            format!(
                "{} bytes; an exchange name is at most {SHORT_STRING_MAX} bytes (an AMQP short string)",
                topology.exchange.len()
            ),
        );
    }
    if let Some(key) = &topology.routing_key {
        expanded_key(
            c,
            "topology.exchange.routing_key",
            key,
            topology.queues,
            "routing",
        );
    }
    for (i, binding) in topology.bindings.iter().enumerate() {
        let field = format!("topology.exchange.bindings[{i}]");
        expanded_key(c, &field, binding, topology.queues, "binding");
    }
    for key in topology.arguments.keys() {
        if key.len() > SHORT_STRING_MAX {
            c.key_error(
                &format!("topology.queue.arguments.{key}"),
                format!(
                    "{} bytes; an argument's name is at most {SHORT_STRING_MAX} bytes (an AMQP short string)",
                    key.len()
                ),
            );
        }
    }
}

/// The queue names made from the scenario's `base`; the name itself is checked where
/// `[topology.queue]` is read.
fn queue_name(c: &mut Checker<'_>, topology: &TopologyPlan, base: &str) {
    if base.len() > SHORT_STRING_MAX {
        return;
    }
    let names = queue_names(base, topology.queues);
    let longest = names.last().map_or(base, String::as_str);
    if longest.len() > SHORT_STRING_MAX {
        c.error(
            "topology.queue.name",
            format!(
                "with queues = {} the last queue's name (ending \"-{}\") is {} bytes; a queue name is at most {SHORT_STRING_MAX} bytes (an AMQP short string): shorten the name to {} bytes",
                topology.queues,
                topology.queues,
                longest.len(),
                SHORT_STRING_MAX - (longest.len() - base.len()),
            ),
        );
    }
    let dead_letters = base.len() + DEAD_LETTERS_SUFFIX.len();
    if topology.dead_letter && dead_letters > SHORT_STRING_MAX {
        c.error(
            "topology.queue.name",
            format!(
                "with dead_letter = true the dead letters' queue and exchange (the name and \"{DEAD_LETTERS_SUFFIX}\") are {dead_letters} bytes; a queue or exchange name is at most {SHORT_STRING_MAX} bytes (an AMQP short string): shorten the name to {} bytes",
                SHORT_STRING_MAX - DEAD_LETTERS_SUFFIX.len(),
            ),
        );
    }
}

/// A routing or binding key as sent for the run's last queue, where `{n}` is longest.
fn expanded_key(c: &mut Checker<'_>, field: &str, key: &str, queues: u32, what: &str) {
    let sent = key.replace(QUEUE_NUMBER, &queues.max(1).to_string());
    if sent.len() > SHORT_STRING_MAX {
        let expansion = if sent.len() == key.len() {
            String::new()
        } else {
            format!(" once {QUEUE_NUMBER} is {}", queues.max(1))
        };
        c.error(
            field,
            format!(
                "{} bytes{expansion}; a {what} key is at most {SHORT_STRING_MAX} bytes (an AMQP short string)",
                sent.len()
            ),
        );
    }
}
