//! warren's Toxiproxy: the TCP proxy engine that network faults go through, its toxics
//! (one file each), the Toxiproxy-compatible HTTP API that `warren toxiproxy` serves, the
//! client of a real Toxiproxy, and the control that drives either one. It knows nothing
//! of scenarios or brokers: `faults` and `broker` both use it.

pub mod api;
pub mod client;
pub mod control;
pub mod proxy;
pub mod toxics;

pub use proxy::{EngineError, ProxyInfo, Registry};
