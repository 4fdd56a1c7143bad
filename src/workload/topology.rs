//! The run's queue (and exchange): named per run, declared by every task when it
//! (re)connects (a non-durable queue does not survive a broker restart), deleted at the end
//! unless the scenario keeps it.

use crate::amqp::{AmqpChannel, Failure, QueueSpec};
use crate::scenario::{ExchangeKind, Plan};

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
        Self {
            routing_key: t.routing_key.clone().unwrap_or_else(|| name.clone()),
            queue: QueueSpec {
                name,
                queue_type: t.queue_type,
                durable: t.durable,
                arguments: t.arguments.clone(),
            },
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
        Ok(Some(left))
    }
}
