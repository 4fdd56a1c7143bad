//! The scenario file exactly as written: one struct per TOML section, every field optional
//! where the format has a default, unknown fields refused. `lower` turns it into a `Plan`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::plan::{
    AckMode, BrokerMode, ExchangeKind, FaultKindName, OnFailure, QueueType, ReportFormat,
    StreamDirection, TrafficPath,
};
use super::units::{ByteSize, ByteSizeVisitor, DurationValue};

/// The top level of a scenario file, filled section by section by `scenario::parse`.
#[derive(Debug, Default)]
pub struct ScenarioFile {
    /// Format version; only 1 exists.
    pub version: Option<i64>,
    /// Scenario name, used in report folder names.
    pub name: Option<String>,
    /// One line on what the scenario proves.
    pub description: Option<String>,
    /// How long publishers run.
    pub duration: Option<DurationValue>,
    /// How long publishing goes on after the last fault has ended (past `duration`).
    pub after_faults: Option<DurationValue>,
    /// How many messages each publisher sends.
    pub messages: Option<i64>,
    /// Seed of every random choice of the run.
    pub seed: Option<i64>,
    /// How long to wait for confirmed messages to arrive after publishing stops.
    pub drain_timeout: Option<DurationValue>,
    /// Client threads.
    pub threads: Option<i64>,
    /// Whether missing messages are looked for in the queue once the drain is over.
    pub final_read: Option<bool>,
    /// How long that final read may take.
    pub final_read_timeout: Option<DurationValue>,
    /// `[broker]`
    pub broker: BrokerSection,
    /// `[topology]`
    pub topology: TopologySection,
    /// `[publishers]`
    pub publishers: PublishersSection,
    /// `[consumers]`
    pub consumers: ConsumersSection,
    /// `[[faults]]`, one entry per fault (index kept for diagnostics).
    pub faults: Vec<FaultEntry>,
    /// `[chaos]`
    pub chaos: Option<ChaosSection>,
    /// `[gates]`
    pub gates: GatesSection,
    /// `[sweep]`
    pub sweep: Option<SweepSection>,
    /// `[report]`
    pub report: ReportSection,
    /// `[proxy]`
    pub proxy: ProxySection,
}

/// `[proxy]`: where network faults are made (an embedded Toxiproxy by default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    pub toxiproxy: Option<String>,
    pub listen_host: Option<String>,
    pub first_port: Option<i64>,
    pub client_host: Option<String>,
    pub upstreams: Option<Vec<String>>,
}

/// `[broker]`: which broker the run uses.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSection {
    pub mode: Option<BrokerMode>,
    pub nodes: Option<i64>,
    pub port: Option<i64>,
    pub keep: Option<bool>,
    pub root: Option<String>,
    pub uris: Option<Vec<String>>,
    pub allow_destructive: Option<bool>,
    pub restart_command: Option<String>,
    pub kill_command: Option<String>,
    pub start_command: Option<String>,
    pub pause_command: Option<String>,
    pub resume_command: Option<String>,
    pub rabbitmqctl_command: Option<String>,
    /// `tls = true` (warren's own nodes) or a `[broker.tls]` table (an external broker).
    pub tls: Option<TlsEntry>,
    pub tls_client_auth: Option<bool>,
}

/// `broker.tls`: `true` / `false` for warren's own nodes, or the client's TLS settings
/// for an external broker's amqps URIs.
#[derive(Debug)]
pub enum TlsEntry {
    /// `tls = true`: warren's nodes speak TLS.
    Enabled(bool),
    /// `[broker.tls]`: how warren's clients speak TLS.
    Client(TlsSection),
}

/// `[broker.tls]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name: Option<String>,
    pub verify: Option<bool>,
}

impl<'de> Deserialize<'de> for TlsEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TlsVisitor;
        impl<'de> Visitor<'de> for TlsVisitor {
            type Value = TlsEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true or false (warren's own nodes), or a table like [broker.tls] with ca_file, cert_file, key_file, server_name, verify")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<TlsEntry, E> {
                Ok(TlsEntry::Enabled(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TlsEntry, A::Error> {
                TlsSection::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(TlsEntry::Client)
            }
        }
        deserializer.deserialize_any(TlsVisitor)
    }
}

/// `[topology]`: the queue and exchange declared for the run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySection {
    pub queue: Option<QueueSection>,
    pub exchange: Option<ExchangeSection>,
    /// How many queues are made from the `queue` template.
    pub queues: Option<i64>,
    /// Declare and read a dead-letter exchange and queue of the run.
    pub dead_letter: Option<bool>,
}

/// `topology.queue`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSection {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub queue_type: Option<QueueType>,
    pub durable: Option<bool>,
    pub keep: Option<bool>,
    pub arguments: Option<BTreeMap<String, toml::Value>>,
}

/// `topology.exchange`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeSection {
    pub name: Option<String>,
    pub kind: Option<ExchangeKind>,
    pub durable: Option<bool>,
    pub routing_key: Option<String>,
    pub bindings: Option<Vec<String>>,
}

