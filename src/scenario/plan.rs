//! The validated, typed form of a scenario: every default applied, every unit parsed,
//! every cross-field rule checked. The runner only ever sees a [`Plan`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::broker_uri::BrokerUri;

/// A whole run, as the scenario describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The scenario file this plan came from.
    pub source: PathBuf,
    /// Scenario name (report folders are named after it).
    pub name: String,
    /// What the scenario proves, in one line.
    pub description: String,
    /// Seed for every random choice (payload sizes, chaos schedule, random nodes).
    pub seed: u64,
    /// When publishers stop.
    pub stop: StopCondition,
    /// How long to wait after publishing for confirmed messages to be delivered.
    pub drain_timeout: Duration,
    /// After the drain, how long a final read of the queue may take to find the messages
    /// still missing (`None`: no final read, the queue is left as it is).
    pub final_read: Option<Duration>,
    /// Client threads: each a runtime of its own owning a share of the publishers and
    /// consumers (`threads`, `--threads`; default 1).
    pub threads: u32,
    /// Which broker the run uses.
    pub broker: BrokerPlan,
    /// What is declared on the broker.
    pub topology: TopologyPlan,
    /// How messages are published.
    pub publishers: PublisherPlan,
    /// How messages are consumed.
    pub consumers: ConsumerPlan,
    /// Faults at fixed times, in file order.
    pub faults: Vec<FaultPlan>,
    /// A seeded random schedule of faults, if any.
    pub chaos: Option<ChaosPlan>,
    /// Thresholds that decide the exit code.
    pub gates: Gates,
    /// Allowed, but probably not meant (`file:line:column: field: why`); shown by
    /// `warren validate` and `warren run`.
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// A capacity sweep instead of one run, if any.
    pub sweep: Option<SweepPlan>,
    /// Where and how results are written.
    pub report: ReportPlan,
    /// Where network faults are made.
    pub proxy: ProxyPlan,
}

/// The Toxiproxy server network faults go through, and how its proxies are reached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyPlan {
    /// `host:port` of a Toxiproxy API; unset = warren's embedded one.
    pub toxiproxy: Option<String>,
    /// Host the proxies listen on, as the Toxiproxy sees it.
    pub listen_host: String,
    /// Proxies take consecutive ports from here (publishers then consumers path, per node);
    /// unset = free ports.
    pub first_port: Option<u16>,
    /// Host clients use to reach the proxies.
    pub client_host: String,
    /// How the Toxiproxy reaches each broker node (`host:port`); unset = the broker's URIs.
    pub upstreams: Option<Vec<String>>,
}

impl Plan {
    /// True when some fault or the chaos schedule cuts a node off from the others, so the
    /// cluster's inter-node traffic must go through proxies.
    pub fn has_partitions(&self) -> bool {
        self.faults
            .iter()
            .any(|f| matches!(f.action, FaultAction::Partition { .. }))
            || self
                .chaos
                .as_ref()
                .is_some_and(|c| c.kinds.contains_key(&FaultKindName::Partition))
    }

    /// True when some fault or the chaos schedule needs proxies on the client paths.
    pub fn has_network_faults(&self) -> bool {
        let network = |action: &FaultAction| {
            matches!(action, FaultAction::Down { .. } | FaultAction::Toxic { .. })
        };
        self.faults.iter().any(|f| network(&f.action))
            || self
                .chaos
                .as_ref()
                .is_some_and(|c| c.kinds.keys().any(|k| k.is_network()))
    }
}

impl FaultKindName {
    /// True for the kinds made through the proxy.
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            FaultKindName::Down
                | FaultKindName::Latency
                | FaultKindName::Bandwidth
                | FaultKindName::SlowClose
                | FaultKindName::Timeout
                | FaultKindName::Blackhole
                | FaultKindName::ResetPeer
                | FaultKindName::Slicer
                | FaultKindName::LimitData
        )
    }
}

/// When publishing ends: after a duration, after a message count, or whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StopCondition {
    /// Publishers stop after this long.
    pub duration: Option<Duration>,
    /// Each publisher stops after this many messages.
    pub messages_per_publisher: Option<u64>,
    /// Publishing goes on at least this long after the last fault has ended, past
    /// `duration` when faults end late (at most `deadline::HOLD_LIMIT` past it).
    pub after_faults: Option<Duration>,
}

/// `[broker] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerMode {
    /// warren starts its own private nodes.
    Managed,
    /// warren connects to a broker someone else runs.
    External,
}

/// Which broker a run uses.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum BrokerPlan {
    /// Private nodes started and stopped by warren.
    Managed(ManagedBrokerPlan),
    /// A broker warren does not own.
    External(ExternalBrokerPlan),
}

