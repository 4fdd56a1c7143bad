//! Where each publisher's messages go: the run's queue names, the binding keys of each
//! queue, each publisher's routing key, and which queues an exchange of each kind routes
//! that key to. warren predicts the routing itself, as the broker does it, so that the
//! verdict knows which queues must deliver each message (a message routed to k queues
//! must come out of each of them once).

use super::plan::{ExchangeKind, TopologyPlan};

/// What `{n}` in a binding key or routing key stands for: the queue's number, 1 to N.
pub const QUEUE_NUMBER: &str = "{n}";

/// The names of a run's `count` queues made from `base`: `base` itself for one queue,
/// `base-1` … `base-N` for several.
pub fn queue_names(base: &str, count: u32) -> Vec<String> {
    if count <= 1 {
        return vec![base.to_string()];
    }
    (1..=count).map(|n| format!("{base}-{n}")).collect()
}

/// `template` with `{n}` replaced by `number`.
fn expand(template: &str, number: usize) -> String {
    template.replace(QUEUE_NUMBER, &number.to_string())
}

/// The routing of a run: per round-robin slot (publisher i is in slot i mod N), the routing
/// key its publishers use and the queues that key reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    /// Per queue: the binding keys it is bound with (none on the default exchange).
    pub bindings: Vec<Vec<String>>,
    /// Per slot: the routing key of its publishers.
    pub routing_keys: Vec<String>,
    /// Per slot: the queues (indexes into the names) its routing key reaches, ascending.
    pub reached: Vec<Vec<u32>>,
}

impl Routes {
    /// The routing of `topology` over queues named `names`.
    pub fn new(topology: &TopologyPlan, names: &[String]) -> Self {
        let default_exchange = topology.exchange.is_empty();
        let bindings: Vec<Vec<String>> = (0..names.len())
            .map(|q| {
                if default_exchange {
                    Vec::new()
                } else if matches!(
                    topology.exchange_kind,
                    ExchangeKind::Fanout | ExchangeKind::Headers
                ) {
                    vec![String::new()]
                } else if !topology.bindings.is_empty() {
                    topology.bindings.iter().map(|b| expand(b, q + 1)).collect()
                } else {
                    // The routing key is the binding key unless bindings are given: one
                    // queue bound with the key its publishers use.
                    vec![match &topology.routing_key {
                        Some(key) => expand(key, q + 1),
                        None => names[q].clone(),
                    }]
                }
            })
            .collect();
        let routing_keys: Vec<String> = (0..names.len())
            .map(|slot| match &topology.routing_key {
                Some(key) => expand(key, slot + 1),
                None => names[slot].clone(),
            })
            .collect();
        let reached = routing_keys
            .iter()
            .map(|key| {
                (0..names.len() as u32)
                    .filter(|&q| {
                        let q = q as usize;
                        if default_exchange {
                            return names[q] == *key;
                        }
                        bindings[q]
                            .iter()
                            .any(|binding| match topology.exchange_kind {
                                ExchangeKind::Fanout | ExchangeKind::Headers => true,
                                ExchangeKind::Direct => binding == key,
                                ExchangeKind::Topic => topic_matches(binding, key),
                            })
                    })
                    .collect()
            })
            .collect();
        Self {
            bindings,
            routing_keys,
            reached,
        }
    }

    /// The slot of publisher `producer`.
    pub fn slot(&self, producer: u32) -> usize {
        producer as usize % self.routing_keys.len().max(1)
    }

    /// Whether `producer`'s messages are judged in queue `queue`: the queues its key
    /// reaches, or the first queue when it reaches none (its messages are then returned
    /// with `mandatory`, or count against the first queue without).
    pub fn judged_in(&self, producer: u32, queue: u32) -> bool {
        match self.reached.get(self.slot(producer)) {
            Some(queues) if queues.is_empty() => queue == 0,
            _ => self.reaches(producer, queue),
        }
    }

    /// Whether `producer`'s messages are routed to queue `queue`.
    pub fn reaches(&self, producer: u32, queue: u32) -> bool {
        self.reached
            .get(self.slot(producer))
            .is_some_and(|queues| queues.binary_search(&queue).is_ok())
    }
}

