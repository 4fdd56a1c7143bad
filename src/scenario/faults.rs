//! Lowering of `[[faults]]` and `[chaos]`: which parameters each kind takes, schedules
//! that fit inside the run, nodes that exist, and node faults on external brokers only
//! when the scenario allows them and says how.

use std::collections::BTreeMap;
use std::time::Duration;

use super::checks::{nonzero, quoted, whole};
use super::diagnostic::Checker;
use super::file::{ChaosSection, FaultEntry, NodeEntry};
use super::plan::*;
use super::units::format_duration;
use FaultKindName as K;

/// How long the run is, for "inside the run" checks.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunLength {
    /// Unset when the run is bounded by a message count only.
    pub duration: Option<Duration>,
    /// True when the duration came from `--duration`, so messages can say so.
    pub from_cli: bool,
}

const SCHEDULE: &[&str] = &["name", "kind", "at", "every", "jitter", "count", "for"];

/// The parameters each kind takes besides its schedule.
fn parameters(kind: K) -> &'static [&'static str] {
    match kind {
        K::Down => &["path"],
        K::Latency => &["path", "stream", "toxicity", "latency", "latency_jitter"],
        K::Bandwidth => &["path", "stream", "toxicity", "rate"],
        K::SlowClose => &["path", "stream", "toxicity", "delay"],
        K::Timeout | K::ResetPeer => &["path", "stream", "toxicity", "timeout"],
        K::Blackhole => &["path", "stream", "toxicity"],
        K::Slicer => &[
            "path",
            "stream",
            "toxicity",
            "average_size",
            "size_variation",
            "delay",
        ],
        K::LimitData => &["path", "stream", "toxicity", "bytes"],
        K::BrokerRestart
        | K::BrokerKill
        | K::BrokerPause
        | K::MemoryAlarm
        | K::DiskAlarm
        | K::NodeKill
        | K::Partition => &["node"],
        K::RollingRestart => &[],
    }
}

/// Whether a kind needs `for`. Restarts and kills may give one (time spent down before
/// the node starts again; node_kill without it stays down); every other kind lasts a while.
fn needs_lasting(kind: K) -> bool {
    !matches!(
        kind,
        K::BrokerRestart | K::BrokerKill | K::NodeKill | K::RollingRestart
    )
}

fn is_node_fault(kind: K) -> bool {
    !kind.is_network()
}

/// The names of the parameters present in an entry, in the order the format lists them.
fn present(entry: &FaultEntry) -> Vec<&'static str> {
    let flags = [
        ("path", entry.path.is_some()),
        ("stream", entry.stream.is_some()),
        ("toxicity", entry.toxicity.is_some()),
        ("node", entry.node.is_some()),
        ("latency", entry.latency.is_some()),
        ("latency_jitter", entry.latency_jitter.is_some()),
        ("rate", entry.rate.is_some()),
        ("delay", entry.delay.is_some()),
        ("timeout", entry.timeout.is_some()),
        ("average_size", entry.average_size.is_some()),
        ("size_variation", entry.size_variation.is_some()),
        ("bytes", entry.bytes.is_some()),
    ];
    flags
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect()
}

pub(super) fn faults(
    c: &mut Checker<'_>,
    entries: Vec<FaultEntry>,
    broker: &BrokerPlan,
    run: RunLength,
) -> Vec<FaultPlan> {
    let mut names: Vec<String> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let Some(name) = &entry.name else { continue };
        let path = format!("faults[{i}].name");
        if name.trim().is_empty() || name.chars().count() > 60 || name.chars().any(char::is_control)
        {
            c.error(
                &path,
                format!(" = {name:?}: expected 1 to 60 characters, no line breaks"),
            );
        } else if names.contains(name) {
            c.error(
                &path,
                format!(" = {name:?}: another fault has this name; names must be unique"),
            );
        }
        names.push(name.clone());
    }
    entries
        .into_iter()
        .enumerate()
        .filter_map(|(i, entry)| fault(c, &format!("faults[{i}]"), entry, broker, run))
        .collect()
}

fn fault(
    c: &mut Checker<'_>,
    path: &str,
    entry: FaultEntry,
    broker: &BrokerPlan,
    run: RunLength,
) -> Option<FaultPlan> {
    let Some(kind) = entry.kind else {
        c.missing(
            &format!("{path}.kind"),
            "every fault needs a kind, like kind = \"broker_restart\" or kind = \"latency\"",
        );
        return None;
    };
    let kind_word = serde_name(&kind);
    let allowed = parameters(kind);
    for name in present(&entry) {
        if !allowed.contains(&name) {
            let fields: Vec<&str> = SCHEDULE.iter().chain(allowed).copied().collect();
            c.key_error(
                &format!("{path}.{name}"),
                format!(
                    "not a parameter of kind = {kind_word:?}; its fields are: {}",
                    fields.join(", ")
                ),
            );
        }
    }
    let schedule = schedule(c, path, &entry, kind, run)?;
    let action = action(c, path, &entry, kind, broker)?;
    Some(FaultPlan {
        name: entry.name,
        schedule,
        action,
    })
}

