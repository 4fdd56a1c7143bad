//! The fault timeline: every `[[faults]]` entry expanded into its occurrences (repeats,
//! seeded jitter), plus the `[chaos]` schedule drawn from the seed, in start order. The
//! same seed always gives the same timeline.

use std::time::Duration;

use serde::Serialize;

use crate::scenario::units::format_duration;
use crate::scenario::{
    ChaosPlan, FaultAction, FaultKindName as K, NodeSelector, Plan, StreamDirection, Toxic,
    TrafficPath, serde_name,
};
use crate::seeded::splitmix;

/// One fault, at one time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Occurrence {
    /// The fault's name in the scenario, or its kind and parameters ("blackhole consumers
    /// 2s", "broker_restart node 0"), with " #2" for the second occurrence of a repeating
    /// fault, and "chaos #4 ..." for a chaos draw; unique within a run.
    pub label: String,
    /// From the start of publishing.
    pub start: Duration,
    /// How long it lasts; unset for faults that end when their action does (restart).
    pub lasting: Option<Duration>,
    pub action: FaultAction,
}

impl Occurrence {
    /// One line for the schedule printed at start.
    pub fn describe(&self) -> String {
        let until = self.lasting.map_or(String::new(), |l| {
            format!("–{}", schedule_time(self.start + l))
        });
        format!(
            "{:>8}{until:<9} {:<14} {}",
            schedule_time(self.start),
            self.label,
            describe_action(&self.action)
        )
    }
}

/// A time in a printed schedule: whole durations as written in scenarios ("5s", "1m30s"),
/// jittered ones in seconds to the millisecond ("3.373s"), never in raw microseconds.
fn schedule_time(at: Duration) -> String {
    if at.subsec_nanos() == 0 {
        format_duration(at)
    } else {
        format!("{:.3}s", at.as_secs_f64())
    }
}

/// What an action does, in a few words.
pub fn describe_action(action: &FaultAction) -> String {
    match action {
        FaultAction::Down { path } => format!("down ({})", serde_name(path)),
        FaultAction::Toxic {
            toxic,
            path,
            stream,
            toxicity,
        } => {
            let chance = if *toxicity < 1.0 {
                format!(", toxicity {toxicity}")
            } else {
                String::new()
            };
            format!(
                "{} ({}, {}{chance})",
                describe_toxic(toxic),
                serde_name(path),
                serde_name(stream)
            )
        }
        FaultAction::RollingRestart => "rolling_restart of every node".into(),
        FaultAction::Partition { node } => {
            format!("partition node {} from the others", describe_node(node))
        }
        node_fault => on_node(node_fault).unwrap_or_default(),
    }
}

/// "broker_kill node leader": a fault on one node, named by its kind; `None` for the
/// others.
fn on_node(action: &FaultAction) -> Option<String> {
    let (kind, node) = match action {
        FaultAction::BrokerRestart { node } => ("broker_restart", node),
        FaultAction::BrokerKill { node } => ("broker_kill", node),
        FaultAction::BrokerPause { node } => ("broker_pause", node),
        FaultAction::MemoryAlarm { node } => ("memory_alarm", node),
        FaultAction::DiskAlarm { node } => ("disk_alarm", node),
        FaultAction::NodeKill { node } => ("node_kill", node),
        FaultAction::Partition { node } => ("partition", node),
        FaultAction::Down { .. } | FaultAction::Toxic { .. } | FaultAction::RollingRestart => {
            return None;
        }
    };
    Some(format!("{kind} node {}", describe_node(node)))
}

