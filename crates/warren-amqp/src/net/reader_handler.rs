use amqp_serde::types::{AmqpChannelId, ShortUint};
use tokio::{
    sync::{
        broadcast,
        mpsc::{Receiver, Sender},
    },
    task::yield_now,
    time,
};

use crate::{
    api::channel::Next,
    api::{callbacks::ConnectionCallback, connection::Connection},
    frame::{CloseOk, Frame, DEFAULT_CONN_CHANNEL},
};

use super::{
    channel_manager::ChannelManager, BufIoReader, ConnManagementCommand, Error, OutgoingMessage,
};

/////////////////////////////////////////////////////////////////////////////

/// After two missed heartbeats, the peer is considered to be unreachable according to [spec](https://www.rabbitmq.com/docs/heartbeats#heartbeats-interval)
const MAX_HEARTBEAT_MISS: u64 = 2;

pub(crate) struct ReaderHandler {
    stream: BufIoReader,

    /// AMQ connection
    amqp_connection: Connection,

    /// sender half to forward outgoing message to `WriterHandler`
    outgoing_tx: Sender<OutgoingMessage>,

    /// receiver half to receive management command from AMQ Connection/Channel
    conn_mgmt_rx: Receiver<ConnManagementCommand>,

    /// AMQP protocol layer callbacks
    callback: Option<Box<dyn ConnectionCallback + Send + 'static>>,

    channel_manager: ChannelManager,

    /// Notify WriterHandler to shutdown.
    /// If reader handler exit first, it will notify writer handler to shutdown.
    /// If writer handler exit first, socket connection will be shutdown because the writer half drop,
    /// so socket read will return, and reader handler can detect connection shutdown without separate signal.
    ///
    /// send `true` if due to network I/O failure
    /// send `false` if other reasons
    shutdown_notifier: broadcast::Sender<bool>,
}

/// warren: the error for a reply that no request is waiting for.
fn unasked(what: &str, channel_id: AmqpChannelId) -> Error {
    Error::Protocol(format!(
        "{what} on channel {channel_id}, which nobody asked for"
    ))
}

/// warren: a frame's name for an error message, without its whole content.
pub(crate) fn frame_name(frame: &Frame) -> String {
    let text = format!("{frame:?}");
    let end = text.find(['(', ' ', '{']).unwrap_or(text.len());
    text[..end].to_string()
}

impl ReaderHandler {
    /// warren: records why the connection ends and tells the peer (connection.close
    /// with `code`, 501 FRAME_ERROR or 505 UNEXPECTED_FRAME), as far as the writer
    /// still can.
    fn protocol_error(&self, reason: String, code: ShortUint) {
        let short: String = reason.chars().take(200).collect();
        if let Ok(reply_text) = short.try_into() {
            let close = crate::frame::Close::new(code, reply_text, 0, 0);
            let _ = self
                .outgoing_tx
                .try_send((DEFAULT_CONN_CHANNEL, close.into_frame()));
        }
        self.amqp_connection.fail(reason);
    }

    pub fn new(
        stream: BufIoReader,
        amqp_connection: Connection,
        outgoing_tx: Sender<OutgoingMessage>,
        conn_mgmt_rx: Receiver<ConnManagementCommand>,
        channel_max: ShortUint,
        shutdown_notifier: broadcast::Sender<bool>,
    ) -> Self {
        Self {
            stream,
            amqp_connection,
            outgoing_tx,
            conn_mgmt_rx,
            callback: None,
            channel_manager: ChannelManager::new(channel_max),
            shutdown_notifier,
        }
    }

