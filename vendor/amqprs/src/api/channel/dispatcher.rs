use std::collections::{HashMap, VecDeque};

use tokio::{
    sync::{mpsc, oneshot},
    task::yield_now,
    time,
};

use crate::{
    api::{callbacks::ChannelCallback, channel::ReturnMessage},
    frame::{CancelOk, CloseChannelOk, ContentBody, FlowOk, Frame, MethodHeader},
    net::IncomingMessage,
    BasicProperties, Return,
};
#[cfg(feature = "traces")]
use tracing::{debug, error, info, trace};

use super::{Channel, ConsumerMessage, DispatcherManagementCommand, GetOkMessage};
use crate::net::ConnManagementCommand;

/// Assumption:
/// Depends on total number of consumers per channel, a reasonable value
/// should be selected. Assume most cases, searching expiry consumers
/// every `10` seconds does not impact performance
const CONSUMER_PURGE_INTERVAL: time::Duration = time::Duration::from_secs(10);

/// Assumption:
/// Consumer is expected to be registered right after `consume/consume-ok` handshake is done
/// which can't take longer than `5` seconds.
/// After consumer is canceled, all on-the-fly messages should be received within `5` seconds
const CONSUMER_EXPIRY_PERIOD: time::Duration = time::Duration::from_secs(5);

/// Resource for handling consumer messages.
struct ConsumerResource {
    /// FIFO buffer for a delivery = `deliver + content`.
    fifo: VecDeque<ConsumerMessage>,
    /// tx channel to forward a delivery to a consumer task.
    /// dispatcher task holds the tx half, and the consumer task holds the rx half.
    tx: Option<mpsc::UnboundedSender<ConsumerMessage>>,
    /// expiry time of fifo buffer
    expiration: Option<time::Instant>,
}

impl ConsumerResource {
    fn new() -> Self {
        Self {
            fifo: VecDeque::new(),
            tx: None,
            expiration: Some(time::Instant::now() + CONSUMER_EXPIRY_PERIOD),
        }
    }

    fn register_tx(
        &mut self,
        tx: mpsc::UnboundedSender<ConsumerMessage>,
    ) -> Option<mpsc::UnboundedSender<ConsumerMessage>> {
        // once consumer's tx half is registered, clear the expiry timer
        self.expiration.take();
        self.tx.replace(tx)
    }

    fn get_tx(&self) -> Option<&mpsc::UnboundedSender<ConsumerMessage>> {
        self.tx.as_ref()
    }

    fn get_expiration(&self) -> Option<&time::Instant> {
        self.expiration.as_ref()
    }

    fn push_message(&mut self, message: ConsumerMessage) {
        self.fifo.push_back(message);
    }

    fn pop_message(&mut self) -> Option<ConsumerMessage> {
        self.fifo.pop_front()
    }
}

enum State {
    Initial,
    Deliver,
    GetOk,
    GetEmpty,
    Return,
}

/// Dispatcher for a channel.
///
/// Each channel will spawn a dispatcher.
/// It handles channel level callbacks, incoming messages and registration commands.
/// It also dispatch messages to consumers.
pub(crate) struct ChannelDispatcher {
    channel: Channel,
    dispatcher_rx: mpsc::UnboundedReceiver<IncomingMessage>,
    dispatcher_mgmt_rx: mpsc::UnboundedReceiver<DispatcherManagementCommand>,
    consumer_resources: HashMap<String, ConsumerResource>,
    get_content_responder: Option<mpsc::UnboundedSender<IncomingMessage>>,
    responders: HashMap<&'static MethodHeader, oneshot::Sender<IncomingMessage>>,
    callback: Option<Box<dyn ChannelCallback + Send + 'static>>,
    state: State,
}
/////////////////////////////////////////////////////////////////////////////
impl ChannelDispatcher {
    pub(crate) fn new(
        channel: Channel,
        dispatcher_rx: mpsc::UnboundedReceiver<IncomingMessage>,
        dispatcher_mgmt_rx: mpsc::UnboundedReceiver<DispatcherManagementCommand>,
    ) -> Self {
        Self {
            channel,
            dispatcher_rx,
            dispatcher_mgmt_rx,
            consumer_resources: HashMap::new(),
            get_content_responder: None,
            responders: HashMap::new(),
            callback: None,
            state: State::Initial,
        }
    }

