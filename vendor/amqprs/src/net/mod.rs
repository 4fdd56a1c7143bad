mod channel_id_repo;
mod channel_manager;
mod error;
mod reader_handler;
mod split_connection;
mod writer_handler;

pub(crate) use channel_manager::*;
pub(crate) use error::*;
pub(crate) use reader_handler::*;
pub(crate) use split_connection::*;
pub(crate) use writer_handler::*;
/////////////////////////////////////////////////////////////////////////////
use crate::{
    api::callbacks::ConnectionCallback,
    frame::{Frame, MethodHeader},
};
use amqp_serde::types::AmqpChannelId;
use tokio::sync::oneshot;

pub type OutgoingMessage = (AmqpChannelId, Frame);

/// warren: why a connection's I/O stopped on its own account: a protocol error found in
/// what the peer sent (by the reader or a channel's dispatcher), recorded once, and the
/// wake-up that makes the reader shut the connection down.
#[derive(Debug, Default)]
pub(crate) struct ConnectionFailure {
    reason: std::sync::Mutex<Option<String>>,
    wake: tokio::sync::Notify,
}

impl ConnectionFailure {
    /// Records `reason` (the first one wins) and wakes the reader.
    pub(crate) fn fail(&self, reason: String) {
        let mut slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        drop(slot);
        self.wake.notify_one();
    }

    /// The recorded reason, if any.
    pub(crate) fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Returns once [`ConnectionFailure::fail`] was called (before or after this call).
    pub(crate) async fn failed(&self) {
        self.wake.notified().await
    }
}

pub(crate) type IncomingMessage = Frame;

pub(crate) struct RegisterChannelResource {
    /// If None, `net` handler will allocate a channel id for client
    pub channel_id: Option<AmqpChannelId>,
    /// send `None` to client if `net` handler fail to allocate a channel id
    pub acker: oneshot::Sender<Option<AmqpChannelId>>,
    pub resource: ChannelResource,
}

pub(crate) struct RegisterResponder {
    pub channel_id: AmqpChannelId,
    pub method_header: &'static MethodHeader,
    pub responder: oneshot::Sender<IncomingMessage>,
    pub acker: oneshot::Sender<()>,
}

pub(crate) struct RegisterConnectionCallback {
    pub callback: Box<dyn ConnectionCallback + Send + 'static>,
}

pub(crate) enum ConnManagementCommand {
    RegisterChannelResource(RegisterChannelResource),
    DeregisterChannelResource(AmqpChannelId),

    RegisterResponder(RegisterResponder),
    RegisterConnectionCallback(RegisterConnectionCallback),
}