fn schedule(
    c: &mut Checker<'_>,
    path: &str,
    entry: &FaultEntry,
    kind: K,
    run: RunLength,
) -> Option<Schedule> {
    let every = nonzero(c, &format!("{path}.every"), entry.every);
    let jitter = entry.jitter.map_or(Duration::ZERO, |j| j.0);
    let count = entry.count.map(|n| {
        whole(
            c,
            &format!("{path}.count"),
            Some(n),
            1,
            1,
            100_000,
            "occurrences",
        ) as u32
    });
    if count.is_some() && every.is_none() {
        c.key_error(
            &format!("{path}.count"),
            "only used with every = \"...\" (a repeating fault)",
        );
    }
    let lasting = nonzero(c, &format!("{path}.for"), entry.lasting);
    if needs_lasting(kind) && entry.lasting.is_none() {
        c.missing(
            &format!("{path}.for"),
            format!(
                "kind = {:?} needs a duration, like for = \"10s\"",
                serde_name(&kind)
            ),
        );
    }
    let at = match (entry.at, every) {
        (Some(at), _) => at.0,
        (None, Some(every)) => every,
        (None, None) => {
            c.missing(
                &format!("{path}.at"),
                "say when the fault starts, like at = \"20s\" (or repeat it with every = \"30s\")",
            );
            return None;
        }
    };
    if every.is_some() && count.is_none() && run.duration.is_none() {
        c.error(&format!("{path}.every"), "repeats until the run ends, and the run has no duration (only messages); give count or a duration");
    }
    let span = jitter + lasting.unwrap_or_default();
    if let Some(every) = every {
        if span > every {
            c.error(
                &format!("{path}.every"),
                format!(
                    " = {}: shorter than jitter + for = {}, so occurrences would overlap",
                    quoted(every),
                    quoted(span)
                ),
            );
        }
    }
    if let Some(duration) = run.duration {
        let source = if run.from_cli {
            ", set by --duration"
        } else {
            ""
        };
        let last_start = match (every, count) {
            (Some(every), Some(n)) => at + every * (n - 1),
            _ => at,
        };
        if last_start >= duration {
            let field = if last_start == at { "at" } else { "count" };
            c.error(&format!("{path}.{field}"), format!("the fault would start at {}, after the run ends (duration = {}{source}); faults must start and end inside the run", format_duration(last_start), quoted(duration)));
        } else if last_start + span > duration {
            c.error(&format!("{path}.for"), format!("the fault would last until {}, after the run ends (duration = {}{source}); faults must start and end inside the run", format_duration(last_start + span), quoted(duration)));
        }
    }
    Some(Schedule {
        at,
        every,
        jitter,
        count,
        lasting,
    })
}

