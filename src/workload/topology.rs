//! The run's queue (and exchange): named per run, declared by every task when it
//! (re)connects (a non-durable queue does not survive a broker restart), deleted at the end
//! unless the scenario keeps it.

use crate::amqp::{AmqpChannel, Failure, QueueSpec};
use crate::scenario::{ExchangeKind, Plan, QueueArgument, QueueType};

/// What is declared on the broker.
#[derive(Debug, Clone)]
pub struct Topology {
    pub queue: QueueSpec,
    /// "" is the default exchange.
    pub exchange: String,
    pub exchange_kind: ExchangeKind,
    pub exchange_durable: bool,
    pub routing_key: String,
    /// Leave queue (and exchange) on the broker after the run.
    pub keep: bool,
    /// Where the queue dead-letters, when warren reads its dead letters.
    pub dead_letters: Option<DeadLetters>,
}

/// The run's dead-letter exchange (fanout) and the queue bound to it, both named after
/// the run's queue.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    pub exchange: String,
    pub queue: QueueSpec,
}

impl DeadLetters {
    /// Declares the queue, the exchange and the binding.
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn declare(&self, channel: &AmqpChannel) -> Result<(), Failure> {
        channel.declare_queue(&self.queue).await?;
        channel
            .declare_exchange_and_bind(
                &self.exchange,
                ExchangeKind::Fanout,
                self.queue.durable,
                &self.queue.name,
                "",
            )
            .await
    }
}

impl Topology {
    /// The topology of `plan` for run `run_id`: the queue is named after the scenario and
    /// run unless the scenario names it.
    pub fn from_plan(plan: &Plan, run_id: u64) -> Self {
        let t = &plan.topology;
        let name = t
            .queue_name
            .clone()
            .unwrap_or_else(|| format!("warren-{}-{:08x}", plan.name, run_id as u32));
        let dead_letters = t.dead_letter.then(|| DeadLetters {
            exchange: format!("{name}.dead-letters"),
            // Replicated like the queue it serves: a quorum queue's dead letters must
            // survive the loss of the node a classic queue would live on.
            queue: QueueSpec {
                name: format!("{name}.dead-letters"),
                queue_type: if t.queue_type == QueueType::Quorum {
                    QueueType::Quorum
                } else {
                    QueueType::Classic
                },
                durable: t.durable,
                arguments: Default::default(),
            },
        });
        let mut arguments = t.arguments.clone();
        if let Some(dead) = &dead_letters {
            arguments.insert(
                "x-dead-letter-exchange".into(),
                QueueArgument::Text(dead.exchange.clone()),
            );
        }
        Self {
            routing_key: t.routing_key.clone().unwrap_or_else(|| name.clone()),
            queue: QueueSpec {
                name,
                queue_type: t.queue_type,
                durable: t.durable,
                arguments,
            },
            dead_letters,
            exchange: t.exchange.clone(),
            exchange_kind: t.exchange_kind,
            exchange_durable: t.exchange_durable,
            keep: t.keep,
        }
    }

    /// Declares the queue and, for a named exchange, the exchange and the binding.
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn declare(&self, channel: &AmqpChannel) -> Result<(), Failure> {
        channel.declare_queue(&self.queue).await?;
        if !self.exchange.is_empty() {
            channel
                .declare_exchange_and_bind(
                    &self.exchange,
                    self.exchange_kind,
                    self.exchange_durable,
                    &self.queue.name,
                    &self.routing_key,
                )
                .await?;
        }
        Ok(())
    }

    /// Declares everything: the dead-letter exchange and queue first (so nothing is
    /// dead-lettered before they exist), then what [`Self::declare`] does. Publishers and
    /// consumers only declare their queue: the dead-letter queue is the bookkeeping's,
    /// and a failure to declare it (its node down) must not stop them.
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn declare_all(&self, channel: &AmqpChannel) -> Result<(), Failure> {
        if let Some(dead) = &self.dead_letters {
            dead.declare(channel).await?;
        }
        self.declare(channel).await
    }

    /// Deletes what `declare` made, unless kept; returns the messages left in the queue.
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn delete(&self, channel: &AmqpChannel) -> Result<Option<u32>, Failure> {
        if self.keep {
            return Ok(None);
        }
        let left = channel.delete_queue(&self.queue.name).await?;
        if !self.exchange.is_empty() {
            channel.delete_exchange(&self.exchange).await?;
        }
        if let Some(dead) = &self.dead_letters {
            channel.delete_queue(&dead.queue.name).await?;
            channel.delete_exchange(&dead.exchange).await?;
        }
        Ok(Some(left))
    }
}