    /// If OK, user can continue to handle frame
    /// If NOK, user should stop consuming frame
    /// TODO: implement as Iterator, then user do not need to care about the error
    async fn handle_frame(&mut self, channel_id: AmqpChannelId, frame: Frame) -> Result<(), Error> {
        // handle only connection level frame,
        // channel level frames are forwarded to corresponding channel dispatcher
        match frame {
            // any received frame can be considered as heartbeat
            // nothing to handle with heartbeat frame.
            Frame::HeartBeat(_) => Ok(()),

            // Method frames for synchronous response
            // warren: a reply nobody asked for is a protocol error; a reply whose caller
            // stopped waiting (its own timeout) is dropped, not a reason to end the connection.
            Frame::OpenChannelOk(method_header, open_channel_ok) => {
                let resource = self
                    .channel_manager
                    .get_mut(&channel_id)
                    .ok_or_else(|| unasked("channel.open-ok", channel_id))?;
                let responder = resource
                    .responders
                    .remove(method_header)
                    .ok_or_else(|| unasked("channel.open-ok", channel_id))?;
                // warren: the channel is open from here on, whether or not its opener
                // still waits (a handle dropped later closes it again)
                if let Some(dispatcher) = &resource.dispatcher {
                    dispatcher.set_open(true);
                }
                let _ = responder.send(open_channel_ok.into_frame());
                Ok(())
            }
            Frame::CloseOk(method_header, close_ok) => {
                self.amqp_connection.set_is_open(false);

                // warren: the closer may have stopped waiting; the connection is closed
                // all the same
                if let Some(responder) = self
                    .channel_manager
                    .remove_responder(&channel_id, method_header)
                {
                    let _ = responder.send(close_ok.into_frame());
                }

                // Try to yield for last sent message to be scheduled.
                yield_now().await;
                Ok(())
            }

            // Method frames of asynchronous request
            // Server request to close connection
            Frame::Close(_, close) => {
                if let Some(ref mut callback) = self.callback {
                    if let Err(_err) = callback.close(&self.amqp_connection, close).await {
                        return Err(Error::Callback);
                    }
                }
                // respond to server if no callback registered or callback succeed
                self.amqp_connection.set_is_open(false);
                self.outgoing_tx
                    .send((DEFAULT_CONN_CHANNEL, CloseOk.into_frame()))
                    .await?;

                // Try to yield for last sent message to be scheduled.
                yield_now().await;
                Ok(())
            }

            Frame::Blocked(_, blocked) => {
                if let Some(ref mut callback) = self.callback {
                    callback
                        .blocked(&self.amqp_connection, blocked.reason.into())
                        .await;
                }
                Ok(())
            }
            Frame::Unblocked(_, _unblocked) => {
                if let Some(ref mut callback) = self.callback {
                    callback.unblocked(&self.amqp_connection).await;
                }
                Ok(())
            }
            Frame::UpdateSecretOk(method_header, update_secret_ok) => {
                let responder = self
                    .channel_manager
                    .remove_responder(&channel_id, method_header)
                    .ok_or_else(|| unasked("connection.update-secret-ok", channel_id))?;
                let _ = responder.send(update_secret_ok.into_frame());
                Ok(())
            }
            // warren: the channel's dispatcher handles every other frame here, in the
            // reader's turn (no task of its own to wake)
            _ => {
                // warren: a frame for a channel that is not open was unreachable!, which
                // killed the reader with no shutdown signal and left the connection hanging.
                let Some(resource) = self.channel_manager.get_mut(&channel_id) else {
                    return Err(Error::Protocol(format!(
                        "{} on channel {channel_id}, which is not open",
                        frame_name(&frame)
                    )));
                };
                // channel 0 is the connection's: no channel-level frame is for it
                let Some(dispatcher) = resource.dispatcher.as_mut() else {
                    return Err(Error::Protocol(format!(
                        "{} on channel {channel_id}, which is not open",
                        frame_name(&frame)
                    )));
                };
                let next = dispatcher
                    .handle_frame(frame, &mut resource.responders, &self.outgoing_tx)
                    .await
                    .map_err(Error::Protocol)?;
                if next == Next::Closed {
                    self.channel_manager.remove_resource(&channel_id);
                }
                Ok(())
            }
        }
    }

