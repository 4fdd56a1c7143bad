//! Where a client connects and how: one URI per node (perhaps through proxies) and the
//! TLS settings amqps URIs need. Tasks hold it shared; it reads as the slice of its URIs.

use std::ops::Deref;

use super::tls::TlsClient;
use crate::broker_uri::BrokerUri;

/// The URIs a connection slot cycles through, with the TLS client for the amqps ones.
#[derive(Debug, Clone)]
pub struct Endpoints {
    uris: Vec<BrokerUri>,
    tls: Option<TlsClient>,
}

impl Endpoints {
    /// `uris` reached with `tls` (this system's roots for amqps URIs when `None`).
    pub fn new(uris: Vec<BrokerUri>, tls: Option<TlsClient>) -> Self {
        Self { uris, tls }
    }

    /// The TLS client for amqps URIs, when the run has one of its own.
    pub fn tls(&self) -> Option<&TlsClient> {
        self.tls.as_ref()
    }
}

impl Deref for Endpoints {
    type Target = [BrokerUri];

    fn deref(&self) -> &[BrokerUri] {
        &self.uris
    }
}