    /// Return the consumer resource if it always exists, otherwise create new one.
    fn get_or_new_consumer_resource(
        &mut self,
        consumer_tag: &str,
    ) -> Option<&mut ConsumerResource> {
        // warren: no String allocated per delivery for the lookup (entry() would), and no
        // unwrap(): the resource is inserted when missing, then looked up.
        if !self.consumer_resources.contains_key(consumer_tag) {
            self.consumer_resources
                .insert(consumer_tag.to_string(), ConsumerResource::new());
        }
        self.consumer_resources.get_mut(consumer_tag)
    }

    /// purge expired consumer resource
    fn purge_consumer_resource(&mut self) {
        // find all resources that are expired
        let purge_keys: Vec<String> = self
            .consumer_resources
            .iter()
            .filter_map(|(k, v)| {
                if let Some(expiration) = v.get_expiration() {
                    if expiration < &time::Instant::now() {
                        return Some(k.clone());
                    }
                }
                None
            })
            .collect();

        // purge expired resources
        for key in purge_keys {
            self.consumer_resources.remove(&key);
            #[cfg(feature = "traces")]
            debug!(
                "purge stale consumer resource {} on channel {}",
                key, self.channel
            );
        }
    }
    /// Remove the consumer resource.
    ///
    /// Becuase the tx channel will drop, the consumer task will also exit.
    fn remove_consumer_resource(&mut self, consumer_tag: &String) -> Option<ConsumerResource> {
        self.consumer_resources.remove(consumer_tag)
    }

    async fn forward_deliver(&mut self, consumer_message: ConsumerMessage) {
        // warren: a message is only finished with its deliver method in it
        let Some(deliver) = consumer_message.deliver.as_ref() else {
            return;
        };
        let consumer_tag = deliver.consumer_tag().clone();
        let Some(consumer) = self.get_or_new_consumer_resource(&consumer_tag) else {
            return;
        };
        match consumer.get_tx() {
            Some(consumer_tx) => {
                if (consumer_tx.send(consumer_message)).is_err() {
                    #[cfg(feature = "traces")]
                    error!(
                        "failed to dispatch message to consumer {} on channel {}",
                        consumer_tag, self.channel
                    );
                }
            }
            None => {
                #[cfg(feature = "traces")]
                debug!("can't find consumer {}, message is buffered", consumer_tag);
                consumer.push_message(consumer_message);
                // try to yield for expected consumer registration command,
                // it might reduceas buffering
                yield_now().await;
            }
        };
    }

