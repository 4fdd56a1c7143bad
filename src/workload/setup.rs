//! The coordinator's own channel: it declares the topology at the start, checks the queue
//! while draining and deletes the topology at the end, reopening itself after a fault.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::WorkloadError;
use super::link::Link;
use super::topology::Topology;
use crate::amqp::Endpoints;
use crate::amqp::{AmqpChannel, Failure, FailureKind, within};
use crate::events::{EventKind, EventLog};
use crate::scenario::Plan;

/// The coordinator's own channel: declares the topology, checks the queue while draining,
/// deletes the topology at the end. A fault may close it mid-run (a broker restart, a
/// dropped network): it is opened again, on a new connection if need be, when next used.
pub(crate) struct SetupChannel {
    link: Arc<Link>,
    cancel: CancellationToken,
    current: tokio::sync::Mutex<Option<AmqpChannel>>,
}

impl SetupChannel {
    /// How long getting a usable channel may take before the caller's step is skipped.
    const REOPEN_WITHIN: Duration = Duration::from_secs(10);

    /// An open channel: the current one, or a new one.
    ///
    /// # Errors
    /// No connection or channel within [`Self::REOPEN_WITHIN`], or the run was interrupted.
    pub async fn channel(&self) -> Result<AmqpChannel, Failure> {
        let mut current = self.current.lock().await;
        if let Some(channel) = current.as_ref().filter(|c| c.is_open()) {
            return Ok(channel.clone());
        }
        let channel = within(Self::REOPEN_WITHIN, "reopening the setup channel", async {
            let leased = self
                .link
                .lease(None, &self.cancel)
                .await
                .ok_or_else(|| Failure {
                    kind: FailureKind::ConnectionLost,
                    message: "interrupted".into(),
                })?;
            leased.connection.open_channel().await
        })
        .await?;
        *current = Some(channel.clone());
        Ok(channel)
    }

    /// Ready messages in `queue`.
    ///
    /// # Errors
    /// As [`Self::channel`], or the broker's answer to a passive declare.
    pub async fn ready_messages(&self, queue: &str) -> Result<u32, Failure> {
        self.channel().await?.ready_messages(queue).await
    }

    /// Closes the channel and its connection.
    pub(super) async fn close(&self) {
        if let Some(channel) = self.current.lock().await.take() {
            channel.close().await;
        }
        self.link.close().await;
    }
}

/// Opens the coordinator's channel on `link` and declares the topology. With several
/// broker nodes, queue q is declared over a connection to node q mod nodes (`node_link`
/// makes one), so that its leader is placed there (RabbitMQ places a new queue's leader
/// on the node the declaring client is connected to unless a locator says otherwise):
/// queues are spread over the cluster, and [`home_node`] says where each one leads.
/// Opens the coordinator's channel and declares the topology (see [`open_setup`]).
///
/// # Errors
/// As [`open_setup`].
pub(super) async fn declare(
    plan: &Plan,
    uris: &Arc<Endpoints>,
    topology: &Topology,
    events: &EventLog,
    cancel: &CancellationToken,
) -> Result<SetupChannel, WorkloadError> {
    let link = |node: usize, name: String| {
        Link::new(
            name,
            uris.clone(),
            node,
            plan.publishers.heartbeat,
            events.clone(),
        )
    };
    open_setup(
        Arc::new(link(0, format!("warren {} setup", plan.name))),
        uris.len(),
        |node| link(node, format!("warren {} setup {node}", plan.name)),
        topology,
        cancel,
    )
    .await
}

/// A setup channel for a worker that does not declare the topology (another worker
/// does): it only checks the queues while draining. Opened when first used.
pub(super) fn attach(
    plan: &Plan,
    uris: &Arc<Endpoints>,
    events: &EventLog,
    cancel: &CancellationToken,
) -> SetupChannel {
    SetupChannel {
        link: Arc::new(Link::new(
            format!("warren {} setup", plan.name),
            uris.clone(),
            0,
            plan.publishers.heartbeat,
            events.clone(),
        )),
        cancel: cancel.clone(),
        current: tokio::sync::Mutex::new(None),
    }
}

/// Deletes the topology (unless kept) and closes the channel; returns the messages left
/// in each queue, when known. A failure is recorded, not raised: the run's results stand.
pub(super) async fn teardown(
    setup: &SetupChannel,
    topology: &Topology,
    events: &EventLog,
) -> Option<Vec<u32>> {
    let deleted = within(Duration::from_secs(20), "queue.delete", async {
        topology.delete(&setup.channel().await?).await
    })
    .await;
    let left = match deleted {
        Ok(left) => left,
        Err(failure) => {
            let names: Vec<&str> = topology.queues.iter().map(|q| q.name.as_str()).collect();
            events.record(
                "workload",
                EventKind::ChannelClosed,
                format!("could not delete queue(s) {}: {failure}", names.join(", ")),
            );
            None
        }
    };
    setup.close().await;
    left
}

async fn open_setup(
    link: Arc<Link>,
    nodes: usize,
    node_link: impl Fn(usize) -> Link,
    topology: &Topology,
    cancel: &CancellationToken,
) -> Result<SetupChannel, WorkloadError> {
    let queue_count = topology.queues.len() as u32;
    let homed = |node: usize| (0..queue_count).filter(move |&q| home_node(q, nodes) == node);
    let failed = |node: usize| {
        move |failure: Failure| WorkloadError::Topology {
            queue: names(topology, homed(node)),
            failure,
        }
    };
    let leased = link
        .lease(None, cancel)
        .await
        .ok_or(WorkloadError::Interrupted)?;
    let channel = within(
        Duration::from_secs(30),
        "opening the setup channel",
        leased.connection.open_channel(),
    )
    .await
    .map_err(failed(0))?;
    within(
        Duration::from_secs(30),
        "declaring the topology",
        topology.declare_all(&channel, homed(0)),
    )
    .await
    .map_err(failed(0))?;
    for node in 1..nodes.min(topology.queues.len()) {
        let other = node_link(node);
        let declared = async {
            let leased = other.lease(None, cancel).await.ok_or(Failure {
                kind: FailureKind::ConnectionLost,
                message: "interrupted".into(),
            })?;
            let channel = leased.connection.open_channel().await?;
            for queue in homed(node) {
                topology.declare(&channel, queue).await?;
            }
            channel.close().await;
            Ok(())
        };
        let result = within(Duration::from_secs(30), "declaring the topology", declared).await;
        other.close().await;
        if cancel.is_cancelled() {
            return Err(WorkloadError::Interrupted);
        }
        result.map_err(failed(node))?;
    }
    Ok(SetupChannel {
        link,
        cancel: cancel.clone(),
        current: tokio::sync::Mutex::new(Some(channel)),
    })
}

/// The node (index into the broker URIs) queue `queue` is placed on, of `nodes`.
pub(super) fn home_node(queue: u32, nodes: usize) -> usize {
    queue as usize % nodes.max(1)
}

/// The names of `queues`, shortened past a few.
fn names(topology: &Topology, queues: impl Iterator<Item = u32>) -> String {
    let names: Vec<&str> = queues
        .map(|q| topology.queues[q as usize].name.as_str())
        .collect();
    match names.as_slice() {
        [] => topology
            .dead_letters
            .as_ref()
            .map_or_else(String::new, |d| d.queue.name.clone()),
        [one] => (*one).to_string(),
        [first, .., last] => format!("{first} … {last} ({} queues)", names.len()),
    }
}
