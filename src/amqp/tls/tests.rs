use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::PrivateKeyDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::server::WebPkiClientVerifier;

use super::*;
use crate::broker::tls::{TlsFiles, generate};

/// A folder of this test's own, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh throwaway CA with its server and client certificates.
fn files() -> (Scratch, TlsFiles) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        Scratch(std::env::temp_dir().join(format!("warren-tls-client-{}-{n}", std::process::id())));
    std::fs::create_dir_all(dir.path()).unwrap();
    let files = generate(dir.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
    (dir, files)
}

fn settings(files: &TlsFiles) -> TlsSettings {
    TlsSettings {
        ca_file: Some(files.ca_cert.clone()),
        ..TlsSettings::default()
    }
}

/// A TLS server on a free loopback port that answers one connection with `answer`
/// after its handshake; requires a client certificate from its CA when asked to.
async fn serve(files: &TlsFiles, require_client: bool) -> u16 {
    let chain = vec![CertificateDer::from_pem_file(&files.server_cert).unwrap()];
    let key = PrivateKeyDer::from_pem_file(&files.server_key).unwrap();
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client {
        let trust = Trust::from_file(&files.ca_cert).unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(trust.roots, provider())
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder.with_single_cert(chain, key).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        if let Ok(mut tls) = acceptor.accept(stream).await {
            let _ = tls.write_all(b"hello").await;
            let _ = tls.flush().await;
            let mut rest = Vec::new();
            let _ = tls.read_to_end(&mut rest).await;
        }
    });
    port
}

/// Connects, shakes hands and reads the server's greeting: Ok, or the explained error.
async fn greet(client: &TlsClient, host: &str, port: u16) -> Result<(), String> {
    let uri: BrokerUri = format!("amqps://{host}:{port}").parse().unwrap();
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut tls = client.handshake(stream, &uri).await?;
    let mut greeting = [0u8; 5];
    tls.read_exact(&mut greeting)
        .await
        .map_err(|e| client.explain(&e, &uri))?;
    assert_eq!(&greeting, b"hello");
    Ok(())
}

#[tokio::test]
async fn a_client_that_trusts_the_ca_connects_by_name_and_by_address() {
    let (_dir, files) = files();
    let client = TlsClient::load(&settings(&files)).unwrap();
    greet(&client, "localhost", serve(&files, false).await)
        .await
        .unwrap();
    greet(&client, "127.0.0.1", serve(&files, false).await)
        .await
        .unwrap();
}

#[tokio::test]
async fn another_ca_is_not_trusted_and_says_which_ca_was_asked() {
    let (_dir, files) = files();
    let (_other_dir, other) = self::files();
    let client = TlsClient::load(&settings(&other)).unwrap();
    let error = greet(&client, "localhost", serve(&files, false).await)
        .await
        .unwrap_err();
    assert!(error.contains("not trusted"), "{error}");
    assert!(error.contains("ca_certificate.pem"), "{error}");
    assert!(!error.contains('\n'), "{error}");
}

#[tokio::test]
async fn without_verification_any_certificate_is_taken() {
    let (_dir, files) = files();
    let (_other_dir, other) = self::files();
    let client = TlsClient::load(&TlsSettings {
        verify: false,
        ..settings(&other)
    })
    .unwrap();
    assert!(!client.verifies());
    greet(&client, "broker.example.com", serve(&files, false).await)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_name_the_certificate_does_not_carry_is_refused_and_server_name_mends_it() {
    let (_dir, files) = files();
    let client = TlsClient::load(&settings(&files)).unwrap();
    let error = greet(&client, "broker.example.com", serve(&files, false).await)
        .await
        .unwrap_err();
    assert!(
        error.contains("not valid for the name \"broker.example.com\""),
        "{error}"
    );
    assert!(error.contains("server_name"), "{error}");
    let named = TlsClient::load(&TlsSettings {
        server_name: Some("localhost".into()),
        ..settings(&files)
    })
    .unwrap();
    greet(&named, "broker.example.com", serve(&files, false).await)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_broker_that_demands_a_client_certificate_says_so() {
    let (_dir, files) = files();
    let without = TlsClient::load(&settings(&files)).unwrap();
    let error = greet(&without, "localhost", serve(&files, true).await)
        .await
        .unwrap_err();
    assert!(error.contains("demands a client certificate"), "{error}");
    let with = files.client(true).unwrap();
    greet(&with, "localhost", serve(&files, true).await)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_plain_amqp_port_is_named_as_such() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 8];
        let _ = stream.read(&mut hello).await;
        // What RabbitMQ's plain listener answers to bytes that are not AMQP.
        let _ = stream.write_all(b"AMQP\x00\x00\x09\x01").await;
    });
    let (_dir, files) = files();
    let client = TlsClient::load(&settings(&files)).unwrap();
    let error = greet(&client, "localhost", port).await.unwrap_err();
    assert!(error.contains("plain AMQP port"), "{error}");
    assert!(error.contains("amqp://"), "{error}");
}

