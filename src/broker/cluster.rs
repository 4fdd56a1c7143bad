//! A managed broker: one private node or a cluster of 3 or 5, each node in its own folder
//! on free loopback ports, a private epmd, a shared cookie. Torn down on every exit path:
//! `shutdown` stops the nodes gracefully, and `Drop` kills whatever is left.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::BrokerError;
use super::account::Account;
use super::ctl::{CTL_ANSWER_WITHIN, ClusterStatus, Ctl};
use super::epmd::Epmd;
use super::install::RabbitInstall;
use super::layout::{Folders, Ports, make_base_dir, node_specs};
use super::node::{Node, NodeEnv, NodeSpec};
use super::partition::{DistLinks, DistNode};
use super::rootfs::{RabbitRoot, remove_broker_folders};
use super::state::{BrokerState, NodeRecord, TlsRecord};
use super::tls::TlsFiles;
use crate::broker_uri::BrokerUri;
use crate::tls::ManagedTls;

/// How to bring up a managed broker.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// 1, 3 or 5.
    pub nodes: usize,
    /// AMQP port of the first node (the others take the next ones); free ports when unset.
    pub first_port: Option<u16>,
    /// Keep the nodes' folders after teardown.
    pub keep: bool,
    /// Nodes may outlive warren (`broker up --detach`).
    pub detachable: bool,
    /// Folder under which the broker's folder is made; the system temp folder when unset.
    pub parent_dir: Option<PathBuf>,
    /// Inter-node traffic goes through proxies so that a node can be partitioned from the
    /// others (see [`super::partition`]); only for clusters.
    pub partitionable: bool,
    /// Start RabbitMQ from this root file system instead of this machine's install (see
    /// [`super::rootfs`]).
    pub rabbitmq_root: Option<PathBuf>,
    /// The nodes' AMQP listeners speak TLS only, with a CA made for this broker.
    pub tls: Option<ManagedTls>,
}

/// A running managed broker.
pub struct ManagedCluster {
    env: NodeEnv,
    ctl: Ctl,
    base: PathBuf,
    epmd: Epmd,
    nodes: Vec<Node>,
    keep: bool,
    /// The cuttable inter-node links of a partitionable cluster.
    links: Option<DistLinks>,
    /// Nodes cut off from the others.
    cut: Vec<usize>,
    /// With another root: the outermost folder made inside it for the broker's folder.
    mount_point: Option<PathBuf>,
    /// Set once torn down or detached, so `Drop` leaves things alone.
    done: bool,
    /// The CA and certificates of a TLS broker, with how its nodes check clients.
    tls: Option<(TlsFiles, ManagedTls)>,
}

impl ManagedCluster {
    /// Starts the nodes, forms the cluster and waits until every node answers AMQP.
    ///
    /// # Errors
    /// [`BrokerError`] saying which step failed; whatever was started is torn down first.
    pub async fn start(
        options: ClusterOptions,
        cancel: &CancellationToken,
    ) -> Result<Self, BrokerError> {
        if !matches!(options.nodes, 1 | 3 | 5) {
            return Err(BrokerError::BadClusterSize {
                nodes: options.nodes,
            });
        }
        let root = options
            .rabbitmq_root
            .as_deref()
            .map(RabbitRoot::open)
            .transpose()?;
        let install = RabbitInstall::locate(root.as_ref())?;
        let account = RabbitRoot::node_account(root.as_ref())?;
        let ports = Ports::allocate(options.nodes, options.first_port)?;
        let base = make_base_dir(options.parent_dir.as_deref(), &account)?;
        let partitionable = options.partitionable && options.nodes > 1;
        let specs = node_specs(&base, &ports, partitionable, options.tls.is_some());
        let (mount_point, tls_files) = Folders {
            base: &base,
            specs: &specs,
            install: &install,
            account,
            root: root.as_ref(),
            partitionable,
            tls: options.tls,
        }
        .prepare()?;
        let tls = tls_files.zip(options.tls);
        let started = match tls_client_of(tls.as_ref()) {
            Ok(client) => Services::start(
                &install,
                &ports,
                (account, &base, options.detachable),
                &specs,
                partitionable,
            )
            .await
            .map(|services| (services, client)),
            Err(error) => Err(error),
        };
        let (services, tls_client) = match started {
            Ok(started) => started,
            Err(error) => {
                remove_broker_folders(&base, false, root.as_ref(), mount_point.as_deref());
                return Err(error);
            }
        };
        let mut cluster = Self {
            env: NodeEnv {
                install: install.clone(),
                home: base.clone(),
                epmd_port: ports.epmd,
                account,
                die_with_warren: !options.detachable,
                tls: tls_client,
            },
            ctl: Ctl {
                install,
                home: base.clone(),
                epmd_port: ports.epmd,
                account,
            },
            base,
            epmd: services.epmd,
            nodes: specs.into_iter().map(Node::new).collect(),
            keep: options.keep,
            links: services.links,
            cut: Vec::new(),
            mount_point,
            done: false,
            tls,
        };
        // On error, `cluster` is dropped here and its Drop kills what was started.
        cluster.boot(cancel).await?;
        Ok(cluster)
    }

