//! TLS as a scenario asks for it: how clients speak to an external broker's amqps URIs
//! (`[broker.tls]`), and how warren's own nodes speak it (`tls = true`).

use std::path::PathBuf;

use serde::Serialize;

/// The client side of TLS as a scenario asks for it (`[broker.tls]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsSettings {
    /// PEM bundle of the CAs the broker's certificate must come from; this system's
    /// roots when unset.
    pub ca_file: Option<PathBuf>,
    /// The client certificate (PEM, its chain after it), for brokers that demand one.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM: PKCS#8, RSA or EC; not encrypted).
    pub key_file: Option<PathBuf>,
    /// The name the broker's certificate must carry (and SNI); the URI's host when unset.
    pub server_name: Option<String>,
    /// Check the broker's certificate. Off only for lab brokers, and said loudly.
    pub verify: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            ca_file: None,
            cert_file: None,
            key_file: None,
            server_name: None,
            verify: true,
        }
    }
}

/// How warren's own nodes speak TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ManagedTls {
    /// Nodes demand a client certificate (`verify_peer`, `fail_if_no_peer_cert`), and
    /// warren's clients offer the one it issued itself.
    pub client_auth: bool,
}
