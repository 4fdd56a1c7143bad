use amqp_serde::types::ShortUint;
use tokio::{
    sync::{broadcast, mpsc},
    task::yield_now,
    time,
};

use crate::{
    connection::Connection,
    frame::{Frame, HeartBeat, DEFAULT_CONN_CHANNEL},
};

use super::{BufIoWriter, OutgoingMessage};

/// warren: how many bytes of queued frames one write may carry.
const COALESCE_UP_TO: usize = 64 * 1024;

pub(crate) struct WriterHandler {
    stream: BufIoWriter,
    /// receiver half to forward outgoing messages from AMQ connection/channel to server
    outgoing_rx: mpsc::Receiver<OutgoingMessage>,
    /// listener of shutdown signal
    shutdown: broadcast::Receiver<bool>,
    /// connection
    amqp_connection: Connection,
}

impl WriterHandler {
    pub fn new(
        stream: BufIoWriter,
        outgoing_rx: mpsc::Receiver<OutgoingMessage>,
        shutdown: broadcast::Receiver<bool>,
        amqp_connection: Connection,
    ) -> Self {
        Self {
            stream,
            outgoing_rx,
            shutdown,
            amqp_connection,
        }
    }

    pub async fn run_until_shutdown(self, heartbeat: ShortUint) {
        let Self {
            mut stream,
            mut outgoing_rx,
            mut shutdown,
            amqp_connection,
        } = self;
        // to take in acount network delay and congestion
        // heartbeat should be sent at a interval of timeout / 2
        // warren: in milliseconds (a heartbeat of 1 s gave an interval of 0 s, and the
        // writer sent heartbeats without pause); 0 means no heartbeats at all.
        let interval = time::Duration::from_millis(u64::from(heartbeat) * 500);
        // warren: one heartbeat timer and one shutdown wait for the whole loop. A new
        // sleep each turn put a timer into the runtime's wheel and took it out again for
        // every frame written; now a write only notes its time, and the timer, when it
        // fires, sends a heartbeat if nothing was written for an interval, or waits on.
        let mut last_write = time::Instant::now();
        let heartbeat_due = time::sleep_until(last_write + interval);
        tokio::pin!(heartbeat_due);
        let shutdown_signal = shutdown.recv();
        tokio::pin!(shutdown_signal);

        loop {
            tokio::select! {
                biased;

                channel_frame = outgoing_rx.recv() => {
                    let (channel_id, frame) = match channel_frame {
                        None => break,
                        Some(v) => v,
                    };
                    // warren: the frames already queued behind this one go out in the same
                    // write (up to COALESCE_UP_TO bytes): one system call for a burst of
                    // publishes instead of one each. A frame alone is written at once.
                    let frame_max = amqp_connection.frame_max();
                    let mut buffered = stream.buffer_frame(channel_id, frame, frame_max).await;
                    while buffered.is_ok() && stream.buffered() < COALESCE_UP_TO {
                        match outgoing_rx.try_recv() {
                            Ok((channel_id, frame)) => {
                                buffered = stream.buffer_frame(channel_id, frame, frame_max).await;
                            }
                            Err(_) => break,
                        }
                    }
                    // warren: a peer that stops reading (a blackhole) blocks the write
                    // forever; the reader's shutdown (missed heartbeats) must still end it
                    let written = match buffered {
                        Ok(()) => tokio::select! {
                            biased;
                            written = stream.flush_buffered() => written.map(|_| ()),
                            _ = &mut shutdown_signal => break,
                        },
                        Err(err) => Err(err),
                    };
                    if let Err(_err) = written {
                        break;
                    }
                    last_write = time::Instant::now();
                }
                () = &mut heartbeat_due, if !interval.is_zero() => {
                    let now = time::Instant::now();
                    if last_write + interval <= now {
                        let frame_max = amqp_connection.frame_max();
                        let written = tokio::select! {
                            biased;
                            written = stream.write_frame(DEFAULT_CONN_CHANNEL, Frame::HeartBeat(HeartBeat), frame_max) => written,
                            _ = &mut shutdown_signal => break,
                        };
                        if let Err(_err) = written {
                            break;
                        }
                        last_write = time::Instant::now();
                    }
                    heartbeat_due.as_mut().reset(last_write + interval);
                }
                _ = &mut shutdown_signal => {
                    // try to give last chance for last message.
                    yield_now().await;
                    break;
                }
                else => {
                    break;
                }
            }
        }
        amqp_connection.set_is_open(false);

        // warren: a TLS close_notify cannot block forever on a peer that reads nothing
        let closed = time::timeout(time::Duration::from_secs(1), stream.close()).await;
        if let Ok(Err(_err)) = closed {}
    }
}
