//! Channels: topology, confirmed publishing, consuming and acknowledging, with every
//! client error classified into what the caller must do about it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::Stream;
use tokio::sync::mpsc::UnboundedReceiver;
use warren_amqp::callbacks::ChannelCallback;
use warren_amqp::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicPublishArguments, BasicQosArguments,
    BasicRejectArguments, Channel, ConfirmSelectArguments, ConsumerMessage,
    ExchangeDeclareArguments, ExchangeDeleteArguments, QueueBindArguments, QueueDeclareArguments,
    QueueDeleteArguments, QueueUnbindArguments,
};
use warren_amqp::{
    Ack, BasicProperties, Cancel, CloseChannel, FieldTable, FieldValue, Nack, Return,
};

use super::confirms::{Answer, Confirms};
use super::failure::{CLOSE_WITHIN, ConnectionState, EndReason, Failure};
use crate::scenario::{ExchangeKind as PlanExchangeKind, QueueArgument, QueueType};

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
    arguments: BasicPublishArguments,
    properties: BasicProperties,
}

impl PublishTarget {
    /// Publishes to `exchange` with `routing_key`; `persistent` sets delivery mode 2.
    pub fn new(exchange: &str, routing_key: &str, mandatory: bool, persistent: bool) -> Self {
        let mut properties = BasicProperties::default();
        if persistent {
            properties.with_persistence(true);
        }
        Self {
            arguments: BasicPublishArguments::new(exchange, routing_key)
                .mandatory(mandatory)
                .finish(),
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

/// What a passive declare tells of a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStatus {
    /// Messages ready for delivery (not those delivered and unacknowledged).
    pub ready: u32,
    /// Consumers subscribed to it.
    pub consumers: u32,
}

/// One delivered message.
#[derive(Debug)]
pub struct Delivery {
    pub tag: u64,
    pub redelivered: bool,
    pub body: Vec<u8>,
    /// Its offset in a stream queue (the `x-stream-offset` header); `None` elsewhere.
    pub stream_offset: Option<u64>,
    /// Why it was dead-lettered the last time (the `reason` of the first `x-death`
    /// entry: `maxlen`, `expired`, `rejected`, `delivery_limit`); read only by a
    /// consumer of dead letters.
    pub death_reason: Option<String>,
    /// The queue it was dead-lettered from the last time (the `queue` of that entry).
    pub death_queue: Option<String>,
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
fn stream_offset(properties: Option<&BasicProperties>) -> Option<u64> {
    let headers = properties?.headers()?;
    match headers.get(&"x-stream-offset".try_into().ok()?)? {
        FieldValue::l(v) => u64::try_from(*v).ok(),
        FieldValue::i(v) => Some(u64::from(*v)),
        FieldValue::I(v) => u64::try_from(*v).ok(),
        FieldValue::T(v) => Some(*v),
        _ => None,
    }
}

/// The reason and queue of the latest dead-lettering: the first table of the `x-death`
/// header.
fn death(properties: Option<&BasicProperties>) -> (Option<String>, Option<String>) {
    let latest = || {
        let headers = properties?.headers()?;
        let FieldValue::A(deaths) = headers.get(&"x-death".try_into().ok()?)? else {
            return None;
        };
        let deaths: Vec<FieldValue> = deaths.clone().into();
        match deaths.into_iter().next() {
            Some(FieldValue::F(latest)) => Some(latest),
            _ => None,
        }
    };
    let Some(latest) = latest() else {
        return (None, None);
    };
    let text = |key: &str| match latest.get(&key.try_into().ok()?)? {
        FieldValue::S(text) => Some(text.to_string()),
        _ => None,
    };
    (text("reason"), text("queue"))
}

/// What a channel shares with the client's callbacks for it.
#[derive(Debug)]
struct ChannelState {
    /// Publishes waiting for the broker's confirm, and returned bodies.
    confirms: Mutex<Confirms>,
    /// Publisher confirms are on.
    confirming: AtomicBool,
    /// Why the broker closed the channel, once it has.
    ended: EndReason,
    /// The broker cancelled the consumer on this channel (basic.cancel).
    cancelled: AtomicBool,
    /// The connection the channel is on.
    connection: Arc<ConnectionState>,
}

impl ChannelState {
    fn confirms(&self) -> std::sync::MutexGuard<'_, Confirms> {
        self.confirms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The client's callbacks for one channel: they record confirms, returns, cancellations
/// and the broker's close. The client drops them when the channel ends, for whatever
/// reason; every publish still waiting then learns that no answer is coming.
struct ChannelEvents(Arc<ChannelState>);

impl Drop for ChannelEvents {
    fn drop(&mut self) {
        self.0.confirms().abandon_all();
    }
}

#[async_trait::async_trait]
impl ChannelCallback for ChannelEvents {
    async fn close(
        &mut self,
        _channel: &Channel,
        close: CloseChannel,
    ) -> Result<(), warren_amqp::error::Error> {
        self.0.ended.record(Failure::from_channel_close(
            close.reply_code(),
            close.reply_text(),
        ));
        Ok(())
    }

    async fn cancel(
        &mut self,
        _channel: &Channel,
        _cancel: Cancel,
    ) -> Result<(), warren_amqp::error::Error> {
        self.0.cancelled.store(true, Ordering::Release);
        Ok(())
    }

    async fn flow(
        &mut self,
        _channel: &Channel,
        active: bool,
    ) -> Result<bool, warren_amqp::error::Error> {
        Ok(active)
    }

    async fn publish_ack(&mut self, _channel: &Channel, ack: Ack) {
        self.0
            .confirms()
            .answer(ack.delivery_tag(), ack.mutiple(), Answer::Ack);
    }

    async fn publish_nack(&mut self, _channel: &Channel, nack: Nack) {
        self.0
            .confirms()
            .answer(nack.delivery_tag(), nack.multiple(), Answer::Nack);
    }

    async fn publish_return(
        &mut self,
        _channel: &Channel,
        _ret: Return,
        _properties: BasicProperties,
        content: Vec<u8>,
    ) {
        self.0.confirms().returned(content);
    }
}

/// A consumer's deliveries, as a stream. It ends after the broker cancels the consumer;
/// when the channel or connection fails, the failure comes first.
pub struct Deliveries {
    inner: UnboundedReceiver<ConsumerMessage>,
    channel: AmqpChannel,
    ended: bool,
    /// Read each delivery's `x-death` reason (dead letters only: it costs a header lookup).
    death_reasons: bool,
}

impl Stream for Deliveries {
    type Item = Result<Delivery, Failure>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if self.ended {
            return std::task::Poll::Ready(None);
        }
        self.inner.poll_recv(cx).map(|message| match message {
            Some(message) => {
                let deliver = message.deliver;
                let (death_reason, death_queue) = if self.death_reasons {
                    death(message.basic_properties.as_ref())
                } else {
                    (None, None)
                };
                Some(Ok(Delivery {
                    tag: deliver.as_ref().map_or(0, |d| d.delivery_tag()),
                    redelivered: deliver.as_ref().is_some_and(|d| d.redelivered()),
                    stream_offset: stream_offset(message.basic_properties.as_ref()),
                    death_reason,
                    death_queue,
                    body: message.content.unwrap_or_default(),
                }))
            }
            None => {
                self.ended = true;
                if self.channel.state.cancelled.load(Ordering::Acquire) {
                    None
                } else {
                    Some(Err(self.channel.why_ended()))
                }
            }
        })
    }
}

/// A channel.
#[derive(Clone)]
pub struct AmqpChannel {
    inner: Channel,
    state: Arc<ChannelState>,
}

impl AmqpChannel {
    /// Wraps a freshly opened channel and registers the callbacks that track it.
    pub(super) async fn open(
        inner: Channel,
        connection: Arc<ConnectionState>,
    ) -> Result<Self, Failure> {
        let state = Arc::new(ChannelState {
            confirms: Mutex::new(Confirms::default()),
            confirming: AtomicBool::new(false),
            ended: EndReason::default(),
            cancelled: AtomicBool::new(false),
            connection,
        });
        let channel = Self { inner, state };
        channel
            .inner
            .register_callback(ChannelEvents(channel.state.clone()))
            .await
            .map_err(|e| channel.failure(&e))?;
        Ok(channel)
    }

    /// Why the channel cannot be used now, if it cannot: checked before each operation,
    /// since the client would write frames to a channel the broker has closed (which the
    /// broker answers by closing the whole connection).
    fn usable(&self) -> Result<(), Failure> {
        if self.is_open() {
            Ok(())
        } else {
            Err(self.why_ended())
        }
    }

    /// Why the channel ended: the broker's channel or connection close when it sent one,
    /// else a lost connection or a closed channel.
    fn why_ended(&self) -> Failure {
        if let Some(failure) = self.recorded_end() {
            return failure;
        }
        if self.inner.is_connection_open() {
            Failure::channel_closed("the channel closed")
        } else {
            Failure::connection_lost("the connection was lost")
        }
    }

    /// The broker's channel close, else its connection close, if it sent one.
    fn recorded_end(&self) -> Option<Failure> {
        self.state
            .ended
            .get()
            .or_else(|| self.state.connection.ended.get())
    }

    /// Classifies a client error: the recorded reason of an ended channel or connection
    /// comes first, since the client's own error then only says that a request went
    /// unanswered.
    fn failure(&self, error: &warren_amqp::error::Error) -> Failure {
        use warren_amqp::error::Error;
        // A value too long for an AMQP short string, caught by the client before anything
        // was sent: a request the broker would refuse, whatever state the channel is in.
        if let Error::ShortStrTooLong(_) = error {
            return Failure::refused(error.to_string());
        }
        if let Some(failure) = self.recorded_end() {
            return failure;
        }
        let text = error.to_string();
        if !self.inner.is_connection_open() {
            return Failure::connection_lost(text);
        }
        match error {
            Error::ChannelUseError(_)
            | Error::ChannelOpenError(_)
            | Error::ChannelCloseError(_) => Failure::channel_closed(text),
            _ if !self.inner.is_open() => Failure::channel_closed(text),
            _ => Failure::connection_lost(text),
        }
    }

    /// Turns publisher confirms on.
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn confirm_select(&self) -> Result<(), Failure> {
        self.usable()?;
        self.inner
            .confirm_select(ConfirmSelectArguments::default())
            .await
            .map_err(|e| self.failure(&e))?;
        self.state.confirming.store(true, Ordering::Release);
        Ok(())
    }

    /// Limits unacknowledged deliveries on this channel (0 = unlimited).
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn qos(&self, prefetch: u16) -> Result<(), Failure> {
        self.usable()?;
        self.inner
            .basic_qos(BasicQosArguments::new(0, prefetch, false))
            .await
            .map_err(|e| self.failure(&e))
    }

    /// Declares the queue (idempotent with the same arguments); returns its ready message count.
    ///
    /// # Errors
    /// A classified [`Failure`]; different arguments than an existing queue's are `Refused`.
    pub async fn declare_queue(&self, spec: &QueueSpec) -> Result<u32, Failure> {
        let mut arguments = FieldTable::new();
        let type_name = match spec.queue_type {
            QueueType::Classic => None,
            QueueType::Quorum => Some("quorum"),
            QueueType::Stream => Some("stream"),
        };
        if let Some(name) = type_name {
            insert(&mut arguments, "x-queue-type", text_value(name)?)?;
        }
        for (key, value) in &spec.arguments {
            let value = match value {
                QueueArgument::Bool(b) => FieldValue::t(*b),
                QueueArgument::Int(i) => FieldValue::l(*i),
                QueueArgument::Float(f) => FieldValue::d(*f),
                QueueArgument::Text(s) => text_value(s)?,
            };
            insert(&mut arguments, key, value)?;
        }
        let declare = QueueDeclareArguments::new(&spec.name)
            .durable(spec.durable)
            .arguments(arguments)
            .finish();
        self.queue_declare(declare).await
    }

    /// Ready messages in an existing queue (a passive declare).
    ///
    /// # Errors
    /// A classified [`Failure`]; a missing queue is `Refused` (and closes the channel).
    pub async fn ready_messages(&self, queue: &str) -> Result<u32, Failure> {
        Ok(self.queue_status(queue).await?.ready)
    }

    /// Ready messages and consumers of an existing queue (a passive declare).
    ///
    /// # Errors
    /// As [`Self::ready_messages`].
    pub async fn queue_status(&self, queue: &str) -> Result<QueueStatus, Failure> {
        self.declare_for_status(QueueDeclareArguments::new(queue).passive(true).finish())
            .await
    }

    async fn queue_declare(&self, declare: QueueDeclareArguments) -> Result<u32, Failure> {
        Ok(self.declare_for_status(declare).await?.ready)
    }

    async fn declare_for_status(
        &self,
        declare: QueueDeclareArguments,
    ) -> Result<QueueStatus, Failure> {
        self.usable()?;
        let declared = self
            .inner
            .queue_declare(declare)
            .await
            .map_err(|e| self.failure(&e))?;
        Ok(
            declared.map_or(QueueStatus::default(), |(_, ready, consumers)| {
                QueueStatus { ready, consumers }
            }),
        )
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
            PlanExchangeKind::Direct => "direct",
            PlanExchangeKind::Fanout => "fanout",
            PlanExchangeKind::Topic => "topic",
            PlanExchangeKind::Headers => "headers",
        };
        self.usable()?;
        self.inner
            .exchange_declare(
                ExchangeDeclareArguments::new(exchange, kind)
                    .durable(durable)
                    .finish(),
            )
            .await
            .map_err(|e| self.failure(&e))?;
        self.usable()?;
        self.inner
            .queue_bind(QueueBindArguments::new(queue, exchange, routing_key))
            .await
            .map_err(|e| self.failure(&e))
    }

    /// Declares a meeting point of processes: a transient fanout `exchange` that goes
    /// away with its last binding, and an exclusive queue of this connection bound to it
    /// (gone with the connection). Returns the queue's server-given name.
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn declare_meeting_point(&self, exchange: &str) -> Result<String, Failure> {
        self.usable()?;
        self.inner
            .exchange_declare(
                ExchangeDeclareArguments::new(exchange, "fanout")
                    .durable(false)
                    .auto_delete(true)
                    .finish(),
            )
            .await
            .map_err(|e| self.failure(&e))?;
        self.usable()?;
        let (queue, _, _) = self
            .inner
            .queue_declare(QueueDeclareArguments::exclusive_server_named())
            .await
            .map_err(|e| self.failure(&e))?
            .ok_or_else(|| Failure {
                kind: super::FailureKind::ChannelClosed,
                message: "the broker did not name the queue".into(),
            })?;
        self.usable()?;
        self.inner
            .queue_bind(QueueBindArguments::new(&queue, exchange, ""))
            .await
            .map_err(|e| self.failure(&e))?;
        Ok(queue)
    }

    /// Removes the binding of `queue` to `exchange` with `routing_key` (what an operator
    /// does by mistake, in a test).
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn unbind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), Failure> {
        self.usable()?;
        self.inner
            .queue_unbind(QueueUnbindArguments::new(queue, exchange, routing_key))
            .await
            .map_err(|e| self.failure(&e))
    }

    /// Deletes a queue; returns how many messages it still held.
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn delete_queue(&self, queue: &str) -> Result<u32, Failure> {
        self.usable()?;
        let deleted = self
            .inner
            .queue_delete(QueueDeleteArguments::new(queue))
            .await
            .map_err(|e| self.failure(&e))?;
        Ok(deleted.unwrap_or(0))
    }

    /// Deletes an exchange.
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn delete_exchange(&self, exchange: &str) -> Result<(), Failure> {
        self.usable()?;
        self.inner
            .exchange_delete(ExchangeDeleteArguments::new(exchange))
            .await
            .map_err(|e| self.failure(&e))
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
        self.usable()?;
        // The tag is taken and the frame queued in the same poll, so concurrent publishes
        // go out in the order they are first polled, each with its own tag. `unconstrained`
        // keeps tokio's cooperative budget from deferring the queueing: a publish deferred
        // that way would be polled again only after publishes created after it, which would
        // then go out first, with each other's tags.
        let answer = self
            .state
            .confirming
            .load(Ordering::Acquire)
            .then(|| self.state.confirms().expect());
        tokio::task::unconstrained(self.inner.basic_publish(
            target.properties.clone(),
            body.to_vec(),
            target.arguments.clone(),
        ))
        .await
        .map_err(|e| self.failure(&e))?;
        let Some(answer) = answer else {
            return Ok(PublishOutcome::Sent);
        };
        let answer = answer.await.map_err(|_| self.why_ended())?;
        let returned = self.state.confirms().take_return(body);
        Ok(match (answer, returned) {
            (Answer::Ack, false) => PublishOutcome::Acked,
            (Answer::Nack, false) => PublishOutcome::Nacked,
            (Answer::Ack, true) => PublishOutcome::Returned { acked: true },
            (Answer::Nack, true) => PublishOutcome::Returned { acked: false },
        })
    }

    /// Bodies of messages the broker returned (basic.return) that no confirm carried:
    /// with confirms off, this is the only way to see them.
    ///
    /// # Errors
    /// A classified [`Failure`] when the channel has ended.
    pub async fn take_returned(&self) -> Result<Vec<Vec<u8>>, Failure> {
        let returned = self.state.confirms().take_all_returned();
        if returned.is_empty() {
            self.usable()?;
        }
        Ok(returned)
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
        let mut arguments = FieldTable::new();
        match from {
            None => {}
            Some(StreamStart::First) => {
                insert(&mut arguments, "x-stream-offset", text_value("first")?)?;
            }
            Some(StreamStart::Offset(offset)) => {
                let offset = i64::try_from(offset).unwrap_or(i64::MAX);
                insert(&mut arguments, "x-stream-offset", FieldValue::l(offset))?;
            }
        }
        let consume = BasicConsumeArguments::new(queue, tag)
            .manual_ack(!no_ack)
            .arguments(arguments)
            .finish();
        self.usable()?;
        let (_, inner) = self
            .inner
            .basic_consume_rx(consume)
            .await
            .map_err(|e| self.failure(&e))?;
        Ok(Deliveries {
            inner,
            channel: self.clone(),
            ended: false,
            death_reasons: false,
        })
    }

    /// Consumes dead letters from `queue` with manual acknowledgements; each delivery
    /// says why it was dead-lettered.
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn consume_dead_letters(
        &self,
        queue: &str,
        tag: &str,
    ) -> Result<Deliveries, Failure> {
        let mut deliveries = self.consume(queue, tag, false, None).await?;
        deliveries.death_reasons = true;
        Ok(deliveries)
    }

    /// Acknowledges `tag` (and, with `multiple`, every earlier unacknowledged delivery).
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn ack(&self, tag: u64, multiple: bool) -> Result<(), Failure> {
        self.usable()?;
        // Queued in the first poll, as publishes are: acks handed out in order go out in
        // order (a multiple ack overtaken by a later one would ack an unknown tag).
        tokio::task::unconstrained(self.inner.basic_ack(BasicAckArguments::new(tag, multiple)))
            .await
            .map_err(|e| self.failure(&e))
    }

    /// Rejects `tag` without requeueing it: the broker dead-letters it (or drops it).
    ///
    /// # Errors
    /// A classified [`Failure`].
    pub async fn reject(&self, tag: u64) -> Result<(), Failure> {
        self.usable()?;
        tokio::task::unconstrained(
            self.inner
                .basic_reject(BasicRejectArguments::new(tag, false)),
        )
        .await
        .map_err(|e| self.failure(&e))
    }

    /// True while the channel is usable.
    pub fn is_open(&self) -> bool {
        self.inner.is_connection_open() && self.inner.is_open()
    }

    /// Closes the channel; errors are ignored, and a broker that does not answer within
    /// [`CLOSE_WITHIN`] is not waited for. Unacknowledged deliveries go back to the queue.
    pub async fn close(&self) {
        let _ = tokio::time::timeout(CLOSE_WITHIN, self.inner.clone().close()).await;
    }
}

/// A long-string field value; `Refused` if it does not fit one.
fn text_value(text: &str) -> Result<FieldValue, Failure> {
    text.to_string()
        .try_into()
        .map(FieldValue::S)
        .map_err(|_| Failure::refused(format!("{text:?} does not fit an AMQP long string")))
}

/// Adds `key` to an argument table; `Refused` if it is longer than a field name may be.
fn insert(table: &mut FieldTable, key: &str, value: FieldValue) -> Result<(), Failure> {
    let name = key
        .to_string()
        .try_into()
        .map_err(|_| Failure::refused(format!("argument name {key:?} is longer than 255 bytes")))?;
    table.insert(name, value);
    Ok(())
}