impl BrokerPlan {
    /// How many nodes the broker has (managed: started; external: URIs given).
    pub fn node_count(&self) -> usize {
        match self {
            BrokerPlan::Managed(m) => m.nodes,
            BrokerPlan::External(e) => e.uris.len(),
        }
    }
}

/// A private node or cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManagedBrokerPlan {
    /// 1, or a cluster of 3 or 5.
    pub nodes: usize,
    /// AMQP port of the first node (the next nodes take the following ports); free ports if unset.
    pub first_port: Option<u16>,
    /// Keep the nodes' data and logs after the run.
    pub keep: bool,
    /// Start RabbitMQ from this root file system instead of this machine's install
    /// (`$WARREN_RABBITMQ_ROOT` when unset).
    pub root: Option<std::path::PathBuf>,
    /// The nodes speak TLS only (`tls = true`), perhaps demanding client certificates.
    pub tls: Option<crate::tls::ManagedTls>,
}

/// An external broker and, optionally, the commands that fault its nodes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExternalBrokerPlan {
    /// One URI per node; passwords are never shown.
    pub uris: Vec<BrokerUri>,
    /// Node faults are refused unless this is set, so a typo cannot kill a broker we do not own.
    pub allow_destructive: bool,
    /// Shell commands for node faults.
    pub commands: NodeCommands,
    /// `[broker.tls]`: how clients speak TLS to the amqps URIs (checked when the scenario
    /// is); this system's roots when unset.
    pub tls: Option<Box<crate::tls::TlsSettings>>,
}

/// Shell commands that fault an external broker's nodes (`{node}` is replaced by the index).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeCommands {
    pub restart: Option<String>,
    pub kill: Option<String>,
    pub start: Option<String>,
    pub pause: Option<String>,
    pub resume: Option<String>,
    pub rabbitmqctl: Option<String>,
}

/// `topology.queue.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueType {
    Classic,
    Quorum,
    Stream,
}

/// `topology.exchange.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

/// What is declared on the broker for the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopologyPlan {
    /// Queue name; unset means a name made from the scenario name and run id. With
    /// several queues, the base of their names (`<name>-1` … `<name>-N`).
    pub queue_name: Option<String>,
    /// How many queues are made from the template (`topology.queues`, default 1).
    pub queues: u32,
    pub queue_type: QueueType,
    pub durable: bool,
    /// Leave the queue on the broker after the run.
    pub keep: bool,
    /// x-arguments passed through to queue.declare.
    pub arguments: BTreeMap<String, QueueArgument>,
    /// Exchange name; "" is the default exchange.
    pub exchange: String,
    pub exchange_kind: ExchangeKind,
    pub exchange_durable: bool,
    /// Routing key of the publishers (`{n}`: the number of the publisher's queue, round
    /// robin); unset means the name of the publisher's queue.
    pub routing_key: Option<String>,
    /// Binding keys of every queue on a named direct or topic exchange (`{n}`: the
    /// queue's number); empty means the routing key (or the queue's name).
    pub bindings: Vec<String>,
    /// The queue dead-letters into an exchange and queue of the run, which warren reads:
    /// a message the broker dropped by policy is then found, and counted as dead-lettered.
    pub dead_letter: bool,
}

/// A queue x-argument value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum QueueArgument {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// `publishers.on_failure`: what happens to unconfirmed messages after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Publish them again with the same sequence numbers (at-least-once).
    Republish,
    /// Forget them (the naive behaviour).
    Drop,
}

/// Body sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BodySize {
    Fixed(u64),
    Uniform { min: u64, max: u64 },
}

/// How messages are published.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublisherPlan {
    pub count: u32,
    /// Publisher confirms on.
    pub confirm: bool,
    /// Unconfirmed messages allowed per publisher.
    pub max_in_flight: u32,
    /// delivery_mode 2.
    pub persistent: bool,
    pub mandatory: bool,
    /// Total target rate in msg/s over all publishers; unset = as fast as possible.
    pub rate: Option<f64>,
    pub size: BodySize,
    pub on_failure: OnFailure,
    /// Connections the publishers share.
    pub connections: u32,
    pub confirm_timeout: Duration,
    pub heartbeat: Duration,
}

/// `consumers.ack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckMode {
    Manual,
    Auto,
}

/// How messages are consumed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsumerPlan {
    pub count: u32,
    pub ack: AckMode,
    /// basic.qos prefetch count; 0 = unlimited.
    pub prefetch: u16,
    /// Ack with multiple=true once per this many deliveries.
    pub multiple_ack_every: u32,
    pub processing_delay: Option<Duration>,
    /// Close the channel without acking after this many deliveries (exercises redelivery).
    pub crash_every: Option<u64>,
    /// Connections the consumers share.
    pub connections: u32,
    pub heartbeat: Duration,
    /// A consumer that receives nothing this long while its queue holds ready messages
    /// is stalled (its deliveries were lost on the way): it reopens its channel.
    pub stall_timeout: Duration,
}