    async fn handle_return(
        &mut self,
        ret: Return,
        basic_properties: BasicProperties,
        content: Vec<u8>,
    ) {
        if let Some(ref mut cb) = self.callback {
            cb.publish_return(&self.channel, ret, basic_properties, content)
                .await;
        } else {
            #[cfg(feature = "traces")]
            error!("callback not registered on channel {}", self.channel);
        }
    }
    /// warren: a delivery, get-ok or return starts a message whose content header and
    /// body frames follow; everything out of that order is the peer's protocol error
    /// (the original panicked on it with unwrap and unreachable!).
    async fn handle_content(
        &mut self,
        frame: Frame,
        buffers: &mut ContentBuffers,
    ) -> Result<(), String> {
        let channel_id = self.channel.channel_id();
        match frame {
            Frame::GetEmpty(_, get_empty) => {
                if !matches!(self.state, State::Initial) {
                    return Err(format!(
                        "basic.get-empty in the middle of a message on channel {channel_id}"
                    ));
                }
                let responder = self.get_content_responder.take().ok_or_else(|| {
                    format!("basic.get-empty on channel {channel_id}, which nobody asked for")
                })?;
                let _ = responder.send(get_empty.into_frame());
            }
            Frame::GetOk(_, get_ok) => {
                if !matches!(self.state, State::Initial) {
                    return Err(format!(
                        "basic.get-ok in the middle of a message on channel {channel_id}"
                    ));
                }
                let responder = self.get_content_responder.as_ref().ok_or_else(|| {
                    format!("basic.get-ok on channel {channel_id}, which nobody asked for")
                })?;
                let _ = responder.send(get_ok.into_frame());
                self.state = State::GetOk;
            }
            Frame::Return(_, ret) => {
                if !matches!(self.state, State::Initial) {
                    return Err(format!(
                        "basic.return in the middle of a message on channel {channel_id}"
                    ));
                }
                buffers.ret.ret = Some(ret);
                self.state = State::Return;
            }
            Frame::Deliver(_, deliver) => {
                if !matches!(self.state, State::Initial) {
                    return Err(format!(
                        "basic.deliver in the middle of a message on channel {channel_id}"
                    ));
                }
                buffers.message.deliver = Some(deliver);
                self.state = State::Deliver;
            }
            Frame::ContentHeader(header) => {
                let body_size = usize::try_from(header.common.body_size).map_err(|_| {
                    format!(
                        "a content header of {} bytes on channel {channel_id}",
                        header.common.body_size
                    )
                })?;
                match self.state {
                    State::Deliver if buffers.message.content.is_none() => {
                        buffers.message.remaining = body_size;
                        buffers.message.basic_properties = Some(header.basic_properties);
                        buffers.message.content = Some(Vec::with_capacity(body_size.min(1 << 20)));
                    }
                    State::GetOk if buffers.getok.content.is_none() => {
                        if let Some(responder) = self.get_content_responder.as_ref() {
                            let _ = responder.send(header.into_frame());
                        }
                        buffers.getok.remaining = body_size;
                        buffers.getok.content = Some(Vec::with_capacity(body_size.min(1 << 20)));
                    }
                    State::Return if buffers.ret.content.is_none() => {
                        buffers.ret.remaining = body_size;
                        buffers.ret.basic_properties = Some(header.basic_properties);
                        buffers.ret.content = Some(Vec::with_capacity(body_size.min(1 << 20)));
                    }
                    _ => {
                        return Err(format!(
                            "a content header out of place on channel {channel_id}"
                        ))
                    }
                }
                self.finish_content(buffers).await;
            }
            Frame::ContentBody(body) => {
                let (content, remaining) = match self.state {
                    State::Deliver => (
                        buffers.message.content.as_mut(),
                        &mut buffers.message.remaining,
                    ),
                    State::GetOk => (buffers.getok.content.as_mut(), &mut buffers.getok.remaining),
                    State::Return => (buffers.ret.content.as_mut(), &mut buffers.ret.remaining),
                    State::Initial | State::GetEmpty => (None, &mut buffers.message.remaining),
                };
                let Some(content) = content else {
                    return Err(format!(
                        "a content body out of place on channel {channel_id}"
                    ));
                };
                if body.inner.len() > *remaining {
                    return Err(format!(
                        "a content body of {} bytes where {} were left of the message on channel {channel_id}",
                        body.inner.len(),
                        remaining
                    ));
                }
                content.extend_from_slice(&body.inner);
                *remaining -= body.inner.len();
                self.finish_content(buffers).await;
            }
            other => {
                return Err(format!(
                    "{} on channel {channel_id}, which a client never receives",
                    crate::net::frame_name(&other)
                ))
            }
        }
        Ok(())
    }

    /// warren: hands a message on once its header and every byte of its body are in,
    /// and waits for the next one.
    async fn finish_content(&mut self, buffers: &mut ContentBuffers) {
        match self.state {
            State::Deliver
                if buffers.message.content.is_some() && buffers.message.remaining == 0 =>
            {
                let consumer_message = ConsumerMessage {
                    deliver: buffers.message.deliver.take(),
                    basic_properties: buffers.message.basic_properties.take(),
                    content: buffers.message.content.take(),
                    remaining: 0,
                };
                self.state = State::Initial;
                self.forward_deliver(consumer_message).await;
            }
            State::GetOk if buffers.getok.content.is_some() && buffers.getok.remaining == 0 => {
                let content = buffers.getok.content.take().unwrap_or_default();
                if let Some(responder) = self.get_content_responder.take() {
                    let _ = responder.send(ContentBody::new(content).into_frame());
                }
                self.state = State::Initial;
            }
            State::Return if buffers.ret.content.is_some() && buffers.ret.remaining == 0 => {
                let content = buffers.ret.content.take().unwrap_or_default();
                let properties = buffers.ret.basic_properties.take().unwrap_or_default();
                self.state = State::Initial;
                if let Some(ret) = buffers.ret.ret.take() {
                    self.handle_return(ret, properties, content).await;
                }
            }
            _ => {}
        }
    }

