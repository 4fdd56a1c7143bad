//! The coordinator's own channel: it declares the topology at the start, checks the queue
//! while draining and deletes the topology at the end, reopening itself after a fault.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::WorkloadError;
use super::link::Link;
use super::topology::Topology;
use crate::amqp::{AmqpChannel, Failure, FailureKind, within};

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

pub(super) async fn open_setup(
    link: Arc<Link>,
    topology: &Topology,
    cancel: &CancellationToken,
) -> Result<SetupChannel, WorkloadError> {
    let failed = |failure: Failure| WorkloadError::Topology {
        queue: topology.queue.name.clone(),
        failure,
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
    .map_err(failed)?;
    within(
        Duration::from_secs(30),
        "declaring the topology",
        topology.declare_all(&channel),
    )
    .await
    .map_err(failed)?;
    Ok(SetupChannel {
        link,
        cancel: cancel.clone(),
        current: tokio::sync::Mutex::new(Some(channel)),
    })
}
