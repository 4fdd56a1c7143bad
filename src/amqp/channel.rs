//! Channels: topology, confirmed publishing, consuming and acknowledging, with every
//! client error classified into what the caller must do about it.

use std::collections::BTreeMap;

use futures_util::{Stream, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, ErrorKind, ExchangeKind};

use crate::redact::redact;
use crate::scenario::{ExchangeKind as PlanExchangeKind, QueueArgument, QueueType};

/// How long a polite close may wait for the broker's answer.
pub const CLOSE_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs a channel or connection operation that must answer within `limit`: a broker that
/// is silent (paused, or behind a network that drops bytes) counts as a lost connection.
///
/// # Errors
/// The operation's own [`Failure`], or `ConnectionLost` when it did not answer in time.
pub async fn within<T>(
    limit: std::time::Duration,
    what: &str,
    operation: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, operation).await {
        Ok(result) => result,
        Err(_) => Err(Failure {
            kind: FailureKind::ConnectionLost,
            message: format!("no answer to {what} within {} s", limit.as_secs()),
        }),
    }
}

/// What a failure means for the task that saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The connection is gone (I/O error, missed heartbeats, closed by the broker): reconnect.
    ConnectionLost,
    /// Only the channel is gone (a channel error): open another on the same connection.
    ChannelClosed,
    /// The broker refused an operation for good (wrong arguments, access): do not retry.
    Refused,
}

/// A classified client error, with credentials redacted from its message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl From<lapin::Error> for Failure {
    fn from(error: lapin::Error) -> Self {
        let kind = match error.kind() {
            ErrorKind::ProtocolError(amqp) => {
                let code = amqp.get_id();
                if error.is_amqp_hard_error() || code == 320 {
                    FailureKind::ConnectionLost
                } else if (403..=406).contains(&code) {
                    FailureKind::Refused
                } else {
                    FailureKind::ChannelClosed
                }
            }
            ErrorKind::InvalidChannelState(..)
            | ErrorKind::InvalidChannel(_)
            | ErrorKind::ChannelsLimitReached => FailureKind::ChannelClosed,
            ErrorKind::AuthProviderError(_) => FailureKind::Refused,
            _ => FailureKind::ConnectionLost,
        };
        Failure {
            kind,
            message: redact(&error.to_string()),
        }
    }
}

/// How the broker answered one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    /// basic.ack.
    Acked,
    /// basic.nack.
    Nacked,
    /// basic.return (unroutable, mandatory), followed by the given ack (true) or nack.
    Returned { acked: bool },
    /// Handed to the connection; confirms are off, so no answer will come.
    Sent,
}

/// Where and how every message of a publisher goes.
#[derive(Debug, Clone)]
pub struct PublishTarget {
    exchange: ShortString,
    routing_key: ShortString,
    mandatory: bool,
    properties: BasicProperties,
}

impl PublishTarget {
    /// Publishes to `exchange` with `routing_key`; `persistent` sets delivery mode 2.
    pub fn new(exchange: &str, routing_key: &str, mandatory: bool, persistent: bool) -> Self {
        let properties = if persistent {
            BasicProperties::default().with_delivery_mode(2)
        } else {
            BasicProperties::default()
        };
        Self {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            mandatory,
            properties,
        }
    }
}

/// The queue a run declares.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: String,
    pub queue_type: QueueType,
    pub durable: bool,
    pub arguments: BTreeMap<String, QueueArgument>,
}

/// One delivered message.
#[derive(Debug)]
pub struct Delivery {
    pub tag: u64,
    pub redelivered: bool,
    pub body: Vec<u8>,
    /// Its offset in a stream queue (the `x-stream-offset` header); `None` elsewhere.
    pub stream_offset: Option<u64>,
}

/// Where a consumer of a stream queue starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    /// The oldest message the stream still holds.
    First,
    /// A given offset: the one after the last message already read, when resuming.
    Offset(u64),
}