    async fn boot(&mut self, cancel: &CancellationToken) -> Result<(), BrokerError> {
        self.nodes[0].start(&self.env, cancel).await?;
        if self.nodes.len() == 1 {
            return Ok(());
        }
        // Joiners boot in parallel, then join the seed one at a time (schema changes are serial).
        let env = self.env.clone();
        let (_, joiners) = self.nodes.split_at_mut(1);
        let boots = joiners.iter_mut().map(|node| node.start(&env, cancel));
        for result in join_all(boots).await {
            result?;
        }
        let seed = self.nodes[0].spec.name.clone();
        let timeout = Duration::from_secs(60);
        for index in 1..self.nodes.len() {
            let name = self.nodes[index].spec.name.clone();
            self.ctl.run(&name, &["stop_app"], timeout).await?;
            if let Err(error) = self.ctl.run(&name, &["join_cluster", &seed], timeout).await {
                return Err(self.join_failed(&name, error));
            }
            self.ctl.run(&name, &["start_app"], timeout).await?;
        }
        let status = self.ctl.cluster_status(&seed).await?;
        if status.running_nodes.len() != self.nodes.len() {
            return Err(BrokerError::ClusterFormation {
                expected: self.nodes.len(),
                running: status.running_nodes,
            });
        }
        Ok(())
    }

    /// A failed join, with what the seed node's VM was doing: whether it still runs, and
    /// the end of its logs (a seed that died after answering AMQP shows why here).
    fn join_failed(&mut self, joiner: &str, error: BrokerError) -> BrokerError {
        let seed = &mut self.nodes[0];
        let state = if seed.is_running() {
            "the seed node's VM is running"
        } else {
            "the seed node's VM has exited"
        };
        BrokerError::NodeFailed {
            node: seed.spec.name.clone(),
            reason: format!("{joiner} could not join it ({state}): {error}"),
            log: super::node::log_tail(&seed.spec.dir, 30),
        }
    }

    /// How warren's clients speak TLS to these nodes, when they are TLS nodes.
    pub fn tls_client(&self) -> Option<crate::amqp::TlsClient> {
        self.env.tls.clone()
    }