    /// Spawn dispatcher task.
    pub(in crate::api) async fn spawn(mut self) {
        tokio::spawn(async move {
            let mut buffers = ContentBuffers {
                // aggregation buffer for `deliver + content` messages to a consumer
                message: ConsumerMessage {
                    deliver: None,
                    basic_properties: None,
                    content: None,
                    remaining: 0,
                },
                // buffer for `return + content` messages due to publish failure.
                ret: ReturnMessage {
                    ret: None,
                    basic_properties: None,
                    content: None,
                    remaining: 0,
                },
                // buffer for `getok + content` messages
                getok: GetOkMessage {
                    content: None,
                    remaining: 0,
                },
            };

            #[cfg(feature = "traces")]
            trace!("starts up dispatcher task of channel {}", self.channel);

            let mut purge_timer = time::interval(CONSUMER_PURGE_INTERVAL);
            purge_timer.tick().await;
            // warren: the protocol error that ends this channel's connection, if any
            let mut protocol_error: Option<String> = None;
            // main loop of dispatcher
            loop {
                tokio::select! {
                    biased;

                    command = self.dispatcher_mgmt_rx.recv() => {
                        // warren: was unreachable!; with no way left to command this
                        // dispatcher, it ends
                        let Some(cmd) = command else { break };
                        // handle command
                        match cmd {
                            DispatcherManagementCommand::RegisterContentConsumer(cmd) => {
                                #[cfg(feature="traces")]
                                info!("register consumer {}", cmd.consumer_tag);
                                if let Some(consumer) = self.get_or_new_consumer_resource(&cmd.consumer_tag) {
                                    consumer.register_tx(cmd.consumer_tx);
                                    // forward buffered messages
                                    while let Some(msg) = consumer.pop_message() {
                                        if let Some(tx) = consumer.get_tx() {
                                            let _ = tx.send(msg);
                                        }
                                    }
                                }
                            },
                            DispatcherManagementCommand::DeregisterContentConsumer(cmd) => {
                                if let Some(_consumer) = self.remove_consumer_resource(&cmd.consumer_tag) {
                                    #[cfg(feature="traces")]
                                    info!("deregister consumer {}, total buffered messages: {}",
                                        cmd.consumer_tag, _consumer.fifo.len()
                                    );
                                }
                            },
                            DispatcherManagementCommand::RegisterGetContentResponder(cmd) => {
                                self.get_content_responder.replace(cmd.tx);
                            }
                            DispatcherManagementCommand::RegisterOneshotResponder(cmd) => {
                                self.responders.insert(cmd.method_header, cmd.responder);
                                // warren: the caller may have stopped waiting
                                let _ = cmd.acker.send(());
                            }
                            DispatcherManagementCommand::RegisterChannelCallback(cmd) => {
                                self.callback.replace(cmd.callback);
                                #[cfg(feature="traces")]
                                debug!("callback registered on channel {}", self.channel);
                            }
                        }
                    }
                    // only one tx half held by connection handler, once the tx half dorp
                    // it will return `None`, so exit the dispatcher
                    message = self.dispatcher_rx.recv() => {
                        let Some(frame) = message else {
                            #[cfg(feature="traces")]
                            debug!("dispatcher mpsc channel closed, channel {}", self.channel);
                            break;
                        };
                        let channel_id = self.channel.channel_id();
                        match frame {
                            ////////////////////////////////////////////////
                            // frames for closing channel
                            // channel.close-ok response from server
                            Frame::CloseChannelOk(method_header, close_channel_ok) => {
                                self.channel.set_is_open(false);
                                match self.responders.remove(method_header) {
                                    // warren: the closer may have stopped waiting (its
                                    // own timeout); the channel is closed all the same
                                    Some(responder) => {
                                        let _ = responder.send(close_channel_ok.into_frame());
                                    }
                                    None => {
                                        protocol_error = Some(format!(
                                            "channel.close-ok on channel {channel_id}, which nobody was closing"
                                        ));
                                    }
                                }
                                break;
                            }
                            // channel.close request from server
                            Frame::CloseChannel(_, close_channel) => {
                                // callback
                                if let Some(ref mut cb) = self.callback {
                                    if let Err(_err) = cb.close(&self.channel, close_channel).await {
                                      #[cfg(feature="traces")]
                                      error!("close callback returns error on channel {}, cause: {}", self.channel, _err);
                                      // exit immediately, no response to server
                                      break;
                                    };
                                } else {
                                    #[cfg(feature="traces")]
                                    error!("callback not registered on channel {}", self.channel);
                                }
                                self.channel.set_is_open(false);

                                // implictly respond OK to server (warren: unless the
                                // connection's writer is gone already)
                                let _ = self.channel.shared.outgoing_tx
                                    .send((channel_id, CloseChannelOk.into_frame()))
                                    .await;
                                break;
                            }
                            ////////////////////////////////////////////////
                            // the method frames followed by content frames
                            frame @ (Frame::GetEmpty(..)
                            | Frame::GetOk(..)
                            | Frame::Return(..)
                            | Frame::Deliver(..)
                            | Frame::ContentHeader(..)
                            | Frame::ContentBody(..)) => {
                                if let Err(reason) = self.handle_content(frame, &mut buffers).await {
                                    protocol_error = Some(reason);
                                    break;
                                }
                            }
                            ////////////////////////////////////////////////
                            // synchronous response frames
                            Frame::FlowOk(method_header, _)
                            // | Frame::RequestOk(method_header, _) // Deprecated
                            | Frame::DeclareOk(method_header, _)
                            | Frame::DeleteOk(method_header, _)
                            | Frame::BindOk(method_header, _)
                            | Frame::UnbindOk(method_header, _)
                            | Frame::DeclareQueueOk(method_header, _)
                            | Frame::BindQueueOk(method_header, _)
                            | Frame::PurgeQueueOk(method_header, _)
                            | Frame::DeleteQueueOk(method_header, _)
                            | Frame::UnbindQueueOk(method_header, _)
                            | Frame::QosOk(method_header, _)
                            | Frame::ConsumeOk(method_header, _)
                            | Frame::CancelOk(method_header, _)
                            | Frame::RecoverOk(method_header, _)
                            | Frame::SelectOk(method_header, _)
                            | Frame::TxSelectOk(method_header, _)
                            | Frame::TxCommitOk(method_header, _)
                            | Frame::TxRollbackOk(method_header, _) => {
                                // handle synchronous response
                                match self.responders.remove(method_header) {
                                    // warren: the caller may have stopped waiting
                                    Some(responder) => {
                                        let _ = responder.send(frame);
                                    }
                                    None => {
                                        protocol_error = Some(format!(
                                            "{} on channel {channel_id}, which nobody asked for",
                                            crate::net::frame_name(&frame)
                                        ));
                                        break;
                                    }
                                }
                            }
                            //////////////////////////////////////////////////////////
                            // asynchronous request frames
                            Frame::Flow(_, flow) => {
                                // callback
                                if let Some(ref mut cb) = self.callback {
                                    match cb.flow(&self.channel, flow.active).await {
                                      Err(_err) => {
                                        #[cfg(feature="traces")]
                                        error!("flow callback error on channel {}, cause: '{}'.", self.channel, _err);
                                      }
                                      Ok(active) => {
                                         // respond to server that we have handled the request
                                         let _ = self.channel.shared.outgoing_tx
                                             .send((channel_id, FlowOk::new(active).into_frame()))
                                             .await;
                                      }
                                    };
                                } else {
                                    #[cfg(feature="traces")]
                                    error!("callback not registered on channel {}", self.channel);
                                }
                            }
                            Frame::Cancel(_, cancel) => {
                                // callback
                                if let Some(ref mut cb) = self.callback {
                                    let consumer_tag = cancel.consumer_tag().clone();
                                    let no_wait = cancel.no_wait();
                                    match cb.cancel(&self.channel, cancel).await {
                                      Err(_err) => {
                                        #[cfg(feature="traces")]
                                        error!("cancel callback error on channel {}, cause: '{}'.", self.channel, _err);
                                      }
                                      Ok(_) => {
                                        self.remove_consumer_resource(&consumer_tag);

                                        // respond to server that we have handled the request
                                        if !no_wait {
                                            if let Ok(tag) = consumer_tag.try_into() {
                                                let _ = self.channel.shared.outgoing_tx
                                                    .send((channel_id, CancelOk::new(tag).into_frame()))
                                                    .await;
                                            }
                                        }
                                      }
                                    };
                                } else {
                                    #[cfg(feature="traces")]
                                    error!("callback not registered on channel {}", self.channel);
                                }
                            }
                            // in confirmed mode
                            Frame::Ack(_, ack) => {
                                if let Some(ref mut cb) = self.callback {
                                    cb.publish_ack(&self.channel, ack).await;
                                } else {
                                    #[cfg(feature="traces")]
                                    error!("callback not registered on channel {}", self.channel);
                                }
                            }
                            Frame::Nack(_, nack) => {
                                if let Some(ref mut cb) = self.callback {
                                    cb.publish_nack(&self.channel, nack).await;
                                } else {
                                    #[cfg(feature="traces")]
                                    error!("callback not registered on channel {}", self.channel);
                                }
                            }
                            // warren: was unreachable!
                            other => {
                                protocol_error = Some(format!(
                                    "{} on channel {channel_id}, which a client never receives",
                                    crate::net::frame_name(&other)
                                ));
                                break;
                            }
                        }
                    }
                    // purge stale consumer resource
                    _ = purge_timer.tick() => {
                        self.purge_consumer_resource();
                    }
                    else => {
                        break;
                    }
                }
            }
            self.channel.set_is_open(false);
            if let Some(reason) = protocol_error {
                self.channel.connection.fail(reason);
            }
            // warren: the dispatcher alone gives the channel's id back when it ends (the
            // closer did, but not when it stopped waiting for close-ok, nor after the
            // server closed the channel, so ids leaked; two releases could also free an
            // id already handed to a new channel).
            let _ = self
                .channel
                .shared
                .conn_mgmt_tx
                .send(ConnManagementCommand::DeregisterChannelResource(
                    self.channel.channel_id(),
                ))
                .await;

            #[cfg(feature = "traces")]
            info!("exit dispatcher of channel {}", self.channel);
        });
    }
}

