//! warren's own face over its AMQP client (crates/warren-amqp, from amqprs 2.1.5): the rest of the code talks to these
//! types, so a change of client or of the client's API stays in this module.
//!
//! The client does its socket I/O in tasks on the caller's runtime, so on warren's one-thread
//! runtime a publish, its confirm and a delivery cross no thread (benches/README.md).

mod channel;
mod confirms;
mod connection;
mod endpoints;
mod failure;
mod probe;
mod tls;

pub use channel::{
    AmqpChannel, Deliveries, Delivery, PublishOutcome, PublishTarget, QueueSpec, QueueStatus,
    StreamStart,
};
pub use connection::{
    AmqpConnection, AmqpError, ConnectOptions, ConnectionEvent, connect, connect_with,
};
pub use endpoints::Endpoints;
pub use failure::{CLOSE_WITHIN, Failure, FailureKind, OPEN_WITHIN, within};
pub use probe::{ServerInfo, probe, probe_uri};
pub use tls::TlsClient;