#[test]
fn files_that_cannot_serve_are_refused_with_the_file_named() {
    let (dir, files) = files();
    let missing = dir.path().join("nope.pem");
    let error = Trust::from_file(&missing).unwrap_err().to_string();
    assert!(error.contains("nope.pem: cannot be read"), "{error}");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let error = Trust::from_file(&not_pem).unwrap_err().to_string();
    assert!(error.contains("no PEM certificate"), "{error}");
    let error = Identity::from_files(&files.client_cert, &files.server_key)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("server_key.pem: this key does not belong to the certificate"),
        "{error}"
    );
    let error = Identity::from_files(&files.client_cert, &files.client_cert)
        .unwrap_err()
        .to_string();
    assert!(error.contains("no private key"), "{error}");
    let encrypted = dir.path().join("encrypted.pem");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let error = Identity::from_files(&files.client_cert, &encrypted)
        .unwrap_err()
        .to_string();
    assert!(error.contains("encrypted"), "{error}");
    assert!(Identity::from_files(&files.client_cert, &files.client_key).is_ok());
}

/// A CA and a server certificate for localhost valid from `from` to `until` (years),
/// written over the server files of a fresh set.
fn dated(from: i32, until: i32) -> (Scratch, TlsFiles) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, date_time_ymd};
    let (dir, files) = files();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    server.not_before = date_time_ymd(from, 1, 1);
    server.not_after = date_time_ymd(until, 1, 1);
    let cert = server.signed_by(&key, &issuer).unwrap();
    std::fs::write(&files.ca_cert, ca_cert.pem()).unwrap();
    std::fs::write(&files.server_cert, cert.pem()).unwrap();
    std::fs::write(&files.server_key, key.serialize_pem()).unwrap();
    (dir, files)
}

#[tokio::test]
async fn an_expired_or_future_certificate_says_which() {
    let (_dir, files) = dated(2000, 2001);
    let client = TlsClient::load(&settings(&files)).unwrap();
    let error = greet(&client, "localhost", serve(&files, false).await)
        .await
        .unwrap_err();
    assert_eq!(error, "the broker's certificate has expired");
    let (_dir, files) = dated(2200, 2201);
    let client = TlsClient::load(&settings(&files)).unwrap();
    let error = greet(&client, "localhost", serve(&files, false).await)
        .await
        .unwrap_err();
    assert!(error.contains("not valid yet"), "{error}");
}

#[test]
fn a_reset_right_after_the_handshake_without_a_certificate_names_the_likely_demand() {
    let (_dir, files) = files();
    let uri: BrokerUri = "amqps://127.0.0.1:5671".parse().unwrap();
    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    let without = TlsClient::load(&settings(&files)).unwrap();
    let said = without.explain_after_handshake(&reset, &uri);
    assert!(said.contains("demands a client certificate"), "{said}");
    // With a certificate offered, a reset is not blamed on one.
    let with = files.client(true).unwrap();
    let said = with.explain_after_handshake(&reset, &uri);
    assert!(!said.contains("client certificate"), "{said}");
}
