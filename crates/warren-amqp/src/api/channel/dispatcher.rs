//! warren: a channel's incoming frames, handled where they are read.
//!
//! Upstream gave each channel a task of its own: the connection's reader sent it every
//! frame through a queue, and it put deliveries together and passed them on to the
//! consumer's queue. That was one more task wake-up and queue hop for every delivery
//! and every confirm. Now each open channel has a [`ChannelDispatcher`] that the reader
//! owns and drives directly: a delivery goes from the socket to its consumer's queue
//! in the reader's own turn, and confirms reach the channel's callback there too.
//!
//! Channel callbacks therefore run on the connection's reader task, like connection
//! callbacks always did: they must not wait for anything that needs this connection.

use std::collections::{HashMap, VecDeque};

use amqp_serde::types::AmqpChannelId;
use tokio::{
    sync::{mpsc, oneshot},
    time,
};

use crate::{
    api::{callbacks::ChannelCallback, channel::ReturnMessage},
    frame::{CancelOk, CloseChannelOk, ContentBody, FlowOk, Frame, MethodHeader},
    net::{IncomingMessage, OutgoingMessage},
};

use super::{Channel, ConsumerMessage, DispatcherManagementCommand, GetOkMessage};

/// How long deliveries for a consumer tag nobody has registered are kept: a consumer is
/// registered right after its consume/consume-ok handshake, and after a consumer is
/// cancelled, the deliveries still on their way arrive well within this time.
const CONSUMER_EXPIRY_PERIOD: time::Duration = time::Duration::from_secs(5);

/// Queues a reply the protocol asks of the client for the connection's writer. The
/// reader must never wait for the writer: a writer stuck on a peer that reads nothing,
/// with its queue full, would stop the reader, and with it the heartbeat check that ends
/// such a connection. A full queue hands the reply to a task of its own; a writer that is
/// gone drops it.
fn reply(outgoing: &mpsc::Sender<OutgoingMessage>, message: OutgoingMessage) {
    if let Err(mpsc::error::TrySendError::Full(message)) = outgoing.try_send(message) {
        let outgoing = outgoing.clone();
        tokio::spawn(async move {
            let _ = outgoing.send(message).await;
        });
    }
}

/// The responders of a channel's synchronous requests, by the reply they wait for.
pub(crate) type Responders = HashMap<&'static MethodHeader, oneshot::Sender<IncomingMessage>>;

/// Deliveries for one consumer tag.
struct ConsumerResource {
    /// Deliveries that arrived before the consumer was registered, oldest first.
    fifo: VecDeque<ConsumerMessage>,
    /// Where the consumer takes its deliveries, once registered.
    tx: Option<mpsc::UnboundedSender<ConsumerMessage>>,
    /// When the buffered deliveries are dropped if nobody registers; `None` once
    /// registered.
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

    /// Hands `message` to the consumer, or buffers it until the consumer is registered.
    fn deliver(&mut self, message: ConsumerMessage) {
        match &self.tx {
            // a consumer that is gone drops it
            Some(tx) => {
                let _ = tx.send(message);
            }
            None => self.fifo.push_back(message),
        }
    }

    /// Registers the consumer and hands it what was buffered for it.
    fn register_tx(&mut self, tx: mpsc::UnboundedSender<ConsumerMessage>) {
        self.expiration = None;
        while let Some(message) = self.fifo.pop_front() {
            let _ = tx.send(message);
        }
        self.tx = Some(tx);
    }
}

/// Where a channel is in the sequence of a message's frames.
enum State {
    Initial,
    Deliver,
    GetOk,
    Return,
}

/// What the reader does with a channel after one of its frames.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// The channel stays open.
    Open,
    /// The channel is closed: the reader removes it and frees its id.
    Closed,
}

/// The messages being put together from a method frame and its content frames.
struct ContentBuffers {
    message: ConsumerMessage,
    ret: ReturnMessage,
    getok: GetOkMessage,
}

impl ContentBuffers {
    fn new() -> Self {
        Self {
            message: ConsumerMessage {
                deliver: None,
                basic_properties: None,
                content: None,
                remaining: 0,
            },
            ret: ReturnMessage {
                ret: None,
                basic_properties: None,
                content: None,
                remaining: 0,
            },
            getok: GetOkMessage {
                content: None,
                remaining: 0,
            },
        }
    }
}

