use std::collections::{BTreeMap, HashMap};

use amqp_serde::types::{AmqpChannelId, ShortUint};
use tokio::sync::oneshot;

use crate::{api::channel::ChannelDispatcher, frame::MethodHeader};

use super::{channel_id_repo::ChannelIdRepository, ChannelCommand, IncomingMessage};

pub(crate) struct ChannelResource {
    /// responder to acknowledge synchronous request
    /// responders are oneshot channel, which are not dedicated resource for channel
    pub responders: HashMap<&'static MethodHeader, oneshot::Sender<IncomingMessage>>,

    /// connection's default channel does not have dispatcher
    /// each channel has one and only one dispatcher (warren: owned here, by the reader)
    pub dispatcher: Option<Box<ChannelDispatcher>>,

    /// warren: which opening of the channel id this is (see the channel's `serial`)
    pub serial: u64,
}

impl ChannelResource {
    pub(crate) fn new(dispatcher: Option<Box<ChannelDispatcher>>, serial: u64) -> Self {
        Self {
            responders: HashMap::new(),
            dispatcher,
            serial,
        }
    }
}
pub(super) struct ChannelManager {
    /// channel id manager to allocate, reserve, and free id
    /// Keep the id manager out of AMQ connection type and use registeration machanism to manage id,
    /// which allows a slim Connection type that can be easily shared concurrently
    /// If we have the id manager in AMQ Connection type, then shared Connection object need to be mutable concurrently
    channel_id_repo: ChannelIdRepository,

    /// channel resource registery store
    resource: BTreeMap<AmqpChannelId, ChannelResource>,
}

impl ChannelManager {
    pub fn new(channel_max: ShortUint) -> Self {
        Self {
            channel_id_repo: ChannelIdRepository::new(channel_max),
            resource: BTreeMap::new(),
        }
    }
    /// Insert channel resource, when open a new channel
    pub fn insert_resource(
        &mut self,
        channel_id: Option<AmqpChannelId>,
        resource: ChannelResource,
    ) -> Option<AmqpChannelId> {
        let id = match channel_id {
            // reserve channel id as requested
            Some(id) => {
                // connection's default channel 0 is static reserved
                if (id == 0 && !self.resource.contains_key(&0)) || self.channel_id_repo.reserve(id)
                {
                    id
                } else {
                    // fail to reserve the id
                    return None;
                }
            }
            // allocate a channel id
            // warren: fails when every channel id up to channel_max is taken
            None => self.channel_id_repo.allocate()?,
        };
        let mut resource = resource;
        if let Some(dispatcher) = resource.dispatcher.as_mut() {
            dispatcher.assign_id(id);
        }
        self.resource.insert(id, resource);
        Some(id)
    }

    /// remove channel resource, when channel to be closed
    pub fn remove_resource(&mut self, channel_id: &AmqpChannelId) -> Option<ChannelResource> {
        // warren: releasing an id twice is harmless (it was asserted against)
        if *channel_id != 0 {
            self.channel_id_repo.release(*channel_id);
        }
        // remove responder means channel is to be  closed
        self.resource.remove(channel_id)
    }

    /// warren: the resource of an open channel, for the reader to hand it a frame.
    pub fn get_mut(&mut self, channel_id: &AmqpChannelId) -> Option<&mut ChannelResource> {
        self.resource.get_mut(channel_id)
    }

    /// warren: hands `command` to its channel's dispatcher. A command for a channel that
    /// is closed by now (or whose id a later channel got) is dropped, and whoever waits
    /// for its acknowledgement learns so.
    pub fn command(&mut self, command: ChannelCommand) {
        let ChannelCommand {
            channel_id,
            serial,
            command,
        } = command;
        match self.resource.get_mut(&channel_id) {
            Some(ChannelResource {
                responders,
                dispatcher: Some(dispatcher),
                serial: current,
            }) if *current == serial => dispatcher.command(command, responders),
            _ => {}
        }
    }

    /// warren: marks every open channel closed, when the connection ends.
    pub fn close_all(&mut self) {
        for resource in self.resource.values() {
            if let Some(dispatcher) = &resource.dispatcher {
                dispatcher.set_open(false);
            }
        }
    }

    pub fn insert_responder(
        &mut self,
        channel_id: &AmqpChannelId,
        method_header: &'static MethodHeader,
        responder: oneshot::Sender<IncomingMessage>,
    ) -> Option<oneshot::Sender<IncomingMessage>> {
        self.resource
            .get_mut(channel_id)?
            .responders
            .insert(method_header, responder)
    }

    pub fn remove_responder(
        &mut self,
        channel_id: &AmqpChannelId,
        method_header: &'static MethodHeader,
    ) -> Option<oneshot::Sender<IncomingMessage>> {
        self.resource
            .get_mut(channel_id)?
            .responders
            .remove(method_header)
    }
}
