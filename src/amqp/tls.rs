//! TLS for amqps connections: which CA the client trusts (a PEM bundle, or this system's
//! roots), the client certificate it offers, the name it checks the broker's certificate
//! against, and whether it checks at all. Files are read and checked once, when the
//! scenario is checked; handshake failures are told in one line that says which.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::WebPkiSupportedAlgorithms;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};

use crate::broker_uri::BrokerUri;
use crate::tls::{Identity, TlsFileError, TlsSettings, Trust, provider};

/// A TLS client ready for every connection of a run: cheap to clone.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
    /// Overrides the URI's host as the name checked.
    server_name: Option<String>,
    verify: bool,
    /// Where the trusted CAs came from, for messages.
    trusted_from: String,
    offers_certificate: bool,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .field("verify", &self.verify)
            .field("trusted_from", &self.trusted_from)
            .field("offers_certificate", &self.offers_certificate)
            .finish()
    }
}

impl TlsClient {
    /// A client from checked parts.
    pub fn new(
        trust: Trust,
        identity: Option<Identity>,
        server_name: Option<String>,
        verify: bool,
    ) -> Self {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let builder = if verify {
            builder.with_root_certificates(trust.roots.clone())
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate {
                    algorithms: provider.signature_verification_algorithms,
                }))
        };
        let offers_certificate = identity.is_some();
        let config = match identity {
            Some(identity) => builder
                .with_client_auth_cert(identity.chain, identity.key.clone_key())
                .expect("the key was checked against the certificate"),
            None => builder.with_no_client_auth(),
        };
        Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            verify,
            trusted_from: trust.from,
            offers_certificate,
        }
    }

    /// The client a scenario's `[broker.tls]` describes.
    ///
    /// # Errors
    /// [`TlsFileError`] for the first file that cannot be used.
    pub fn load(settings: &TlsSettings) -> Result<Self, TlsFileError> {
        let trust = match &settings.ca_file {
            Some(path) => Trust::from_file(path)?,
            None if settings.verify => Trust::system()?,
            None => Trust {
                roots: Arc::new(RootCertStore::empty()),
                from: "nothing (verify = false)".into(),
            },
        };
        let identity = match (&settings.cert_file, &settings.key_file) {
            (Some(cert), Some(key)) => Some(Identity::from_files(cert, key)?),
            _ => None,
        };
        Ok(Self::new(
            trust,
            identity,
            settings.server_name.clone(),
            settings.verify,
        ))
    }

    /// The client for an amqps URI a scenario gives no `[broker.tls]` for: this system's
    /// roots, no client certificate.
    ///
    /// # Errors
    /// [`TlsFileError::NoSystemRoots`].
    pub fn system() -> Result<Self, TlsFileError> {
        Ok(Self::new(Trust::system()?, None, None, true))
    }

    /// True when the client offers a certificate of its own.
    pub fn offers_certificate(&self) -> bool {
        self.offers_certificate
    }

    /// False when the broker's certificate is not checked (`verify = false`).
    pub fn verifies(&self) -> bool {
        self.verify
    }

    /// The name the broker's certificate is checked against for `uri`.
    pub fn server_name(&self, uri: &BrokerUri) -> String {
        self.server_name
            .clone()
            .unwrap_or_else(|| uri.origin_host().to_string())
    }

    /// What the AMQP client needs to speak TLS to `uri`.
    pub fn adaptor(&self, uri: &BrokerUri) -> warren_amqp::tls::TlsAdaptor {
        warren_amqp::tls::TlsAdaptor::new(self.connector.clone(), self.server_name(uri))
    }

    /// A TLS handshake on `stream`, connected to `uri`.
    ///
    /// # Errors
    /// One line saying why (see [`Self::explain`]).
    pub async fn handshake(
        &self,
        stream: TcpStream,
        uri: &BrokerUri,
    ) -> Result<TlsStream<TcpStream>, String> {
        let name = self.server_name(uri);
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| format!("{name:?} is not a name a TLS certificate can carry"))?;
        self.connector
            .connect(server_name, stream)
            .await
            .map_err(|error| self.explain(&error, uri))
    }

    /// One line for a TLS failure of a connection to `uri`: which of the usual mistakes
    /// it is (an untrusted or expired certificate, a wrong name, a client certificate the
    /// broker demands, a port that does not speak TLS), or the library's reason.
    pub fn explain(&self, error: &std::io::Error, uri: &BrokerUri) -> String {
        let name = self.server_name(uri);
        let Some(tls) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return match error.kind() {
                std::io::ErrorKind::UnexpectedEof => format!(
                    "{} closed the connection during the TLS handshake (is it a TLS port? does it demand a client certificate?)",
                    uri.address()
                ),
                _ => format!("TLS: {error}"),
            };
        };
        use CertificateError as C;
        match tls {
            rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => format!(
                "the broker's certificate is not trusted: no CA in {} issued it (name the CA that did in [broker.tls] ca_file)",
                self.trusted_from
            ),
            rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
                "the broker's certificate has expired".into()
            }
            rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
                "the broker's certificate is not valid yet (is this machine's clock right?)".into()
            }
            rustls::Error::InvalidCertificate(
                C::NotValidForName | C::NotValidForNameContext { .. },
            ) => format!(
                "the broker's certificate is not valid for the name {name:?} (set [broker.tls] server_name to a name it carries)"
            ),
            rustls::Error::InvalidCertificate(other) => {
                format!("the broker's certificate is refused: {other:?}")
            }
            rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired | AlertDescription::HandshakeFailure,
            ) if !self.offers_certificate => {
                "the broker demands a client certificate, and none is configured (set [broker.tls] cert_file and key_file)".into()
            }
            rustls::Error::AlertReceived(
                AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateExpired,
            ) => format!(
                "the broker refused warren's client certificate ({})",
                alert_name(tls)
            ),
            rustls::Error::InvalidMessage(_) => format!(
                "{} does not answer in TLS: is it a plain AMQP port? (then use amqp://)",
                uri.address()
            ),
            other => format!("TLS: {other}"),
        }
    }
}

impl TlsClient {
    /// Like [`Self::explain`], for a failure after the handshake, before the broker's
    /// AMQP greeting: a broker that demands a client certificate judges it only after a
    /// TLS 1.3 handshake, and its alert may never arrive (the socket is reset under the
    /// client's first write), so a reset or a close there, with no certificate offered,
    /// is said to be that.
    pub fn explain_after_handshake(&self, error: &std::io::Error, uri: &BrokerUri) -> String {
        use std::io::ErrorKind as K;
        let tls_error = error
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>());
        let cut = matches!(
            error.kind(),
            K::ConnectionReset | K::UnexpectedEof | K::BrokenPipe | K::ConnectionAborted
        );
        if !tls_error && cut && !self.offers_certificate {
            return format!(
                "{} ended the TLS connection right after the handshake ({}): the broker most likely demands a client certificate, and none is configured (set [broker.tls] cert_file and key_file)",
                uri.address(),
                error.kind()
            );
        }
        self.explain(error, uri)
    }
}

fn alert_name(error: &rustls::Error) -> String {
    match error {
        rustls::Error::AlertReceived(alert) => format!("{alert:?}"),
        other => other.to_string(),
    }
}

/// The verifier of `verify = false`: any certificate is taken, but the handshake's
/// signatures are still checked against it.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
