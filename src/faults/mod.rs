//! Faults: network faults through proxies between clients and the broker (an embedded
//! Toxiproxy-compatible server, or a real Toxiproxy), node faults through the broker
//! module, both on a timeline.

pub mod api;
pub mod client;
pub mod control;
pub mod network;
pub mod nodes;
pub mod outcome;
pub mod proxy;
pub mod runner;
pub mod timeline;
pub mod toxics;

pub use proxy::{EngineError, ProxyInfo, Registry};