fn describe_toxic(toxic: &Toxic) -> String {
    match toxic {
        Toxic::Latency { latency, jitter } => format!(
            "latency {}±{}",
            format_duration(*latency),
            format_duration(*jitter)
        ),
        Toxic::Bandwidth { rate_kbps } => format!("bandwidth {rate_kbps} KB/s"),
        Toxic::SlowClose { delay } => format!("slow_close {}", format_duration(*delay)),
        Toxic::Timeout { timeout } if timeout.is_zero() => "timeout (bytes dropped)".into(),
        Toxic::Blackhole { hold } => format!("blackhole {}", format_duration(*hold)),
        Toxic::Timeout { timeout } => format!("timeout {}", format_duration(*timeout)),
        Toxic::ResetPeer { timeout } => format!("reset_peer after {}", format_duration(*timeout)),
        Toxic::Slicer {
            average_size,
            size_variation,
            delay,
        } => format!(
            "slicer {average_size}±{size_variation} B, {} apart",
            format_duration(*delay)
        ),
        Toxic::LimitData { bytes } => format!("limit_data {bytes} B"),
    }
}

fn describe_node(node: &NodeSelector) -> String {
    match node {
        NodeSelector::Index(i) => i.to_string(),
        NodeSelector::Leader => "leader".into(),
        NodeSelector::Random => "random".into(),
    }
}

/// Every fault occurrence of a plan, in start order.
pub fn timeline(plan: &Plan) -> Vec<Occurrence> {
    let end = plan.stop.duration;
    let mut out = Vec::new();
    for (index, fault) in plan.faults.iter().enumerate() {
        let schedule = &fault.schedule;
        let repeats = match (schedule.every, schedule.count) {
            (None, _) => 1,
            (Some(_), Some(count)) => count,
            (Some(_), None) => u32::MAX,
        };
        for k in 0..repeats {
            let base = schedule.at + schedule.every.unwrap_or_default() * k;
            let jitter = seeded_fraction(plan.seed, index as u64, u64::from(k), schedule.jitter);
            let start = base + jitter;
            let fits = end.is_none_or(|end| {
                start + schedule.lasting.unwrap_or_default() <= end && start < end
            });
            if !fits {
                break;
            }
            let name = fault
                .name
                .clone()
                .unwrap_or_else(|| short_label(&fault.action, schedule.lasting));
            let label = if repeats == 1 {
                name
            } else {
                format!("{name} #{}", k + 1)
            };
            out.push(Occurrence {
                label,
                start,
                lasting: schedule.lasting,
                action: fault.action,
            });
        }
    }
    if let (Some(chaos), Some(end)) = (&plan.chaos, end) {
        out.extend(chaos_schedule(
            chaos,
            plan.seed,
            end,
            plan.broker.node_count(),
        ));
    }
    out.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.label.cmp(&b.label)));
    // Two faults alike get the same label: the later ones are numbered.
    let mut seen: Vec<String> = Vec::new();
    for occurrence in &mut out {
        let alike = seen.iter().filter(|l| **l == occurrence.label).count();
        seen.push(occurrence.label.clone());
        if alike > 0 {
            occurrence.label = format!("{} ({})", occurrence.label, alike + 1);
        }
    }
    out
}

/// A fault's label from its kind and parameters: "blackhole consumers 2s", "latency 100ms
/// publishers 4.6s", "broker_restart node 0".
pub fn short_label(action: &FaultAction, lasting: Option<Duration>) -> String {
    let what = match action {
        FaultAction::Down { path } => format!("down {}", serde_name(path)),
        FaultAction::Toxic { toxic, path, .. } => {
            let kind = match toxic {
                Toxic::Latency { latency, .. } => format!("latency {}", format_duration(*latency)),
                Toxic::Bandwidth { rate_kbps } => format!("bandwidth {rate_kbps}KB/s"),
                Toxic::SlowClose { .. } => "slow_close".into(),
                Toxic::Timeout { .. } => "timeout".into(),
                Toxic::Blackhole { .. } => "blackhole".into(),
                Toxic::ResetPeer { .. } => "reset_peer".into(),
                Toxic::Slicer { .. } => "slicer".into(),
                Toxic::LimitData { bytes } => format!("limit_data {bytes}B"),
            };
            format!("{kind} {}", serde_name(path))
        }
        FaultAction::RollingRestart => "rolling_restart".into(),
        node_fault => on_node(node_fault).unwrap_or_default(),
    };
    match lasting {
        Some(lasting) => format!("{what} {}", format_duration(lasting)),
        None => what,
    }
}