/// The `x-stream-offset` header of a delivery from a stream queue.
fn stream_offset(properties: &BasicProperties) -> Option<u64> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get("x-stream-offset")? {
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongUInt(v) => Some(u64::from(*v)),
        AMQPValue::LongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::Timestamp(v) => Some(*v),
        _ => None,
    }
}

/// A consumer's deliveries, as a stream; it ends when the consumer is cancelled.
pub struct Deliveries {
    inner: lapin::Consumer,
}

impl Stream for Deliveries {
    type Item = Result<Delivery, Failure>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx).map(|item| {
            item.map(|result| {
                result
                    .map(|d| Delivery {
                        tag: d.delivery_tag,
                        redelivered: d.redelivered,
                        stream_offset: stream_offset(&d.properties),
                        body: d.data,
                    })
                    .map_err(Failure::from)
            })
        })
    }
}

/// A channel.
#[derive(Clone)]
pub struct AmqpChannel {
    inner: Channel,
}

impl AmqpChannel {
    pub(super) fn new(inner: Channel) -> Self {
        Self { inner }
    }

    /// Turns publisher confirms on.
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn confirm_select(&self) -> Result<(), Failure> {
        Ok(self
            .inner
            .confirm_select(ConfirmSelectOptions::default())
            .await?)
    }

    /// Limits unacknowledged deliveries on this channel (0 = unlimited).
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn qos(&self, prefetch: u16) -> Result<(), Failure> {
        Ok(self
            .inner
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?)
    }

    /// Declares the queue (idempotent with the same arguments); returns its ready message count.
    ///
    /// # Errors
    /// A classified [`Failure`]; different arguments than an existing queue's are `Refused`.
    pub async fn declare_queue(&self, spec: &QueueSpec) -> Result<u32, Failure> {
        let mut arguments = FieldTable::default();
        let type_name = match spec.queue_type {
            QueueType::Classic => None,
            QueueType::Quorum => Some("quorum"),
            QueueType::Stream => Some("stream"),
        };
        if let Some(name) = type_name {
            arguments.insert("x-queue-type".into(), AMQPValue::LongString(name.into()));
        }
        for (key, value) in &spec.arguments {
            let value = match value {
                QueueArgument::Bool(b) => AMQPValue::Boolean(*b),
                QueueArgument::Int(i) => AMQPValue::LongLongInt(*i),
                QueueArgument::Float(f) => AMQPValue::Double(*f),
                QueueArgument::Text(s) => {
                    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
                }
            };
            arguments.insert(key.as_str().into(), value);
        }
        let options = QueueDeclareOptions {
            durable: spec.durable,
            ..QueueDeclareOptions::default()
        };
        let queue = self
            .inner
            .queue_declare(spec.name.as_str().into(), options, arguments)
            .await?;
        Ok(queue.message_count())
    }

    /// Ready messages in an existing queue (a passive declare).
    ///
    /// # Errors
    /// A classified [`Failure`]; a missing queue is `Refused` (and closes the channel).
    pub async fn ready_messages(&self, queue: &str) -> Result<u32, Failure> {
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let queue = self
            .inner
            .queue_declare(queue.into(), options, FieldTable::default())
            .await?;
        Ok(queue.message_count())
    }