/// `[publishers]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishersSection {
    pub count: Option<i64>,
    pub confirm: Option<bool>,
    pub max_in_flight: Option<i64>,
    pub persistent: Option<bool>,
    pub mandatory: Option<bool>,
    pub rate: Option<f64>,
    pub size: Option<SizeEntry>,
    pub on_failure: Option<OnFailure>,
    pub connections: Option<i64>,
    pub channels_per_connection: Option<i64>,
    pub confirm_timeout: Option<DurationValue>,
    pub heartbeat: Option<DurationValue>,
}

/// `publishers.size`: a fixed size or a uniform range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeEntry {
    /// Every body has this many bytes.
    Fixed(ByteSize),
    /// Body sizes drawn uniformly (seeded) from `min..=max`.
    Range { min: ByteSize, max: ByteSize },
}

impl<'de> Deserialize<'de> for SizeEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl<'de> Visitor<'de> for SizeVisitor {
            type Value = SizeEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a size like 1024 or \"1KiB\", or a range { min = 100, max = \"4KiB\" }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeEntry, E> {
                ByteSizeVisitor.visit_str(v).map(SizeEntry::Fixed)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeEntry, E> {
                ByteSizeVisitor.visit_i64(v).map(SizeEntry::Fixed)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeEntry, E> {
                ByteSizeVisitor.visit_u64(v).map(SizeEntry::Fixed)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SizeEntry, A::Error> {
                let (mut min, mut max) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "min" => min = Some(map.next_value::<ByteSize>()?),
                        "max" => max = Some(map.next_value::<ByteSize>()?),
                        other => return Err(de::Error::unknown_field(other, &["min", "max"])),
                    }
                }
                match (min, max) {
                    (Some(min), Some(max)) => Ok(SizeEntry::Range { min, max }),
                    _ => Err(de::Error::custom(
                        "a size range needs both min and max, like { min = 100, max = 4096 }",
                    )),
                }
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// `[consumers]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumersSection {
    pub count: Option<i64>,
    pub ack: Option<AckMode>,
    pub prefetch: Option<i64>,
    pub multiple_ack_every: Option<i64>,
    pub processing_delay: Option<DurationValue>,
    pub crash_every: Option<i64>,
    pub connections: Option<i64>,
    pub heartbeat: Option<DurationValue>,
    pub stall_timeout: Option<DurationValue>,
}

/// One `[[faults]]` entry. Every kind's parameters are listed; `lower` refuses the ones a
/// kind does not use, so a misplaced parameter is reported rather than ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultEntry {
    /// What the fault is called in the console, the report, events and CSV.
    pub name: Option<String>,
    pub kind: Option<FaultKindName>,
    pub at: Option<DurationValue>,
    pub every: Option<DurationValue>,
    pub jitter: Option<DurationValue>,
    pub count: Option<i64>,
    #[serde(rename = "for")]
    pub lasting: Option<DurationValue>,
    pub path: Option<TrafficPath>,
    pub stream: Option<StreamDirection>,
    pub toxicity: Option<f64>,
    pub node: Option<NodeEntry>,
    pub latency: Option<DurationValue>,
    pub latency_jitter: Option<DurationValue>,
    pub rate: Option<i64>,
    pub delay: Option<DurationValue>,
    pub timeout: Option<DurationValue>,
    pub average_size: Option<ByteSize>,
    pub size_variation: Option<ByteSize>,
    pub bytes: Option<ByteSize>,
}

/// `faults[].node`: an index into the broker's nodes, or a rule that picks one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEntry {
    /// The node at this 0-based index.
    Index(i64),
    /// A word: "leader" or "random" (checked when lowered).
    Named(String),
}

impl<'de> Deserialize<'de> for NodeEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;
        impl Visitor<'_> for NodeVisitor {
            type Value = NodeEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a node index (0, 1, ...), \"leader\" or \"random\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeEntry, E> {
                Ok(NodeEntry::Index(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeEntry, E> {
                Ok(NodeEntry::Index(v.min(i64::MAX as u64) as i64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeEntry, E> {
                Ok(NodeEntry::Named(v.to_string()))
            }
        }
        deserializer.deserialize_any(NodeVisitor)
    }
}

/// `[chaos]`: a seeded random schedule of faults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosSection {
    pub kinds: Option<BTreeMap<String, i64>>,
    pub start: Option<DurationValue>,
    pub every: Option<DurationValue>,
    pub jitter: Option<DurationValue>,
    #[serde(rename = "for")]
    pub lasting: Option<DurationValue>,
}

/// `[gates]`: thresholds whose breach fails the run (exit code 1).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatesSection {
    pub max_lost_confirmed: Option<i64>,
    pub max_lost_unconfirmed: Option<i64>,
    pub max_dead_lettered: Option<i64>,
    pub max_duplicates: Option<i64>,
    pub max_reordered: Option<i64>,
    pub p99_e2e_ms: Option<f64>,
    pub p99_confirm_ms: Option<f64>,
    pub min_throughput: Option<f64>,
    pub max_recovery: Option<DurationValue>,
}

/// `[sweep]`: capacity planning, one measured step per target rate.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSection {
    pub rates: Option<Vec<f64>>,
    pub start: Option<f64>,
    pub step: Option<f64>,
    pub stop: Option<f64>,
    pub step_duration: Option<DurationValue>,
    pub p99_e2e_ms: Option<f64>,
}

/// `[report]`: where results go and in which formats.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSection {
    pub dir: Option<String>,
    pub formats: Option<Vec<ReportFormat>>,
    pub metrics_listen: Option<String>,
}