    pub async fn run_until_shutdown(mut self, heartbeat: ShortUint) {
        // max interval to consider heartbeat is timeout
        // warren: 0 means no heartbeats at all (both sides said 0): no deadline then,
        // instead of a deadline that has always passed.
        let max_interval: u64 = heartbeat.into();
        let max_wait = time::Duration::from_secs(max_interval);
        // warren: one deadline timer for the whole loop. A new sleep each turn put a timer
        // into the runtime's wheel and took it out again for every frame read; now a frame
        // only notes its time, and the timer, when it fires, counts a miss if nothing came
        // for a whole interval, or waits on.
        let mut quiet_since = time::Instant::now();
        let deadline = time::sleep_until(quiet_since + max_wait);
        tokio::pin!(deadline);
        let mut is_network_failure = false;
        let mut heartbeat_miss = 0;
        loop {
            tokio::select! {
                biased;

                command = self.conn_mgmt_rx.recv() => {
                    let command = match command {
                        // warren: was unreachable!; nothing can ask anything of this
                        // connection any more, so it ends.
                        None => break,
                        Some(v) => v,
                    };
                    match command {
                        ConnManagementCommand::RegisterChannelResource(cmd) => {
                            let id = self.channel_manager.insert_resource(cmd.channel_id, cmd.resource);
                            // warren: the caller may have stopped waiting (its own timeout):
                            // then nobody will use the channel, and its id is freed again.
                            if cmd.acker.send(id).is_err() {
                                if let Some(id) = id {
                                    self.channel_manager.remove_resource(&id);
                                }
                            }

                        },
                        ConnManagementCommand::Channel(cmd) => {
                            self.channel_manager.command(cmd);
                        },
                        ConnManagementCommand::RegisterResponder(cmd) => {
                            self.channel_manager.insert_responder(&cmd.channel_id, cmd.method_header, cmd.responder);
                            // warren: the caller may have stopped waiting
                            let _ = cmd.acker.send(());
                        },
                        ConnManagementCommand::RegisterConnectionCallback(cmd) => {
                            self.callback.replace(cmd.callback);
                        },
                    }
                }
                res = self.stream.read_frame() => {
                    // any frame can be considered as heartbeat
                    quiet_since = time::Instant::now();
                    heartbeat_miss = 0;

                    match res {
                        Ok((channel_id, frame)) => {
                            if let Err(err) = self.handle_frame(channel_id, frame).await {
                                // notify network failure
                                is_network_failure = true;
                                if let Error::Protocol(reason) = &err {
                                    self.protocol_error(reason.clone(), 505);
                                }
                                break;
                            }
                            // normal close
                            if !self.amqp_connection.is_open() {
                                break;
                            }
                        },
                        Err(err) => {
                            // notify network failure
                            is_network_failure = true;
                            // warren: bytes that are no AMQP frame are the peer's protocol
                            // error, not a network failure of ours
                            if let Error::Framing(reason) | Error::Serde(reason) = &err {
                                self.protocol_error(format!("malformed frame: {reason}"), 501);
                            }
                            break;
                        },
                    }
                }
                () = &mut deadline, if max_interval > 0 => {
                    // heartbeat deadline is updated whenever any frame received
                    // in normal case, expiration is always in the future due to received frame or heartbeats.
                    let now = time::Instant::now();
                    if quiet_since + max_wait <= now {
                        quiet_since = now;

                        // should call self.io_failure_notify.notify_one();?
                        heartbeat_miss += 1;
                        if heartbeat_miss >= MAX_HEARTBEAT_MISS {
                            // Shutdown connection due to heartbeat timeout
                            is_network_failure = true;
                            break;
                        }
                    }
                    deadline.as_mut().reset(quiet_since + max_wait);
                }
                else => {
                    break;
                }
            }
        }
        self.amqp_connection.set_is_open(false);
        // Nobody may be waiting for the shutdown any more.
        let _ = self.shutdown_notifier.send(is_network_failure);
        // warren: every channel ends with its connection; their callbacks and consumers'
        // queues are dropped with `self`
        self.channel_manager.close_all();
        // `self` will drop, so the `self.shutdown_notifier`
        // all tasks which have `subscribed` to `shutdown_notifier` will be notified
    }
}