/// Whether topic binding `pattern` matches routing key `key`, as RabbitMQ's topic exchange
/// decides: words are separated by dots, `*` stands for exactly one word, `#` for zero or
/// more words.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    words_match(&pattern, &key)
}

fn words_match(pattern: &[&str], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((&"#", rest)) => (0..=key.len()).any(|skip| words_match(rest, &key[skip..])),
        Some((&word, rest)) => match key.split_first() {
            Some((&first, key_rest)) => {
                (word == "*" || word == first) && words_match(rest, key_rest)
            }
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::QueueType;

    fn plan(
        exchange: &str,
        kind: ExchangeKind,
        key: Option<&str>,
        bindings: &[&str],
    ) -> TopologyPlan {
        TopologyPlan {
            queue_name: None,
            queues: 1,
            queue_type: QueueType::Classic,
            durable: true,
            keep: false,
            arguments: Default::default(),
            exchange: exchange.into(),
            exchange_kind: kind,
            exchange_durable: true,
            routing_key: key.map(Into::into),
            bindings: bindings.iter().map(|b| (*b).to_string()).collect(),
            dead_letter: false,
        }
    }

    #[test]
    fn topic_patterns_match_as_rabbitmq_does() {
        for (pattern, key, expected) in [
            ("a.b", "a.b", true),
            ("a.*", "a.b", true),
            ("a.*", "a.b.c", false),
            ("a.#", "a", true),
            ("a.#", "a.b.c", true),
            ("#", "", true),
            ("#", "x.y", true),
            ("*.b.#", "a.b", true),
            ("*.b.#", "b", false),
            ("#.c", "a.b.c", true),
            ("#.c", "a.b", false),
            ("a.#.z", "a.z", true),
            ("a.#.z", "a.b.c.z", true),
        ] {
            assert_eq!(topic_matches(pattern, key), expected, "{pattern} vs {key}");
        }
    }

    #[test]
    fn the_default_exchange_routes_each_publisher_to_its_own_queue() {
        let names = queue_names("q", 3);
        assert_eq!(names, ["q-1", "q-2", "q-3"]);
        let routes = Routes::new(&plan("", ExchangeKind::Direct, None, &[]), &names);
        assert_eq!(routes.reached, vec![vec![0], vec![1], vec![2]]);
        assert!(routes.reaches(4, 1));
        assert!(!routes.reaches(4, 0));
    }

    #[test]
    fn a_fanout_reaches_every_queue() {
        let names = queue_names("q", 4);
        let routes = Routes::new(&plan("x", ExchangeKind::Fanout, None, &[]), &names);
        assert!(routes.reached.iter().all(|r| r == &vec![0, 1, 2, 3]));
    }

    #[test]
    fn numbered_keys_route_round_robin_and_shared_keys_reach_all() {
        let names = queue_names("q", 2);
        let numbered = Routes::new(&plan("x", ExchangeKind::Direct, Some("k.{n}"), &[]), &names);
        assert_eq!(
            numbered.bindings,
            vec![vec!["k.1".to_string()], vec!["k.2".to_string()]]
        );
        assert_eq!(numbered.reached, vec![vec![0], vec![1]]);
        let shared = Routes::new(&plan("x", ExchangeKind::Direct, Some("k"), &[]), &names);
        assert_eq!(shared.reached, vec![vec![0, 1], vec![0, 1]]);
        let topic = Routes::new(
            &plan(
                "x",
                ExchangeKind::Topic,
                Some("eu.{n}.new"),
                &["eu.{n}.*", "*.2.#"],
            ),
            &names,
        );
        assert_eq!(topic.reached, vec![vec![0], vec![0, 1]]);
        let nowhere = Routes::new(
            &plan("x", ExchangeKind::Direct, Some("k"), &["other"]),
            &names,
        );
        assert_eq!(nowhere.reached, vec![Vec::<u32>::new(), Vec::new()]);
    }

    #[test]
    fn one_queue_keeps_the_routing_it_always_had() {
        let names = queue_names("q", 1);
        assert_eq!(names, ["q"]);
        let routes = Routes::new(
            &plan("x", ExchangeKind::Direct, Some("orders"), &[]),
            &names,
        );
        assert_eq!(routes.bindings, vec![vec!["orders".to_string()]]);
        assert_eq!(routes.reached, vec![vec![0]]);
    }
}
