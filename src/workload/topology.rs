//! The run's queues (and exchange): named per run, declared by every task when it
//! (re)connects (a non-durable queue does not survive a broker restart), deleted at the end
//! unless the scenario keeps them.

use crate::amqp::{AmqpChannel, Failure, QueueSpec};
use crate::scenario::routing::{Routes, queue_names};
use crate::scenario::short_strings::DEAD_LETTERS_SUFFIX;
use crate::scenario::{ExchangeKind, Plan, QueueArgument, QueueType};

/// What is declared on the broker.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The run's queues, made from the scenario's template: consumer j reads queue
    /// j mod N, publisher i publishes with the routing key of slot i mod N.
    pub queues: Vec<QueueSpec>,
    /// Bindings, routing keys and where each key goes.
    pub routes: Routes,
    /// "" is the default exchange.
    pub exchange: String,
    pub exchange_kind: ExchangeKind,
    pub exchange_durable: bool,
    /// Leave queues (and exchange) on the broker after the run.
    pub keep: bool,
    /// Where the queues dead-letter, when warren reads their dead letters.
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
    /// The topology of `plan` for run `run_id`: queues are named after the scenario and
    /// run unless the scenario names them.
    pub fn from_plan(plan: &Plan, run_id: u64) -> Self {
        let t = &plan.topology;
        let base = t
            .queue_name
            .clone()
            .unwrap_or_else(|| format!("warren-{}-{:08x}", plan.name, run_id as u32));
        let dead_letters = t.dead_letter.then(|| DeadLetters {
            exchange: format!("{base}{DEAD_LETTERS_SUFFIX}"),
            // Replicated like the queues it serves: a quorum queue's dead letters must
            // survive the loss of the node a classic queue would live on.
            queue: QueueSpec {
                name: format!("{base}{DEAD_LETTERS_SUFFIX}"),
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
        let names = queue_names(&base, t.queues);
        let routes = Routes::new(t, &names);
        Self {
            queues: names
                .into_iter()
                .map(|name| QueueSpec {
                    name,
                    queue_type: t.queue_type,
                    durable: t.durable,
                    arguments: arguments.clone(),
                })
                .collect(),
            routes,
            dead_letters,
            exchange: t.exchange.clone(),
            exchange_kind: t.exchange_kind,
            exchange_durable: t.exchange_durable,
            keep: t.keep,
        }
    }

    /// The queue consumer `consumer` reads.
    pub fn queue_of_consumer(&self, consumer: u32) -> u32 {
        consumer % self.queues.len().max(1) as u32
    }

    /// The queue publisher `producer` is paired with (round robin): the one it declares,
    /// and the one its routing key names unless the exchange routes otherwise.
    pub fn queue_of_publisher(&self, producer: u32) -> u32 {
        self.routes.slot(producer) as u32
    }

    /// The routing key of publisher `producer`.
    pub fn routing_key(&self, producer: u32) -> &str {
        &self.routes.routing_keys[self.routes.slot(producer)]
    }

    /// The queue named `name`, if it is one of the run's.
    pub fn queue_index(&self, name: &str) -> Option<u32> {
        self.queues
            .iter()
            .position(|q| q.name == name)
            .map(|i| i as u32)
    }

    /// Declares queue `queue` and, for a named exchange, the exchange and the queue's
    /// bindings.
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn declare(&self, channel: &AmqpChannel, queue: u32) -> Result<(), Failure> {
        let spec = &self.queues[queue as usize];
        channel.declare_queue(spec).await?;
        if !self.exchange.is_empty() {
            for key in &self.routes.bindings[queue as usize] {
                channel
                    .declare_exchange_and_bind(
                        &self.exchange,
                        self.exchange_kind,
                        self.exchange_durable,
                        &spec.name,
                        key,
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Declares the dead-letter exchange and queue first (so nothing is dead-lettered
    /// before they exist), then, for each of `queues`, what [`Self::declare`] does.
    /// Publishers and consumers only declare their own queue: the dead-letter queue is
    /// the bookkeeping's, and a failure to declare it (its node down) must not stop them.
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn declare_all(
        &self,
        channel: &AmqpChannel,
        queues: impl IntoIterator<Item = u32>,
    ) -> Result<(), Failure> {
        if let Some(dead) = &self.dead_letters {
            dead.declare(channel).await?;
        }
        for queue in queues {
            self.declare(channel, queue).await?;
        }
        Ok(())
    }

    /// Deletes what the declarations made, unless kept; returns the messages left in each
    /// queue.
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn delete(&self, channel: &AmqpChannel) -> Result<Option<Vec<u32>>, Failure> {
        if self.keep {
            return Ok(None);
        }
        let mut left = Vec::with_capacity(self.queues.len());
        for queue in &self.queues {
            left.push(channel.delete_queue(&queue.name).await?);
        }
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