/// One open channel's handling of what the server sends on it: deliveries put together
/// and passed to their consumers, basic.get replies, returns, confirms and the server's
/// requests passed to the channel's callback, and replies to synchronous requests
/// passed to whoever waits for them.
pub(crate) struct ChannelDispatcher {
    channel_id: AmqpChannelId,
    /// The channel's handle, for its callback and its open flag; attached right after
    /// the channel is made, before the server can send anything on it.
    channel: Option<Channel>,
    consumer_resources: HashMap<String, ConsumerResource>,
    get_content_responder: Option<mpsc::UnboundedSender<IncomingMessage>>,
    callback: Option<Box<dyn ChannelCallback + Send + 'static>>,
    state: State,
    buffers: ContentBuffers,
    /// The server closed the channel while our own close was on its way: its close-ok
    /// to ours is still to come, and the channel stays known until then.
    closing_both_ways: bool,
}

impl ChannelDispatcher {
    /// A dispatcher for a channel being opened; the reader assigns its id.
    pub(crate) fn new() -> Self {
        Self {
            channel_id: 0,
            channel: None,
            consumer_resources: HashMap::new(),
            get_content_responder: None,
            callback: None,
            state: State::Initial,
            buffers: ContentBuffers::new(),
            closing_both_ways: false,
        }
    }

    /// Records the channel's id, once the reader allocated it.
    pub(crate) fn assign_id(&mut self, channel_id: AmqpChannelId) {
        self.channel_id = channel_id;
    }

    /// Marks the channel open (once the server's channel.open-ok arrived) or closed, for
    /// everyone holding its handle.
    pub(crate) fn set_open(&self, open: bool) {
        if let Some(channel) = &self.channel {
            channel.set_is_open(open);
        }
    }

    /// The channel's callback and the handle it is called with, once both are there.
    fn callback(&mut self) -> Option<(&mut Box<dyn ChannelCallback + Send + 'static>, &Channel)> {
        Some((self.callback.as_mut()?, self.channel.as_ref()?))
    }

    /// Carries out a command from the channel's handle.
    pub(crate) fn command(
        &mut self,
        command: DispatcherManagementCommand,
        responders: &mut Responders,
    ) {
        match command {
            DispatcherManagementCommand::Attach(channel) => {
                self.channel = Some(channel);
            }
            DispatcherManagementCommand::RegisterContentConsumer(cmd) => {
                self.consumer_resource(&cmd.consumer_tag)
                    .register_tx(cmd.consumer_tx);
            }
            DispatcherManagementCommand::DeregisterContentConsumer(cmd) => {
                self.consumer_resources.remove(&cmd.consumer_tag);
            }
            DispatcherManagementCommand::RegisterGetContentResponder(cmd) => {
                self.get_content_responder = Some(cmd.tx);
            }
            DispatcherManagementCommand::RegisterOneshotResponder(cmd) => {
                responders.insert(cmd.method_header, cmd.responder);
                // the caller may have stopped waiting
                let _ = cmd.acker.send(());
            }
            DispatcherManagementCommand::RegisterChannelCallback(cmd) => {
                self.callback = Some(cmd.callback);
            }
        }
    }

    /// The resource for `consumer_tag`, made (buffering, with an expiry) when missing.
    /// Making one first drops the resources whose expiry passed, so deliveries for a
    /// consumer that is never registered (or that arrive after it was cancelled) are
    /// kept for a while, not for the channel's whole life.
    fn consumer_resource(&mut self, consumer_tag: &str) -> &mut ConsumerResource {
        if !self.consumer_resources.contains_key(consumer_tag) {
            let now = time::Instant::now();
            self.consumer_resources
                .retain(|_, resource| resource.expiration.map_or(true, |at| at > now));
        }
        self.consumer_resources
            .entry(consumer_tag.to_string())
            .or_insert_with(ConsumerResource::new)
    }

    /// Hands a whole delivery to its consumer, or buffers it until the consumer is
    /// registered.
    fn forward_deliver(&mut self, message: ConsumerMessage) {
        let Some(deliver) = message.deliver.as_ref() else {
            return;
        };
        let tag = deliver.consumer_tag();
        // one lookup, and no String made, for a consumer already known
        if let Some(resource) = self.consumer_resources.get_mut(tag.as_str()) {
            resource.deliver(message);
            return;
        }
        self.consumer_resource(tag).deliver(message);
    }