/// Every fault kind a scenario can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKindName {
    Down,
    Latency,
    Bandwidth,
    SlowClose,
    Timeout,
    Blackhole,
    ResetPeer,
    Slicer,
    LimitData,
    BrokerRestart,
    BrokerKill,
    BrokerPause,
    MemoryAlarm,
    DiskAlarm,
    NodeKill,
    RollingRestart,
    Partition,
}

/// Which client connections a network fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrafficPath {
    Publishers,
    Consumers,
    All,
}

/// Which direction a toxic acts on (Toxiproxy's upstream = client to broker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamDirection {
    Upstream,
    Downstream,
    Both,
}

/// Which broker node a node fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeSelector {
    Index(usize),
    /// The node leading the run's queue when the fault starts.
    Leader,
    /// A node chosen with the run's seed.
    Random,
}

/// When a fault happens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Schedule {
    /// First start, from the beginning of the run.
    pub at: Duration,
    /// Repeat period, if repeating.
    pub every: Option<Duration>,
    /// Each start moves by a seeded amount in `0..=jitter`.
    pub jitter: Duration,
    /// Number of occurrences; unset with `every` means until the run ends.
    pub count: Option<u32>,
    /// How long each occurrence lasts.
    pub lasting: Option<Duration>,
}

/// A Toxiproxy toxic and its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Toxic {
    Latency {
        latency: Duration,
        jitter: Duration,
    },
    /// Kilobytes per second.
    Bandwidth {
        rate_kbps: u64,
    },
    SlowClose {
        delay: Duration,
    },
    /// Drops every byte (Toxiproxy's timeout toxic); closes the connection after
    /// `timeout`, or never when it is 0.
    Timeout {
        timeout: Duration,
    },
    /// Holds every byte for `hold` (the fault's length) and lets them flow when it ends,
    /// as after a real outage: TCP retransmits, nothing is lost in mid-stream.
    Blackhole {
        hold: Duration,
    },
    ResetPeer {
        timeout: Duration,
    },
    Slicer {
        average_size: u64,
        size_variation: u64,
        delay: Duration,
    },
    LimitData {
        bytes: u64,
    },
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// The proxy is disabled: connections closed, nothing accepted.
    Down {
        path: TrafficPath,
    },
    /// A toxic on the proxy.
    Toxic {
        toxic: Toxic,
        path: TrafficPath,
        stream: StreamDirection,
        toxicity: f64,
    },
    BrokerRestart {
        node: NodeSelector,
    },
    BrokerKill {
        node: NodeSelector,
    },
    BrokerPause {
        node: NodeSelector,
    },
    MemoryAlarm {
        node: NodeSelector,
    },
    DiskAlarm {
        node: NodeSelector,
    },
    NodeKill {
        node: NodeSelector,
    },
    /// Every node restarted gracefully, one after the other, each back before the next.
    RollingRestart,
    /// A node cut off from the other nodes (not from its clients), then joined again.
    Partition {
        node: NodeSelector,
    },
}

/// One `[[faults]]` entry, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultPlan {
    /// The scenario's name for it; unset, it is labelled by its kind and parameters.
    pub name: Option<String>,
    pub schedule: Schedule,
    pub action: FaultAction,
}

/// `[chaos]`, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChaosPlan {
    /// Kinds and their relative weights.
    pub kinds: BTreeMap<FaultKindName, u32>,
    pub start: Duration,
    pub every: Duration,
    pub jitter: Duration,
    pub lasting: Duration,
}

/// Thresholds; a breach exits 1. Unset gates are not checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gates {
    pub max_lost_confirmed: Option<u64>,
    pub max_lost_unconfirmed: Option<u64>,
    /// Messages the broker moved to the dead-letter queue (never processed).
    pub max_dead_lettered: Option<u64>,
    pub max_duplicates: Option<u64>,
    pub max_reordered: Option<u64>,
    pub p99_e2e_ms: Option<f64>,
    pub p99_confirm_ms: Option<f64>,
    /// Consumed msg/s over the whole run.
    pub min_throughput: Option<f64>,
    pub max_recovery: Option<Duration>,
}

/// `[sweep]`, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepPlan {
    /// Target rates, msg/s, in the order they run.
    pub rates: Vec<f64>,
    pub step_duration: Duration,
    pub p99_e2e_ms: Option<f64>,
}

/// `report.formats` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportFormat {
    Console,
    Csv,
    Json,
    Hlog,
    Html,
    Junit,
}

/// Where results go.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportPlan {
    pub dir: PathBuf,
    pub formats: Vec<ReportFormat>,
    /// Where live Prometheus metrics are served during the run, if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// The word a scenario uses for an enum value (`quorum`, `broker_kill`), for messages.
pub fn serde_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::from("?"),
    }
}
