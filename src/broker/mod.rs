//! The broker a run talks to: private nodes warren starts and stops itself (managed), or a
//! broker someone else runs (external). Node operations for fault injection live here too.

mod account;
mod cluster;
mod ctl;
mod epmd;
mod external;
mod install;
mod layout;
mod node;
mod partition;
mod ports;
mod process;
mod rootfs;
pub mod state;
pub mod tls;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use cluster::{ClusterOptions, ManagedCluster};
pub use ctl::{CTL_ANSWER_WITHIN, ClusterStatus, Ctl};
pub use external::ExternalBroker;
pub use install::{BIN_DIR_VAR, RabbitInstall, ReleaseVersion};
pub use node::{NodeSpec, START_TIMEOUT, STOP_GRACE, log_tail};
pub use rootfs::{ROOT_VAR, RabbitRoot};
pub use state::{BrokerState, NodeState};

use crate::amqp::{TlsClient, probe_uri};
use crate::broker_uri::BrokerUri;
use crate::scenario::BrokerPlan;

/// What went wrong with a broker. All of these are infrastructure failures (exit code 3),
/// except an interruption (130).
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "{what} was not found (looked in ${BIN_DIR_VAR}, /usr/lib/rabbitmq/bin and $PATH).\n  Install it on Debian or Ubuntu with:  sudo scripts/install.sh   (or: sudo apt-get install -y rabbitmq-server)\n  or point {BIN_DIR_VAR} at the folder holding rabbitmq-server and rabbitmqctl,\n  or use a broker of your own with [broker] mode = \"external\""
    )]
    NotInstalled { what: &'static str },
    #[error(
        "{what} was not found in the RabbitMQ root {path} (looked in usr/lib/rabbitmq/bin and usr/lib/erlang/bin there).\n  Build a root with RabbitMQ 4.0 with:  sudo scripts/rabbitmq.sh 4.0\n  or unset {ROOT_VAR} (and [broker] root) to use this machine's rabbitmq-server"
    )]
    NotInRoot { what: &'static str, path: PathBuf },
    #[error("the RabbitMQ root {path} cannot be used: {reason}")]
    BadRoot { path: PathBuf, reason: String },
    #[error(
        "RabbitMQ from another root ({path}) runs inside it with chroot, which needs root: run warren as root, or unset {ROOT_VAR} (and [broker] root) to use this machine's rabbitmq-server"
    )]
    RootNeedsRoot { path: PathBuf },
    #[error(
        "RabbitMQ {version} ({path}) is older than warren's private nodes support (3.10 to 4.x); install a newer rabbitmq-server or set WARREN_RABBITMQ_BIN to one"
    )]
    UnsupportedRelease { version: String, path: String },
    #[error(
        "warren runs as root, and private nodes run as the `rabbitmq` user, which does not exist; install rabbitmq-server (its package creates the user) or run warren as an ordinary user"
    )]
    NoServiceUser,
    #[error("a managed broker has 1, 3 or 5 nodes, not {nodes}")]
    BadClusterSize { nodes: usize },
    #[error(
        "port {port} on 127.0.0.1 is in use (a system RabbitMQ, or another private broker?); choose another port or let warren pick free ones"
    )]
    PortInUse { port: u16 },
    /// (The I/O error is part of the message, not a separate source, so an error chain
    /// printed whole says it once.)
    #[error("cannot {action}: {cause}")]
    Io {
        action: String,
        cause: std::io::Error,
    },
    #[error("node {node} failed: {reason}\n{log}")]
    NodeFailed {
        node: String,
        reason: String,
        log: String,
    },
    #[error("node {node} is not running")]
    NotRunning { node: String },
    #[error("no node {index}: the broker has {count} node(s)")]
    NoSuchNode { index: usize, count: usize },
    #[error("rabbitmqctl -n {node} {command} failed: {output}")]
    Ctl {
        node: String,
        command: String,
        output: String,
    },
    #[error(
        "the cluster did not form: expected {expected} running nodes, rabbitmqctl cluster_status lists {running:?}"
    )]
    ClusterFormation {
        expected: usize,
        running: Vec<String>,
    },
    #[error("{uri}: the broker cannot be used: {reason}")]
    Unreachable { uri: String, reason: String },
    #[error("state file {path}: {reason}")]
    StateFile { path: PathBuf, reason: String },
    #[error(
        "a private broker from `warren broker up` is already running ({path}); stop it with `warren broker down`"
    )]
    AlreadyUp { path: PathBuf },
    #[error(
        "this cluster was not started for partitions (its inter-node traffic does not go through proxies)"
    )]
    NotPartitionable,
    #[error("interrupted")]
    Interrupted,
}