    /// Handles one frame the server sent on this channel. Sends the replies the
    /// protocol asks of the client (channel.close-ok, flow-ok, cancel-ok) through
    /// `outgoing`. An error is the server's protocol error, which ends the connection.
    pub(crate) async fn handle_frame(
        &mut self,
        frame: Frame,
        responders: &mut Responders,
        outgoing: &mpsc::Sender<OutgoingMessage>,
    ) -> Result<Next, String> {
        let channel_id = self.channel_id;
        match frame {
            // the reply to our channel.close
            Frame::CloseChannelOk(method_header, close_channel_ok) => {
                self.set_open(false);
                match responders.remove(method_header) {
                    // the closer may have stopped waiting; the channel is closed all the same
                    Some(responder) => {
                        let _ = responder.send(close_channel_ok.into_frame());
                        Ok(Next::Closed)
                    }
                    None if self.closing_both_ways => Ok(Next::Closed),
                    None => Err(format!(
                        "channel.close-ok on channel {channel_id}, which nobody was closing"
                    )),
                }
            }
            // the server closes the channel
            Frame::CloseChannel(_, close_channel) => {
                if let Some((cb, channel)) = self.callback() {
                    if let Err(_err) = cb.close(channel, close_channel).await {
                        // no reply to the server then
                        self.set_open(false);
                        return Ok(Next::Closed);
                    }
                }
                self.set_open(false);
                reply(outgoing, (channel_id, CloseChannelOk.into_frame()));
                // Our own close crossed the server's: the server answers it with a
                // close-ok, which must still find the channel. Whoever waits for it
                // learns now that the channel is closed.
                if let Some(responder) = responders.remove(CloseChannelOk::header()) {
                    let _ = responder.send(CloseChannelOk.into_frame());
                    self.closing_both_ways = true;
                    return Ok(Next::Open);
                }
                Ok(Next::Closed)
            }
            // the method frames followed by content frames
            frame @ (Frame::GetEmpty(..)
            | Frame::GetOk(..)
            | Frame::Return(..)
            | Frame::Deliver(..)
            | Frame::ContentHeader(..)
            | Frame::ContentBody(..)) => {
                self.handle_content(frame).await?;
                Ok(Next::Open)
            }
            // replies to synchronous requests
            Frame::FlowOk(method_header, _)
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
            | Frame::TxRollbackOk(method_header, _) => match responders.remove(method_header) {
                // the caller may have stopped waiting
                Some(responder) => {
                    let _ = responder.send(frame);
                    Ok(Next::Open)
                }
                // after the server's close, a reply to a request that crossed it is dropped
                None if self.closing_both_ways => Ok(Next::Open),
                None => Err(format!(
                    "{} on channel {channel_id}, which nobody asked for",
                    crate::net::frame_name(&frame)
                )),
            },
            // the server's requests
            Frame::Flow(_, flow) => {
                if let Some((cb, channel)) = self.callback() {
                    match cb.flow(channel, flow.active).await {
                        Ok(active) => {
                            reply(outgoing, (channel_id, FlowOk::new(active).into_frame()))
                        }
                        Err(_err) => {}
                    }
                }
                Ok(Next::Open)
            }
            Frame::Cancel(_, cancel) => {
                if let Some((cb, channel)) = self.callback() {
                    let consumer_tag = cancel.consumer_tag().clone();
                    let no_wait = cancel.no_wait();
                    match cb.cancel(channel, cancel).await {
                        Ok(()) => {
                            // the consumer's queue ends with its resource
                            self.consumer_resources.remove(&consumer_tag);
                            if !no_wait {
                                if let Ok(tag) = consumer_tag.try_into() {
                                    reply(outgoing, (channel_id, CancelOk::new(tag).into_frame()));
                                }
                            }
                        }
                        Err(_err) => {}
                    }
                }
                Ok(Next::Open)
            }
            // publisher confirms
            Frame::Ack(_, ack) => {
                if let Some((cb, channel)) = self.callback() {
                    cb.publish_ack(channel, ack).await;
                }
                Ok(Next::Open)
            }
            Frame::Nack(_, nack) => {
                if let Some((cb, channel)) = self.callback() {
                    cb.publish_nack(channel, nack).await;
                }
                Ok(Next::Open)
            }
            other => Err(format!(
                "{} on channel {channel_id}, which a client never receives",
                crate::net::frame_name(&other)
            )),
        }
    }