/// A seeded amount in `0..=spread`, one per (fault, occurrence).
fn seeded_fraction(seed: u64, fault: u64, occurrence: u64, spread: Duration) -> Duration {
    if spread.is_zero() {
        return Duration::ZERO;
    }
    let draw = splitmix(seed ^ splitmix(fault << 32 | occurrence));
    Duration::from_nanos(draw % (spread.as_nanos() as u64 + 1))
}

/// The `[chaos]` faults: every `every` from `start`, each of a kind drawn by weight.
fn chaos_schedule(chaos: &ChaosPlan, seed: u64, end: Duration, nodes: usize) -> Vec<Occurrence> {
    let total: u64 = chaos.kinds.values().map(|w| u64::from(*w)).sum();
    let mut state = splitmix(seed ^ 0xC4A0_5EED);
    let mut draw = || {
        state = splitmix(state);
        state
    };
    let mut out = Vec::new();
    let mut k = 0u32;
    loop {
        let start = chaos.start
            + chaos.every * k
            + Duration::from_nanos(draw() % (chaos.jitter.as_nanos() as u64 + 1));
        if start + chaos.lasting > end {
            break;
        }
        let mut pick = draw() % total.max(1);
        let kind = *chaos
            .kinds
            .iter()
            .find(|(_, weight)| {
                let hit = pick < u64::from(**weight);
                pick = pick.saturating_sub(u64::from(**weight));
                hit
            })
            .map(|(kind, _)| kind)
            .expect("weights sum to the total");
        let path = [
            TrafficPath::Publishers,
            TrafficPath::Consumers,
            TrafficPath::All,
        ][(draw() % 3) as usize];
        let node = if nodes > 1 {
            NodeSelector::Random
        } else {
            NodeSelector::Index(0)
        };
        let action = chaos_action(kind, path, node, chaos.lasting);
        out.push(Occurrence {
            label: format!(
                "chaos #{} {}",
                k + 1,
                short_label(&action, Some(chaos.lasting))
            ),
            start,
            lasting: Some(chaos.lasting),
            action,
        });
        k += 1;
    }
    out
}

