//! TLS settings and the files they name, below every layer that uses them: the scenario
//! checks them, `amqp` makes its clients from them, `broker` makes its TLS nodes' CA.
//! The handshake itself is `amqp::tls`; the nodes' certificates are `broker::tls`.

pub mod pem;
pub mod settings;

pub use pem::{Identity, TlsFileError, Trust, provider};
pub use settings::{ManagedTls, TlsSettings};