    /// A delivery, get-ok or return starts a message whose content header and body
    /// frames follow; everything out of that order is the peer's protocol error.
    async fn handle_content(&mut self, frame: Frame) -> Result<(), String> {
        let channel_id = self.channel_id;
        let buffers = &mut self.buffers;
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
                let capacity = body_size.min(1 << 20);
                match self.state {
                    State::Deliver if buffers.message.content.is_none() => {
                        buffers.message.remaining = body_size;
                        buffers.message.basic_properties = Some(header.basic_properties);
                        buffers.message.content = Some(Vec::with_capacity(capacity));
                    }
                    State::GetOk if buffers.getok.content.is_none() => {
                        if let Some(responder) = self.get_content_responder.as_ref() {
                            let _ = responder.send(header.into_frame());
                        }
                        buffers.getok.remaining = body_size;
                        buffers.getok.content = Some(Vec::with_capacity(capacity));
                    }
                    State::Return if buffers.ret.content.is_none() => {
                        buffers.ret.remaining = body_size;
                        buffers.ret.basic_properties = Some(header.basic_properties);
                        buffers.ret.content = Some(Vec::with_capacity(capacity));
                    }
                    _ => {
                        return Err(format!(
                            "a content header out of place on channel {channel_id}"
                        ))
                    }
                }
                self.finish_content().await;
            }
            Frame::ContentBody(body) => {
                let (content, remaining) = match self.state {
                    State::Deliver => (
                        buffers.message.content.as_mut(),
                        &mut buffers.message.remaining,
                    ),
                    State::GetOk => (buffers.getok.content.as_mut(), &mut buffers.getok.remaining),
                    State::Return => (buffers.ret.content.as_mut(), &mut buffers.ret.remaining),
                    State::Initial => (None, &mut buffers.message.remaining),
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
                self.finish_content().await;
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

    /// Hands a message on once its header and every byte of its body are in, and waits
    /// for the next one.
    async fn finish_content(&mut self) {
        let buffers = &mut self.buffers;
        match self.state {
            State::Deliver
                if buffers.message.content.is_some() && buffers.message.remaining == 0 =>
            {
                let message = ConsumerMessage {
                    deliver: buffers.message.deliver.take(),
                    basic_properties: buffers.message.basic_properties.take(),
                    content: buffers.message.content.take(),
                    remaining: 0,
                };
                self.state = State::Initial;
                self.forward_deliver(message);
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
                let ret = buffers.ret.ret.take();
                self.state = State::Initial;
                if let (Some(ret), Some((cb, channel))) = (ret, self.callback()) {
                    cb.publish_return(channel, ret, properties, content).await;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::{sync::mpsc, time};

    use super::{ChannelDispatcher, Next, Responders, CONSUMER_EXPIRY_PERIOD};
    use crate::{
        api::channel::{
            ConsumerMessage, DispatcherManagementCommand, RegisterContentConsumer,
            RegisterOneshotResponder,
        },
        frame::{
            CloseChannel, CloseChannelOk, ContentBody, ContentHeader, ContentHeaderCommon, FlowOk,
            Frame,
        },
        net::OutgoingMessage,
        BasicProperties,
    };

    /// A basic.deliver frame for `consumer_tag`, decoded from its bytes on the wire.
    fn deliver(consumer_tag: &str, delivery_tag: u64) -> Frame {
        let mut payload = vec![0, 60, 0, 60];
        payload.push(consumer_tag.len() as u8);
        payload.extend_from_slice(consumer_tag.as_bytes());
        payload.extend_from_slice(&delivery_tag.to_be_bytes());
        payload.push(0); // redelivered
        payload.extend_from_slice(&[0]); // exchange ""
        payload.extend_from_slice(&[1, b'q']); // routing key "q"
        let mut wire = vec![1, 0, 1];
        wire.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        wire.extend_from_slice(&payload);
        wire.push(0xCE);
        let (_, _, frame) = Frame::decode(&wire).unwrap().unwrap();
        frame
    }

    fn header(body_size: u64) -> Frame {
        ContentHeader::new(
            ContentHeaderCommon {
                class: 60,
                weight: 0,
                body_size,
            },
            BasicProperties::default(),
        )
        .into_frame()
    }

    fn body(bytes: &[u8]) -> Frame {
        ContentBody::new(bytes.to_vec()).into_frame()
    }

    struct Fixture {
        dispatcher: ChannelDispatcher,
        responders: Responders,
        outgoing_tx: mpsc::Sender<OutgoingMessage>,
        outgoing_rx: mpsc::Receiver<OutgoingMessage>,
    }

    impl Fixture {
        fn new() -> Self {
            Self::with_writer_queue(16)
        }

        fn with_writer_queue(capacity: usize) -> Self {
            let (outgoing_tx, outgoing_rx) = mpsc::channel(capacity);
            let mut dispatcher = ChannelDispatcher::new();
            dispatcher.assign_id(7);
            Self {
                dispatcher,
                responders: Responders::new(),
                outgoing_tx,
                outgoing_rx,
            }
        }

        async fn feed(&mut self, frame: Frame) -> Result<Next, String> {
            self.dispatcher
                .handle_frame(frame, &mut self.responders, &self.outgoing_tx)
                .await
        }

        fn register(&mut self, tag: &str) -> mpsc::UnboundedReceiver<ConsumerMessage> {
            let (consumer_tx, consumer_rx) = mpsc::unbounded_channel();
            self.dispatcher.command(
                DispatcherManagementCommand::RegisterContentConsumer(RegisterContentConsumer {
                    consumer_tag: tag.to_string(),
                    consumer_tx,
                }),
                &mut self.responders,
            );
            consumer_rx
        }

        fn await_reply(&mut self, frame: &Frame) -> tokio::sync::oneshot::Receiver<Frame> {
            let method_header = match frame {
                Frame::FlowOk(header, _) | Frame::CloseChannelOk(header, _) => *header,
                other => panic!("no reply header for {other}"),
            };
            let (responder, responder_rx) = tokio::sync::oneshot::channel();
            let (acker, _acker_rx) = tokio::sync::oneshot::channel();
            self.dispatcher.command(
                DispatcherManagementCommand::RegisterOneshotResponder(RegisterOneshotResponder {
                    method_header,
                    responder,
                    acker,
                }),
                &mut self.responders,
            );
            responder_rx
        }
    }

    fn tag_and_content(message: ConsumerMessage) -> (u64, Vec<u8>) {
        (
            message.deliver.unwrap().delivery_tag(),
            message.content.unwrap(),
        )
    }

    #[tokio::test]
    async fn a_delivery_reaches_its_consumer_whole_once_its_last_body_frame_is_in() {
        let mut fixture = Fixture::new();
        let mut consumer = fixture.register("c1");
        for frame in [deliver("c1", 1), header(10), body(b"0123")] {
            assert_eq!(fixture.feed(frame).await, Ok(Next::Open));
            assert!(
                consumer.try_recv().is_err(),
                "handed on before it was whole"
            );
        }
        assert_eq!(fixture.feed(body(b"456789")).await, Ok(Next::Open));
        let (tag, content) = tag_and_content(consumer.try_recv().unwrap());
        assert_eq!((tag, content.as_slice()), (1, &b"0123456789"[..]));
        // an empty body needs no body frame
        fixture.feed(deliver("c1", 2)).await.unwrap();
        fixture.feed(header(0)).await.unwrap();
        assert_eq!(tag_and_content(consumer.try_recv().unwrap()), (2, vec![]));
    }

    #[tokio::test]
    async fn deliveries_before_the_consumer_is_registered_are_handed_over_in_order() {
        let mut fixture = Fixture::new();
        for tag in 1..=3 {
            for frame in [deliver("late", tag), header(1), body(&[tag as u8])] {
                fixture.feed(frame).await.unwrap();
            }
        }
        let mut consumer = fixture.register("late");
        fixture.feed(deliver("late", 4)).await.unwrap();
        fixture.feed(header(1)).await.unwrap();
        fixture.feed(body(&[4])).await.unwrap();
        let tags: Vec<u64> = std::iter::from_fn(|| consumer.try_recv().ok())
            .map(|message| tag_and_content(message).0)
            .collect();
        assert_eq!(tags, vec![1, 2, 3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn deliveries_nobody_registers_for_are_dropped_after_the_expiry() {
        let mut fixture = Fixture::new();
        for frame in [deliver("ghost", 1), header(0)] {
            fixture.feed(frame).await.unwrap();
        }
        time::advance(CONSUMER_EXPIRY_PERIOD / 2).await;
        fixture.register("live");
        assert_eq!(
            fixture.dispatcher.consumer_resources.len(),
            2,
            "not expired yet"
        );
        time::advance(CONSUMER_EXPIRY_PERIOD).await;
        for frame in [deliver("other", 2), header(0)] {
            fixture.feed(frame).await.unwrap();
        }
        let mut left: Vec<&String> = fixture.dispatcher.consumer_resources.keys().collect();
        left.sort();
        assert_eq!(left, vec!["live", "other"], "the registered consumer stays");
    }

    #[tokio::test]
    async fn content_out_of_place_is_the_servers_protocol_error() {
        let cases: Vec<(Vec<Frame>, &str)> = vec![
            (vec![body(b"x")], "content body out of place"),
            (vec![header(1)], "content header out of place"),
            (
                vec![deliver("c", 1), deliver("c", 2)],
                "deliver in the middle",
            ),
            (
                vec![deliver("c", 1), header(2), body(b"xyz")],
                "3 bytes where 2 were left",
            ),
            (
                vec![deliver("c", 1), header(1), header(1)],
                "content header out of place",
            ),
        ];
        for (frames, expected) in cases {
            let mut fixture = Fixture::new();
            let mut result = Ok(Next::Open);
            for frame in frames {
                result = fixture.feed(frame).await;
                if result.is_err() {
                    break;
                }
            }
            let error = result.unwrap_err();
            assert!(
                error.contains(expected),
                "{error:?} should say {expected:?}"
            );
            assert!(error.contains("channel 7"), "{error:?}");
        }
    }

    #[tokio::test]
    async fn a_reply_reaches_who_waits_for_it_and_an_unasked_reply_is_an_error() {
        let mut fixture = Fixture::new();
        let reply = FlowOk::new(true).into_frame();
        let waiting = fixture.await_reply(&reply);
        assert_eq!(fixture.feed(reply).await, Ok(Next::Open));
        assert!(matches!(waiting.await, Ok(Frame::FlowOk(..))));
        let error = fixture
            .feed(FlowOk::new(true).into_frame())
            .await
            .unwrap_err();
        assert!(error.contains("nobody asked for"), "{error}");
    }

    #[tokio::test]
    async fn the_servers_close_is_answered_and_ends_the_channel() {
        let mut fixture = Fixture::new();
        let next = fixture.feed(CloseChannel::default().into_frame()).await;
        assert_eq!(next, Ok(Next::Closed));
        let (channel_id, answer) = fixture.outgoing_rx.try_recv().unwrap();
        assert_eq!(channel_id, 7);
        assert!(matches!(answer, Frame::CloseChannelOk(..)));
        // our own close-ok without a close of ours is an error
        let error = Fixture::new()
            .feed(CloseChannelOk.into_frame())
            .await
            .unwrap_err();
        assert!(error.contains("nobody was closing"), "{error}");
    }

    #[tokio::test]
    async fn a_full_writer_queue_never_stops_the_reader_and_the_reply_still_goes_out() {
        let mut fixture = Fixture::with_writer_queue(1);
        fixture
            .outgoing_tx
            .try_send((7, FlowOk::new(true).into_frame()))
            .unwrap();
        let next = time::timeout(
            time::Duration::from_secs(5),
            fixture.feed(CloseChannel::default().into_frame()),
        )
        .await
        .expect("the reader waited for the writer");
        assert_eq!(next, Ok(Next::Closed));
        assert!(matches!(
            fixture.outgoing_rx.recv().await,
            Some((7, Frame::FlowOk(..)))
        ));
        assert!(matches!(
            fixture.outgoing_rx.recv().await,
            Some((7, Frame::CloseChannelOk(..)))
        ));
    }

    #[tokio::test]
    async fn closes_that_cross_keep_the_channel_until_the_servers_close_ok() {
        let mut fixture = Fixture::new();
        let waiting = fixture.await_reply(&CloseChannelOk.into_frame());
        // the server's close arrives while ours is on its way
        let next = fixture.feed(CloseChannel::default().into_frame()).await;
        assert_eq!(
            next,
            Ok(Next::Open),
            "the server's close-ok is still to come"
        );
        assert!(matches!(waiting.await, Ok(Frame::CloseChannelOk(..))));
        assert!(matches!(
            fixture.outgoing_rx.try_recv(),
            Ok((7, Frame::CloseChannelOk(..)))
        ));
        // a reply to a request that crossed the close is dropped quietly
        assert_eq!(
            fixture.feed(FlowOk::new(true).into_frame()).await,
            Ok(Next::Open)
        );
        let next = fixture.feed(CloseChannelOk.into_frame()).await;
        assert_eq!(next, Ok(Next::Closed));
    }
}
