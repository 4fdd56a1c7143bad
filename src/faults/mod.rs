//! Faults: network faults through proxies between clients and the broker (through
//! [`crate::toxiproxy`]: the embedded Toxiproxy-compatible server, or a real Toxiproxy),
//! node faults through the broker module, both on a timeline.

pub mod network;
pub mod nodes;
pub mod outcome;
pub mod runner;
pub mod timeline;
