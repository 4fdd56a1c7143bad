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

/// warren: why a connection's I/O stopped on its own account: a protocol error the
/// reader found in what the peer sent, recorded once.
#[derive(Debug, Default)]
pub(crate) struct ConnectionFailure {
    reason: std::sync::Mutex<Option<String>>,
}

impl ConnectionFailure {
    /// Records `reason`; the first one wins.
    pub(crate) fn fail(&self, reason: String) {
        let mut slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
    }

    /// The recorded reason, if any.
    pub(crate) fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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

/// warren: a command for one channel's dispatcher, which the reader owns.
pub(crate) struct ChannelCommand {
    pub channel_id: AmqpChannelId,
    /// Which opening of `channel_id` the command is for (see the channel's `serial`).
    pub serial: u64,
    pub command: crate::api::channel::DispatcherManagementCommand,
}

pub(crate) enum ConnManagementCommand {
    RegisterChannelResource(RegisterChannelResource),

    RegisterResponder(RegisterResponder),
    RegisterConnectionCallback(RegisterConnectionCallback),
    /// warren: a command for a channel's dispatcher
    Channel(ChannelCommand),
}