/// warren: the messages being put together from a method frame and its content frames.
struct ContentBuffers {
    message: ConsumerMessage,
    ret: ReturnMessage,
    getok: GetOkMessage,
}

#[cfg(test)]
mod tests {
    use tokio::time;

    use crate::{
        channel::{
            BasicCancelArguments, BasicConsumeArguments, BasicPublishArguments, QueueBindArguments,
            QueueDeclareArguments,
        },
        connection::{Connection, OpenConnectionArguments},
        consumer::DefaultConsumer,
        test_utils::setup_logging,
        BasicProperties,
    };

    use super::{CONSUMER_EXPIRY_PERIOD, CONSUMER_PURGE_INTERVAL};

    #[tokio::test]
    async fn test_purge_consumer_resource() {
        setup_logging();

        let args = OpenConnectionArguments::new(
            "localhost",
            crate::test_utils::test_port(),
            "user",
            "bitnami",
        );
        let connection = Connection::open(&args).await.unwrap();

        let exchange_name = "amq.topic";
        let routing_key = "test.purge.consumer";

        let consumer_channel = connection.open_channel(None).await.unwrap();
        let (queue_name, _, _) = consumer_channel
            .queue_declare(QueueDeclareArguments::default())
            .await
            .unwrap()
            .unwrap();
        consumer_channel
            .queue_bind(QueueBindArguments::new(
                &queue_name,
                exchange_name,
                routing_key,
            ))
            .await
            .unwrap();

        // publish messages first so that messages
        // are redelivered immediately once we start consumer
        let pub_channel = connection.open_channel(None).await.unwrap();

        for _ in 0..100 {
            pub_channel
                .basic_publish(
                    BasicProperties::default(),
                    String::from("stale message").into_bytes(),
                    BasicPublishArguments::new(exchange_name, routing_key),
                )
                .await
                .unwrap();
        }
        // wait for publish done
        time::sleep(time::Duration::from_secs(1)).await;

        // start consumer with no_wait = true
        let consumer_tag = consumer_channel
            .basic_consume(
                DefaultConsumer::new(false),
                BasicConsumeArguments::new(&queue_name, "purge-tester")
                    .no_wait(true)
                    .finish(),
            )
            .await
            .unwrap();

        // immediately cancel consumer with no_wait = true
        consumer_channel
            .basic_cancel(
                BasicCancelArguments::new(&consumer_tag)
                    .no_wait(true)
                    .finish(),
            )
            .await
            .unwrap();

        // the consumer resource should be purged within `CONSUMER_PURGE_INTERVAL + CONSUMER_EXPIRY_PERIOD`
        time::sleep(CONSUMER_PURGE_INTERVAL + CONSUMER_EXPIRY_PERIOD).await;
    }
}