fn action(
    c: &mut Checker<'_>,
    path: &str,
    entry: &FaultEntry,
    kind: K,
    broker: &BrokerPlan,
) -> Option<FaultAction> {
    let field = |name: &str| format!("{path}.{name}");
    let required = |c: &mut Checker<'_>, name: &str, example: &str| {
        c.missing(
            &field(name),
            format!(
                "kind = {:?} needs {name}, like {example}",
                serde_name(&kind)
            ),
        );
    };
    let traffic = entry.path.unwrap_or(TrafficPath::All);
    // An outage stops both directions; a toxic acts on what comes back, as Toxiproxy's do.
    let stream = entry.stream.unwrap_or(if kind == K::Blackhole {
        StreamDirection::Both
    } else {
        StreamDirection::Downstream
    });
    let toxicity = match entry.toxicity {
        Some(t) if (0.0..=1.0).contains(&t) => t,
        Some(t) => {
            c.error(
                &field("toxicity"),
                format!(
                    " = {t}: expected the chance that a connection is affected, from 0.0 to 1.0"
                ),
            );
            1.0
        }
        None => 1.0,
    };
    let toxic = |toxic: Toxic| {
        Some(FaultAction::Toxic {
            toxic,
            path: traffic,
            stream,
            toxicity,
        })
    };
    let zero = Duration::ZERO;
    match kind {
        K::Down => Some(FaultAction::Down { path: traffic }),
        K::Latency => {
            let Some(latency) = entry.latency else {
                required(c, "latency", "latency = \"100ms\"");
                return None;
            };
            toxic(Toxic::Latency {
                latency: latency.0,
                jitter: entry.latency_jitter.map_or(zero, |j| j.0),
            })
        }
        K::Bandwidth => match entry.rate {
            None => {
                required(c, "rate", "rate = 100 (KB/s)");
                None
            }
            Some(rate) => toxic(Toxic::Bandwidth {
                rate_kbps: whole(
                    c,
                    &field("rate"),
                    Some(rate),
                    0,
                    0,
                    u64::MAX,
                    "kilobytes per second",
                ),
            }),
        },
        K::SlowClose => match entry.delay {
            None => {
                required(c, "delay", "delay = \"1s\"");
                None
            }
            Some(delay) => toxic(Toxic::SlowClose { delay: delay.0 }),
        },
        K::Timeout => toxic(Toxic::Timeout {
            timeout: entry.timeout.map_or(zero, |t| t.0),
        }),
        K::ResetPeer => toxic(Toxic::ResetPeer {
            timeout: entry.timeout.map_or(zero, |t| t.0),
        }),
        K::Blackhole => toxic(Toxic::Blackhole {
            hold: entry.lasting.map_or(zero, |t| t.0),
        }),
        K::Slicer => {
            let Some(average) = entry.average_size.map(|s| s.0) else {
                required(c, "average_size", "average_size = 64");
                return None;
            };
            if average == 0 {
                c.error(&field("average_size"), " = 0: expected at least 1 byte");
            }
            let variation = entry.size_variation.map_or(0, |s| s.0);
            if variation >= average.max(1) {
                c.error(
                    &field("size_variation"),
                    format!(" = {variation}: expected less than average_size = {average}"),
                );
            }
            toxic(Toxic::Slicer {
                average_size: average,
                size_variation: variation,
                delay: entry.delay.map_or(zero, |d| d.0),
            })
        }
        K::LimitData => match entry.bytes {
            None => {
                required(c, "bytes", "bytes = 65536");
                None
            }
            Some(bytes) => toxic(Toxic::LimitData { bytes: bytes.0 }),
        },
        K::RollingRestart => {
            check_node_fault_allowed(c, &field("kind"), kind, broker);
            Some(FaultAction::RollingRestart)
        }
        node_kind => {
            let node = node(c, &field("node"), entry.node.as_ref(), broker);
            check_node_fault_allowed(c, &field("kind"), node_kind, broker);
            Some(match node_kind {
                K::BrokerRestart => FaultAction::BrokerRestart { node },
                K::BrokerKill => FaultAction::BrokerKill { node },
                K::BrokerPause => FaultAction::BrokerPause { node },
                K::MemoryAlarm => FaultAction::MemoryAlarm { node },
                K::DiskAlarm => FaultAction::DiskAlarm { node },
                K::Partition => FaultAction::Partition { node },
                _ => FaultAction::NodeKill { node },
            })
        }
    }
}

fn node(
    c: &mut Checker<'_>,
    path: &str,
    entry: Option<&NodeEntry>,
    broker: &BrokerPlan,
) -> NodeSelector {
    let nodes = broker.node_count().max(1);
    match entry {
        None => NodeSelector::Index(0),
        Some(NodeEntry::Index(i)) if *i >= 0 && (*i as usize) < nodes => {
            NodeSelector::Index(*i as usize)
        }
        Some(NodeEntry::Index(i)) => {
            c.error(path, format!(" = {i}: expected a node index from 0 to {} (the broker has {nodes} node{}), \"leader\" or \"random\"", nodes - 1, if nodes == 1 { "" } else { "s" }));
            NodeSelector::Index(0)
        }
        Some(NodeEntry::Named(word))
            if word == "leader" && matches!(broker, BrokerPlan::External(_)) =>
        {
            c.error(path, " = \"leader\": the queue's leader is only found on warren's own nodes; name a node index");
            NodeSelector::Index(0)
        }
        Some(NodeEntry::Named(word)) if word == "leader" => NodeSelector::Leader,
        Some(NodeEntry::Named(word)) if word == "random" => NodeSelector::Random,
        Some(NodeEntry::Named(word)) => {
            c.error(
                path,
                format!(" = {word:?}: expected a node index (0, 1, ...), \"leader\" or \"random\""),
            );
            NodeSelector::Index(0)
        }
    }
}

