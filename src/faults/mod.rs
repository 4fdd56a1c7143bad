//! Faults: network faults through a proxy between clients and the broker, node faults
//! through the broker module. The proxy engine lives here; the fault timeline and the
//! Toxiproxy-compatible API build on it.

pub mod proxy;

pub use proxy::Proxy;