/// The action a chaos draw of `kind` takes, with moderate default parameters.
fn chaos_action(kind: K, path: TrafficPath, node: NodeSelector, lasting: Duration) -> FaultAction {
    let toxic = |toxic| FaultAction::Toxic {
        toxic,
        path,
        stream: StreamDirection::Both,
        toxicity: 1.0,
    };
    let ms = Duration::from_millis;
    match kind {
        K::Down => FaultAction::Down { path },
        K::Latency => toxic(Toxic::Latency {
            latency: ms(200),
            jitter: ms(50),
        }),
        K::Bandwidth => toxic(Toxic::Bandwidth { rate_kbps: 10 }),
        K::SlowClose => toxic(Toxic::SlowClose { delay: ms(1_000) }),
        K::Timeout => toxic(Toxic::Timeout {
            timeout: Duration::ZERO,
        }),
        K::Blackhole => toxic(Toxic::Blackhole { hold: lasting }),
        K::ResetPeer => toxic(Toxic::ResetPeer {
            timeout: Duration::ZERO,
        }),
        K::Slicer => toxic(Toxic::Slicer {
            average_size: 64,
            size_variation: 32,
            delay: Duration::from_micros(100),
        }),
        K::LimitData => toxic(Toxic::LimitData { bytes: 64 * 1024 }),
        K::BrokerRestart => FaultAction::BrokerRestart { node },
        K::BrokerKill => FaultAction::BrokerKill { node },
        K::BrokerPause => FaultAction::BrokerPause { node },
        K::MemoryAlarm => FaultAction::MemoryAlarm { node },
        K::DiskAlarm => FaultAction::DiskAlarm { node },
        K::NodeKill => FaultAction::NodeKill { node },
        K::RollingRestart => FaultAction::RollingRestart,
        K::Partition => FaultAction::Partition { node },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Overrides, parse};
    use std::path::Path;

    fn plan(text: &str) -> Plan {
        parse(Path::new("t.toml"), text, Overrides::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    const CHAOS: &str = "name = \"c\"\nduration = \"5m\"\n[chaos]\nkinds = { down = 2, latency = 1, broker_kill = 1, reset_peer = 1 }\nevery = \"20s\"\njitter = \"5s\"\nfor = \"5s\"\n";

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let a = timeline(&plan(&format!("seed = 1\n{CHAOS}")));
        let b = timeline(&plan(&format!("seed = 1\n{CHAOS}")));
        let c = timeline(&plan(&format!("seed = 2\n{CHAOS}")));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            a.len(),
            14,
            "20 s apart from 20 s, each ending by 5 m: {a:#?}"
        );
        assert!(
            a.iter()
                .all(|o| o.start + o.lasting.unwrap() <= Duration::from_secs(300))
        );
        let kinds: std::collections::BTreeSet<String> = a
            .iter()
            .map(|o| {
                describe_action(&o.action)
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert!(kinds.len() >= 3, "several kinds drawn: {kinds:?}");
    }

    #[test]
    fn repeats_follow_every_with_jitter_inside_bounds() {
        let p = plan(
            "name = \"r\"\nduration = \"60s\"\nseed = 9\n[[faults]]\nkind = \"broker_pause\"\nat = \"10s\"\nevery = \"15s\"\njitter = \"2s\"\ncount = 3\nfor = \"3s\"\n",
        );
        let t = timeline(&p);
        assert_eq!(t.len(), 3);
        for (k, occurrence) in t.iter().enumerate() {
            let base = Duration::from_secs(10 + 15 * k as u64);
            assert!(
                occurrence.start >= base && occurrence.start <= base + Duration::from_secs(2),
                "{occurrence:?}"
            );
        }
        assert_eq!(t[1].label, "broker_pause node 0 3s #2");
    }

    #[test]
    fn faults_are_labelled_by_their_name_or_kind_never_by_index() {
        let p = plan(
            "name = \"l\"\nduration = \"60s\"\n[chaos]\nkinds = { blackhole = 1 }\nevery = \"50s\"\nfor = \"2s\"\n[[faults]]\nkind = \"blackhole\"\npath = \"consumers\"\nat = \"5s\"\nfor = \"2s\"\n[[faults]]\nkind = \"blackhole\"\npath = \"consumers\"\nat = \"10s\"\nfor = \"2s\"\n[[faults]]\nname = \"the big one\"\nkind = \"broker_restart\"\nat = \"20s\"\n[[faults]]\nkind = \"latency\"\nlatency = \"100ms\"\npath = \"publishers\"\nat = \"30s\"\nfor = \"4.6s\"\n",
        );
        let labels: Vec<String> = timeline(&p).into_iter().map(|o| o.label).collect();
        assert_eq!(
            labels[..4],
            [
                "blackhole consumers 2s",
                "blackhole consumers 2s (2)",
                "the big one",
                "latency 100ms publishers 4600ms",
            ]
        );
        assert!(
            labels[4].starts_with("chaos #1 blackhole ") && labels[4].ends_with(" 2s"),
            "{labels:?}"
        );
    }

    #[test]
    fn open_ended_repeats_stop_at_the_end_of_the_run() {
        let p = plan(
            "name = \"r\"\nduration = \"60s\"\n[[faults]]\nkind = \"latency\"\nlatency = \"10ms\"\nevery = \"20s\"\nfor = \"5s\"\n",
        );
        let starts: Vec<u64> = timeline(&p).iter().map(|o| o.start.as_secs()).collect();
        assert_eq!(starts, vec![20, 40]);
    }

    #[test]
    fn printed_schedules_show_seconds_not_microseconds() {
        assert_eq!(schedule_time(Duration::from_secs(90)), "1m30s");
        assert_eq!(schedule_time(Duration::from_micros(3_373_343)), "3.373s");
        let p = plan(&format!("seed = 1\n{CHAOS}"));
        let line = timeline(&p)[0].describe();
        assert!(!line.contains("us"), "{line}");
    }
}