    /// The CA and certificates of a TLS broker.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref().map(|(files, _)| files)
    }

    /// The folder holding the nodes' data and logs.
    pub fn base_dir(&self) -> &std::path::Path {
        &self.base
    }

    /// One AMQP URI per node, in node order.
    pub fn uris(&self) -> Vec<BrokerUri> {
        self.nodes.iter().map(|n| n.spec.uri()).collect()
    }

    /// Each node's name and folder, in node order.
    pub fn specs(&self) -> Vec<NodeSpec> {
        self.nodes.iter().map(|n| n.spec.clone()).collect()
    }

    /// rabbitmqctl for this broker's nodes.
    pub fn ctl(&self) -> &Ctl {
        &self.ctl
    }

    /// The cluster as the first running node sees it.
    ///
    /// # Errors
    /// [`BrokerError::Ctl`] when no node answers.
    pub async fn status(&mut self) -> Result<ClusterStatus, BrokerError> {
        let mut last = BrokerError::NotRunning {
            node: "any node".into(),
        };
        for index in 0..self.nodes.len() {
            if !self.nodes[index].is_running() || self.nodes[index].is_paused() {
                continue;
            }
            match self.ctl.cluster_status(&self.nodes[index].spec.name).await {
                Ok(status) => return Ok(status),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn node(&mut self, index: usize) -> Result<&mut Node, BrokerError> {
        let count = self.nodes.len();
        self.nodes
            .get_mut(index)
            .ok_or(BrokerError::NoSuchNode { index, count })
    }

    /// Closes every client connection whose client-given name contains `name_part`, as a
    /// broker does when it drops a client; returns how many were closed.
    ///
    /// # Errors
    /// [`BrokerError::Ctl`] when rabbitmqctl fails.
    pub async fn close_client_connections(
        &mut self,
        name_part: &str,
        reason: &str,
    ) -> Result<usize, BrokerError> {
        let timeout = CTL_ANSWER_WITHIN;
        let (node, listing) = self
            .ctl_on_any_node(
                &[
                    "list_connections",
                    "pid",
                    "client_properties",
                    "-q",
                    "--no-table-headers",
                ],
                timeout,
            )
            .await?;
        let mut closed = 0;
        for line in listing.lines() {
            let Some((pid, properties)) = line.split_once('\t') else {
                continue;
            };
            if properties.contains(name_part) {
                self.ctl
                    .run(&node, &["close_connection", pid.trim(), reason], timeout)
                    .await?;
                closed += 1;
            }
        }
        Ok(closed)
    }

    /// Runs rabbitmqctl `args` on the first node that answers, trying the running ones
    /// (not paused, not cut off by a partition) in order; returns that node and the output.
    /// One rabbitmqctl call where a node answers: each call starts an Erlang VM, seconds
    /// on a loaded machine, and a fault waiting on it is late by that much.
    async fn ctl_on_any_node(
        &mut self,
        args: &[&str],
        timeout: Duration,
    ) -> Result<(String, String), BrokerError> {
        self.ctl_on_any_node_from(0, args, timeout).await
    }

    /// Runs rabbitmqctl on the first node that answers, trying them from node `first` on.
    async fn ctl_on_any_node_from(
        &mut self,
        first: usize,
        args: &[&str],
        timeout: Duration,
    ) -> Result<(String, String), BrokerError> {
        let mut last = BrokerError::NotRunning {
            node: "any node".into(),
        };
        let count = self.nodes.len();
        for index in (0..count).map(|i| (first + i) % count) {
            if self.cut.contains(&index)
                || !self.nodes[index].is_running()
                || self.nodes[index].is_paused()
            {
                continue;
            }
            let name = self.nodes[index].spec.name.clone();
            match self.ctl.run(&name, args, timeout).await {
                Ok(output) => return Ok((name, output)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The node leading `queue`: its leader (quorum, stream) or the node holding it (classic).
    /// The leader column is asked for alone first: a listing that also asks for `pid`
    /// came back empty from every node of a loaded cluster (five times in a row in CI)
    /// right after a `name leader` listing had named every queue. A classic queue, which
    /// has no leader column, is then found by its pid. A node under load may leave a
    /// queue out of its listing: the question is asked again, of the next node, up to
    /// [`LEADER_LOOKUPS`] times a second apart.
    ///
    /// # Errors
    /// [`BrokerError::Ctl`] when rabbitmqctl fails or no listing names the queue.
    pub async fn queue_leader(&mut self, queue: &str) -> Result<String, BrokerError> {
        const BY_LEADER: &[&str] = &["list_queues", "name", "leader", "-q", "--no-table-headers"];
        const BY_PID: &[&str] = &[
            "list_queues",
            "name",
            "leader",
            "pid",
            "-q",
            "--no-table-headers",
        ];
        let mut attempt = 0;
        loop {
            let mut last = None;
            for listing_args in [BY_LEADER, BY_PID] {
                let (node, listing) = self
                    .ctl_on_any_node_from(attempt, listing_args, CTL_ANSWER_WITHIN)
                    .await?;
                if let Some(leader) = leader_in_listing(&listing, queue) {
                    return Ok(leader);
                }
                last = Some((node, listing));
            }
            attempt += 1;
            if attempt >= LEADER_LOOKUPS {
                let (node, listing) = last.unwrap_or_default();
                return Err(BrokerError::Ctl {
                    node,
                    command: "list_queues name leader [pid]".into(),
                    output: format!(
                        "queue {queue} not listed ({LEADER_LOOKUPS} listings):\n{listing}"
                    ),
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Graceful restart; returns once the node answers AMQP again.
    ///
    /// # Errors
    /// [`BrokerError`] when the node does not come back.
    pub async fn restart(
        &mut self,
        index: usize,
        cancel: &CancellationToken,
    ) -> Result<(), BrokerError> {
        let env = self.env.clone();
        let node = self.node(index)?;
        node.stop().await;
        node.start(&env, cancel).await
    }

    /// kill -9, then (after `down_for`) start again; returns once the node answers AMQP.
    ///
    /// # Errors
    /// [`BrokerError`] when the node does not come back.
    pub async fn kill_and_start(
        &mut self,
        index: usize,
        down_for: Duration,
        cancel: &CancellationToken,
    ) -> Result<(), BrokerError> {
        self.kill(index).await?;
        tokio::select! {
            () = cancel.cancelled() => return Err(BrokerError::Interrupted),
            () = tokio::time::sleep(down_for) => {}
        }
        self.start_node(index, cancel).await
    }

    /// kill -9 of one node, which stays down.
    ///
    /// # Errors
    /// [`BrokerError::NoSuchNode`] for a bad index.
    pub async fn kill(&mut self, index: usize) -> Result<(), BrokerError> {
        self.node(index)?.kill().await;
        Ok(())
    }

    /// Graceful stop of one node, which stays down.
    ///
    /// # Errors
    /// [`BrokerError::NoSuchNode`] for a bad index.
    pub async fn stop_node(&mut self, index: usize) -> Result<(), BrokerError> {
        self.node(index)?.stop().await;
        Ok(())
    }

    /// Starts a stopped node again with its data.
    ///
    /// # Errors
    /// [`BrokerError`] when it does not answer AMQP.
    pub async fn start_node(
        &mut self,
        index: usize,
        cancel: &CancellationToken,
    ) -> Result<(), BrokerError> {
        let env = self.env.clone();
        self.node(index)?.start(&env, cancel).await
    }

    /// SIGSTOP: the node freezes with its connections open.
    ///
    /// # Errors
    /// [`BrokerError`] for a bad index or a node that is down.
    pub fn pause(&mut self, index: usize) -> Result<(), BrokerError> {
        self.node(index)?.pause()
    }

    /// SIGCONT after [`ManagedCluster::pause`].
    ///
    /// # Errors
    /// [`BrokerError`] for a bad index or a node that is down.
    pub fn resume(&mut self, index: usize) -> Result<(), BrokerError> {
        self.node(index)?.resume()
    }

    /// True when nodes can be partitioned ([`ClusterOptions::partitionable`]).
    pub fn is_partitionable(&self) -> bool {
        self.links.is_some()
    }

    /// Cuts node `index` off from the other nodes: their distribution connections close
    /// and new ones are refused, while clients and rabbitmqctl still reach it.
    ///
    /// # Errors
    /// [`BrokerError::NoSuchNode`] for a bad index; [`BrokerError::NotPartitionable`] when
    /// the cluster was not started partitionable.
    pub async fn partition(&mut self, index: usize) -> Result<(), BrokerError> {
        self.node(index)?;
        let links = self.links.as_ref().ok_or(BrokerError::NotPartitionable)?;
        links.set_cut(index, true).await;
        if !self.cut.contains(&index) {
            self.cut.push(index);
        }
        Ok(())
    }

    /// Joins node `index` to the others again after [`Self::partition`].
    ///
    /// # Errors
    /// As [`Self::partition`].
    pub async fn heal(&mut self, index: usize) -> Result<(), BrokerError> {
        self.node(index)?;
        let links = self.links.as_ref().ok_or(BrokerError::NotPartitionable)?;
        links.set_cut(index, false).await;
        self.cut.retain(|i| *i != index);
        Ok(())
    }

    /// Nodes currently cut off by [`Self::partition`].
    pub fn partitioned(&self) -> &[usize] {
        &self.cut
    }

    /// Stops every node gracefully, then epmd, and removes the folder unless kept.
    pub async fn shutdown(mut self) {
        // Healed first, so the nodes stop as one cluster.
        for index in self.cut.clone() {
            let _ = self.heal(index).await;
        }
        let stops = self.nodes.iter_mut().map(|node| node.stop());
        join_all(stops).await;
        if let Some(links) = &mut self.links {
            links.stop().await;
        }
        self.epmd.stop().await;
        self.remove_dir();
        self.done = true;
    }

    /// Leaves everything running and returns what `warren broker down` needs to stop it.
    pub fn detach(mut self) -> BrokerState {
        let state = self.state();
        for node in &mut self.nodes {
            node.detach();
        }
        self.epmd.detach();
        self.done = true;
        state
    }

    /// What the state file records about this broker.
    pub fn state(&self) -> BrokerState {
        BrokerState {
            format: 1,
            base_dir: self.base.clone(),
            keep: self.keep,
            owner_pid: std::process::id(),
            epmd_pid: self.epmd.pid,
            epmd_port: self.epmd.port,
            started_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            nodes: self
                .nodes
                .iter()
                .map(|n| NodeRecord {
                    name: n.spec.name.clone(),
                    amqp_port: n.spec.amqp_port,
                    dist_port: n.spec.dist_port,
                    pid: n.pid().unwrap_or_default(),
                    uri: n.spec.uri().redacted(),
                })
                .collect(),
            rabbitmq_root: self
                .env
                .install
                .root
                .as_ref()
                .map(|root| root.path().to_path_buf()),
            mount_point: self.mount_point.clone(),
            tls: self.tls.as_ref().map(|(files, managed)| TlsRecord {
                files: files.clone(),
                client_auth: managed.client_auth,
            }),
        }
    }

    fn remove_dir(&self) {
        remove_broker_folders(
            &self.base,
            self.keep,
            self.env.install.root.as_ref(),
            self.mount_point.as_deref(),
        );
    }
}

impl Drop for ManagedCluster {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        for node in &mut self.nodes {
            node.kill_now();
        }
        self.epmd.stop_now();
        self.remove_dir();
    }
}

/// What runs beside a managed broker's nodes: its private epmd and, for a partitionable
/// cluster, the proxies of the links between nodes.
struct Services {
    epmd: Epmd,
    links: Option<DistLinks>,
}

impl Services {
    /// Starts the epmd (`detachable`: it may outlive warren) and, for a partitionable
    /// cluster, the inter-node links; nothing is left running on error.
    async fn start(
        install: &RabbitInstall,
        ports: &Ports,
        (account, base, detachable): (Account, &std::path::Path, bool),
        specs: &[NodeSpec],
        partitionable: bool,
    ) -> Result<Self, BrokerError> {
        let mut epmd = Epmd::start(install, ports.epmd, account, base, detachable).await?;
        if !partitionable {
            return Ok(Self { epmd, links: None });
        }
        let nodes: Vec<DistNode> = specs
            .iter()
            .map(|s| DistNode {
                alive_name: s.name.split('@').next().unwrap_or_default().to_string(),
                dist_port: s.dist_port,
            })
            .collect();
        match DistLinks::start(&nodes, ports.epmd).await {
            Ok(links) => Ok(Self {
                epmd,
                links: Some(links),
            }),
            Err(e) => {
                epmd.stop().await;
                Err(BrokerError::io(
                    "make the inter-node links for partitions",
                    std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, e.to_string()),
                ))
            }
        }
    }
}

/// How warren's clients speak TLS to a TLS broker's nodes (`None` for a plain broker).
fn tls_client_of(
    tls: Option<&(TlsFiles, ManagedTls)>,
) -> Result<Option<crate::amqp::TlsClient>, BrokerError> {
    tls.map(|(files, managed)| {
        files.client(managed.client_auth).map_err(|e| {
            BrokerError::io(
                "read back the broker's TLS files",
                std::io::Error::other(e.to_string()),
            )
        })
    })
    .transpose()
}

/// How many listings [`Cluster::queue_leader`] reads before it gives up on a queue.
const LEADER_LOOKUPS: usize = 5;

/// The leader of `queue` in a `list_queues name leader [pid]` listing (tab-separated):
/// the leader column (quorum, stream), else the node of a classic queue's pid.
fn leader_in_listing(listing: &str, queue: &str) -> Option<String> {
    for line in listing.lines() {
        let columns: Vec<&str> = line.split('\t').collect();
        if columns.first() != Some(&queue) {
            continue;
        }
        if let Some(leader) = columns.get(1).filter(|l| l.contains('@')) {
            return Some(leader.trim().to_string());
        }
        // A classic queue's pid reads <node.creation.id.serial>.
        if let Some(pid) = columns.get(2) {
            let inner = pid.trim().trim_start_matches('<').trim_end_matches('>');
            let parts: Vec<&str> = inner.rsplitn(4, '.').collect();
            if let Some(node) = parts.last().filter(|n| n.contains('@')) {
                return Some(node.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::leader_in_listing;

    #[test]
    fn a_listing_gives_a_quorum_queues_leader_and_a_classic_queues_node() {
        let listing = "q-1\tb@localhost\t<b@localhost.1700000000.812.0>\n\
                       q-2\t\t<c@localhost.1700000000.77.0>\n";
        assert_eq!(
            leader_in_listing(listing, "q-1").as_deref(),
            Some("b@localhost")
        );
        assert_eq!(
            leader_in_listing(listing, "q-2").as_deref(),
            Some("c@localhost")
        );
        // A node under load may leave a queue out, or list nothing at all.
        assert_eq!(leader_in_listing(listing, "q-3"), None);
        assert_eq!(leader_in_listing("", "q-1"), None);
        // The listing without the pid column names a quorum queue's leader too.
        assert_eq!(
            leader_in_listing("q-1\tb@localhost\n", "q-1").as_deref(),
            Some("b@localhost")
        );
    }
}