impl BrokerError {
    fn io(action: &str, cause: std::io::Error) -> Self {
        BrokerError::Io {
            action: action.to_string(),
            cause,
        }
    }
}

/// The broker of a run.
pub enum Broker {
    Managed(Box<ManagedCluster>),
    External(ExternalBroker),
}

/// How `start` should treat a managed broker, beyond the scenario.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Keep node folders after the run (`--keep`).
    pub keep: bool,
    /// Folder under which node folders are made (system temp folder when unset).
    pub parent_dir: Option<PathBuf>,
    /// Start a cluster whose nodes can be partitioned from each other.
    pub partitionable: bool,
}

/// One node of the broker, as the run reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Erlang node name (managed) or host:port (external).
    pub name: String,
    /// AMQP URI, password redacted.
    pub uri: String,
    /// Product and version from the AMQP greeting, when the node answered.
    pub product: Option<String>,
    pub version: Option<String>,
    /// Erlang/OTP release, when known.
    pub platform: Option<String>,
    /// True when the node answered AMQP.
    pub answering: bool,
}

impl Broker {
    /// Brings up or checks the broker a scenario asks for.
    ///
    /// # Errors
    /// [`BrokerError`] when a managed broker does not start or an external one cannot be used.
    pub async fn start(
        plan: &BrokerPlan,
        options: StartOptions,
        cancel: &CancellationToken,
    ) -> Result<Self, BrokerError> {
        match plan {
            BrokerPlan::Managed(managed) => {
                let cluster = ManagedCluster::start(
                    ClusterOptions {
                        nodes: managed.nodes,
                        first_port: managed.first_port,
                        keep: managed.keep || options.keep,
                        detachable: false,
                        parent_dir: options.parent_dir,
                        partitionable: options.partitionable,
                        rabbitmq_root: managed.root.clone().or_else(RabbitRoot::path_from_env),
                        tls: managed.tls,
                    },
                    cancel,
                )
                .await?;
                Ok(Broker::Managed(Box::new(cluster)))
            }
            BrokerPlan::External(external) => {
                let tls = match &external.tls {
                    Some(settings) => Some(TlsClient::load(settings).map_err(|e| {
                        BrokerError::Unreachable {
                            uri: external
                                .uris
                                .first()
                                .map(BrokerUri::redacted)
                                .unwrap_or_default(),
                            reason: e.to_string(),
                        }
                    })?),
                    None => None,
                };
                Ok(Broker::External(
                    ExternalBroker::check(external.uris.clone(), tls, cancel).await?,
                ))
            }
        }
    }

    /// One AMQP URI per node.
    pub fn uris(&self) -> Vec<BrokerUri> {
        match self {
            Broker::Managed(cluster) => cluster.uris(),
            Broker::External(external) => external.uris.clone(),
        }
    }

    /// How clients speak TLS to amqps URIs: the scenario's `[broker.tls]`, or the CA of
    /// warren's TLS nodes; `None` for this system's roots (or no TLS at all).
    pub fn tls(&self) -> Option<TlsClient> {
        match self {
            Broker::Managed(cluster) => cluster.tls_client(),
            Broker::External(external) => external.tls.clone(),
        }
    }

    /// Each node's name, in the order of [`Self::uris`]: the Erlang node name of a
    /// managed node, host:port of an external one.
    pub fn node_names(&self) -> Vec<String> {
        match self {
            Broker::Managed(cluster) => cluster.specs().into_iter().map(|s| s.name).collect(),
            Broker::External(external) => external.uris.iter().map(|u| u.address()).collect(),
        }
    }

    /// Each node with what it says about itself.
    pub async fn describe(&self) -> Vec<NodeInfo> {
        let names = self.node_names();
        let tls = self.tls();
        let mut nodes = Vec::new();
        for (name, uri) in names.into_iter().zip(self.uris()) {
            let info = probe_uri(&uri, tls.as_ref(), Duration::from_secs(5))
                .await
                .ok();
            nodes.push(NodeInfo {
                name,
                uri: uri.redacted(),
                answering: info.is_some(),
                product: info.as_ref().map(|i| i.product.clone()),
                version: info.as_ref().map(|i| i.version.clone()),
                platform: info.and_then(|i| i.platform),
            });
        }
        nodes
    }

    /// Stops a managed broker (gracefully) and removes its folder; nothing for external ones.
    pub async fn shutdown(self) {
        if let Broker::Managed(cluster) = self {
            cluster.shutdown().await;
        }
    }
}