    /// Declares an exchange and binds the queue to it with `routing_key`.
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn declare_exchange_and_bind(
        &self,
        exchange: &str,
        kind: PlanExchangeKind,
        durable: bool,
        queue: &str,
        routing_key: &str,
    ) -> Result<(), Failure> {
        let kind = match kind {
            PlanExchangeKind::Direct => ExchangeKind::Direct,
            PlanExchangeKind::Fanout => ExchangeKind::Fanout,
            PlanExchangeKind::Topic => ExchangeKind::Topic,
            PlanExchangeKind::Headers => ExchangeKind::Headers,
        };
        let options = ExchangeDeclareOptions {
            durable,
            ..ExchangeDeclareOptions::default()
        };
        self.inner
            .exchange_declare(exchange.into(), kind, options, FieldTable::default())
            .await?;
        self.inner
            .queue_bind(
                queue.into(),
                exchange.into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }

    /// Deletes a queue; returns how many messages it still held.
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn delete_queue(&self, queue: &str) -> Result<u32, Failure> {
        Ok(self
            .inner
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await?)
    }

    /// Deletes an exchange.
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn delete_exchange(&self, exchange: &str) -> Result<(), Failure> {
        Ok(self
            .inner
            .exchange_delete(
                exchange.into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await?)
    }

    /// Publishes one message and waits for the broker's answer (or, without confirms, for
    /// the message to be handed to the connection). Many of these futures may be in flight
    /// at once; they send in the order they are first polled.
    ///
    /// # Errors
    /// A classified [`Failure`] when the channel or connection fails first.
    pub async fn publish(
        &self,
        target: &PublishTarget,
        body: &[u8],
    ) -> Result<PublishOutcome, Failure> {
        let options = BasicPublishOptions {
            mandatory: target.mandatory,
            immediate: false,
        };
        let confirm = self
            .inner
            .basic_publish(
                target.exchange.clone(),
                target.routing_key.clone(),
                options,
                body,
                target.properties.clone(),
            )
            .await?;
        Ok(match confirm.await? {
            Confirmation::Ack(None) => PublishOutcome::Acked,
            Confirmation::Nack(None) => PublishOutcome::Nacked,
            Confirmation::Ack(Some(_)) => PublishOutcome::Returned { acked: true },
            Confirmation::Nack(Some(_)) => PublishOutcome::Returned { acked: false },
            Confirmation::NotRequested => PublishOutcome::Sent,
        })
    }

    /// Bodies of messages the broker returned (basic.return) that no confirm carried:
    /// with confirms off, this is the only way to see them.
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn take_returned(&self) -> Result<Vec<Vec<u8>>, Failure> {
        let returned = self.inner.wait_for_confirms().await?;
        Ok(returned.into_iter().map(|m| m.delivery.data).collect())
    }

    /// Starts consuming; `no_ack` is automatic acknowledgement (at-most-once); `from` is
    /// where a consumer of a stream queue starts reading (`None` for other queues).
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn consume(
        &self,
        queue: &str,
        tag: &str,
        no_ack: bool,
        from: Option<StreamStart>,
    ) -> Result<Deliveries, Failure> {
        let options = BasicConsumeOptions {
            no_ack,
            ..BasicConsumeOptions::default()
        };
        let mut arguments = FieldTable::default();
        match from {
            None => {}
            Some(StreamStart::First) => {
                arguments.insert(
                    "x-stream-offset".into(),
                    AMQPValue::LongString("first".into()),
                );
            }
            Some(StreamStart::Offset(offset)) => {
                let offset = i64::try_from(offset).unwrap_or(i64::MAX);
                arguments.insert("x-stream-offset".into(), AMQPValue::LongLongInt(offset));
            }
        }
        let inner = self
            .inner
            .basic_consume(queue.into(), tag.into(), options, arguments)
            .await?;
        Ok(Deliveries { inner })
    }

    /// Acknowledges `tag` (and, with `multiple`, every earlier unacknowledged delivery).
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn ack(&self, tag: u64, multiple: bool) -> Result<(), Failure> {
        Ok(self
            .inner
            .basic_ack(tag, BasicAckOptions { multiple })
            .await?)
    }

    /// True while the channel is usable.
    pub fn is_open(&self) -> bool {
        self.inner.status().connected()
    }

    /// Closes the channel; errors are ignored, and a broker that does not answer within
    /// [`CLOSE_WITHIN`] is not waited for. Unacknowledged deliveries go back to the queue.
    pub async fn close(&self) {
        let _ = tokio::time::timeout(CLOSE_WITHIN, self.inner.close(200, "warren".into())).await;
    }
}