/// Node faults need a cluster (node_kill), and on an external broker both consent and commands.
fn check_node_fault_allowed(c: &mut Checker<'_>, path: &str, kind: K, broker: &BrokerPlan) {
    let word = serde_name(&kind);
    if kind == K::NodeKill && broker.node_count() < 2 {
        c.error(path, format!(" = {word:?}: needs a cluster (broker.nodes = 3 or 5); on one node use \"broker_kill\""));
    }
    if kind == K::Partition {
        match broker {
            BrokerPlan::External(_) => c.error(path, format!(" = {word:?}: only warren's own nodes can be partitioned (their inter-node traffic goes through warren's proxies)")),
            _ if broker.node_count() < 2 => c.error(path, format!(" = {word:?}: needs a cluster (broker.nodes = 3 or 5)")),
            _ => {}
        }
        return;
    }
    let BrokerPlan::External(external) = broker else {
        return;
    };
    if !external.allow_destructive {
        c.error(path, format!(" = {word:?}: refused on an external broker unless broker.allow_destructive = true (warren does not own it)"));
    }
    let commands = &external.commands;
    let needed: &[(&str, bool)] = match kind {
        K::BrokerRestart | K::RollingRestart => &[("restart_command", commands.restart.is_some())],
        K::BrokerKill | K::NodeKill => &[
            ("kill_command", commands.kill.is_some()),
            ("start_command", commands.start.is_some()),
        ],
        K::BrokerPause => &[
            ("pause_command", commands.pause.is_some()),
            ("resume_command", commands.resume.is_some()),
        ],
        _ => &[("rabbitmqctl_command", commands.rabbitmqctl.is_some())],
    };
    let missing: Vec<String> = needed
        .iter()
        .filter(|(_, set)| !set)
        .map(|(name, _)| format!("broker.{name}"))
        .collect();
    if !missing.is_empty() {
        c.error(
            path,
            format!(
                " = {word:?}: an external broker is faulted through {}, which {} not set",
                missing.join(" and "),
                if missing.len() == 1 { "is" } else { "are" }
            ),
        );
    }
}

pub(super) fn chaos(
    c: &mut Checker<'_>,
    section: ChaosSection,
    broker: &BrokerPlan,
    run: RunLength,
) -> Option<ChaosPlan> {
    let mut kinds = BTreeMap::new();
    match section.kinds {
        None => c.missing(
            "chaos.kinds",
            "list the fault kinds and their weights, like kinds = { down = 2, latency = 1 }",
        ),
        Some(table) if table.is_empty() => c.error(
            "chaos.kinds",
            "expected at least one fault kind with a weight",
        ),
        Some(table) => {
            for (name, weight) in table {
                let path = format!("chaos.kinds.{name}");
                match serde_json::from_value::<K>(serde_json::Value::String(name.clone())) {
                    Ok(kind) => {
                        let weight =
                            whole(c, &path, Some(weight), 1, 1, 1_000_000, "a relative weight")
                                as u32;
                        if is_node_fault(kind) {
                            check_node_fault_allowed(c, &path, kind, broker);
                        }
                        kinds.insert(kind, weight);
                    }
                    Err(_) => c.key_error(
                        &path,
                        format!(
                            "unknown fault kind; expected one of: {}",
                            all_kind_names().join(", ")
                        ),
                    ),
                }
            }
        }
    }
    let every = nonzero(c, "chaos.every", section.every);
    let lasting = nonzero(c, "chaos.for", section.lasting);
    if every.is_none() && section.every.is_none() {
        c.missing(
            "chaos.every",
            "how often a fault starts, like every = \"20s\"",
        );
    }
    if lasting.is_none() && section.lasting.is_none() {
        c.missing("chaos.for", "how long each fault lasts, like for = \"5s\"");
    }
    let (every, lasting) = (every?, lasting?);
    let jitter = section.jitter.map_or(Duration::ZERO, |j| j.0);
    if jitter + lasting > every {
        c.error(
            "chaos.every",
            format!(
                " = {}: shorter than jitter + for = {}, so faults would overlap",
                quoted(every),
                quoted(jitter + lasting)
            ),
        );
    }
    let start = section.start.map_or(every, |s| s.0);
    if run.duration.is_none() {
        c.error(
            "chaos",
            "a chaos schedule runs until the run ends; give the run a duration",
        );
    }
    if let Some(duration) = run.duration {
        if start + jitter + lasting > duration {
            c.error(
                "chaos.start",
                format!(
                    "the first chaos fault would end at {}, after the run ends (duration = {})",
                    format_duration(start + jitter + lasting),
                    quoted(duration)
                ),
            );
        }
    }
    Some(ChaosPlan {
        kinds,
        start,
        every,
        jitter,
        lasting,
    })
}

fn all_kind_names() -> Vec<String> {
    [
        K::Down,
        K::Latency,
        K::Bandwidth,
        K::SlowClose,
        K::Timeout,
        K::Blackhole,
        K::ResetPeer,
        K::Slicer,
        K::LimitData,
        K::BrokerRestart,
        K::BrokerKill,
        K::BrokerPause,
        K::MemoryAlarm,
        K::DiskAlarm,
        K::NodeKill,
        K::RollingRestart,
        K::Partition,
    ]
    .iter()
    .map(serde_name)
    .collect()
}
