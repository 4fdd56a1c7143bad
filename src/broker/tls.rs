//! Private TLS nodes (`[broker] tls = true`, `warren broker up --tls`): a throwaway CA
//! made for one broker, a server certificate for the names clients use (localhost,
//! 127.0.0.1, ::1), a client certificate from the same CA for nodes that require one,
//! and the lines of rabbitmq.conf that turn the node's AMQP listener into a TLS one.
//! PEM files, keys in PKCS#8, written into the broker's folder, readable by their owner
//! only; the caller gives the folder to the account the nodes run as.

use std::path::{Path, PathBuf};

use crate::amqp::TlsClient;
use crate::tls::{Identity, TlsFileError, Trust};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum TlsFilesError {
    #[error("making a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The names a private node's certificate carries: every name a client on this machine
/// may use for it.
pub const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The PEM files of one broker's throwaway CA.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsFiles {
    /// The CA certificate clients trust (`ssl_options.cacertfile` on the node).
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// warren's own certificate, for nodes that require one (`fail_if_no_peer_cert`).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Makes a CA, a server certificate for `server_names` (host names or IP addresses) and
/// a client certificate, and writes them into `dir` (which must exist).
///
/// # Errors
/// [`TlsFilesError`] when a certificate cannot be made or a file written.
pub fn generate(dir: &Path, server_names: &[String]) -> Result<TlsFiles, TlsFilesError> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    // A name of its own: a client given another broker's CA then finds no issuer
    // ("unknown issuer") instead of a same-named CA whose signature does not match.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let tag = crate::seeded::splitmix(nanos ^ u64::from(std::process::id()));
    ca.distinguished_name = name(&format!("warren throwaway CA {tag:016x}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);

    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(server_names.to_vec())?;
    server.distinguished_name = name(server_names.first().map_or("localhost", String::as_str));
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let client_key = KeyPair::generate()?;
    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client.distinguished_name = name("warren");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &issuer)?;

    let files = TlsFiles {
        ca_cert: dir.join("ca_certificate.pem"),
        server_cert: dir.join("server_certificate.pem"),
        server_key: dir.join("server_key.pem"),
        client_cert: dir.join("client_certificate.pem"),
        client_key: dir.join("client_key.pem"),
    };
    write(&files.ca_cert, &ca_cert.pem())?;
    write(&files.server_cert, &server_cert.pem())?;
    write(&files.server_key, &server_key.serialize_pem())?;
    write(&files.client_cert, &client_cert.pem())?;
    write(&files.client_key, &client_key.serialize_pem())?;
    Ok(files)
}

impl TlsFiles {
    /// The TLS client warren's own connections use: it trusts this CA only and, when the
    /// nodes demand one, offers warren's client certificate.
    ///
    /// # Errors
    /// [`TlsFileError`] when a file cannot be read back.
    pub fn client(&self, client_auth: bool) -> Result<TlsClient, TlsFileError> {
        let identity = client_auth
            .then(|| Identity::from_files(&self.client_cert, &self.client_key))
            .transpose()?;
        Ok(TlsClient::new(
            Trust::from_file(&self.ca_cert)?,
            identity,
            None,
            true,
        ))
    }

    /// The lines of a node's rabbitmq.conf that make its only AMQP listener a TLS one on
    /// 127.0.0.1:`port` with these files.
    pub fn node_config(&self, port: u16, client_auth: bool) -> String {
        let mut text = format!(
            "listeners.tcp = none\nlisteners.ssl.1 = 127.0.0.1:{port}\nssl_options.cacertfile = {}\nssl_options.certfile = {}\nssl_options.keyfile = {}\n",
            self.ca_cert.display(),
            self.server_cert.display(),
            self.server_key.display(),
        );
        if client_auth {
            text.push_str(
                "ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = true\n",
            );
        } else {
            text.push_str("ssl_options.verify = verify_none\n");
        }
        text
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// Writes `text` to `path`, readable and writable by its owner only.
fn write(path: &Path, text: &str) -> Result<(), TlsFilesError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |source| TlsFilesError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls::server::WebPkiClientVerifier;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;

    fn provider() -> Arc<tokio_rustls::rustls::crypto::CryptoProvider> {
        Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
    }

    fn roots(files: &TlsFiles) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&files.ca_cert).expect("the CA reads back"))
            .expect("a CA certificate");
        roots
    }

    fn chain(path: &Path) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from_pem_file(path).expect("a certificate reads back")]
    }

    fn key(path: &Path) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_file(path).expect("a PKCS#8 key reads back")
    }

    /// A TLS handshake over an in-memory pipe, then one byte each way: Ok, or the error
    /// either side saw.
    async fn handshake(
        files: &TlsFiles,
        server_name: &str,
        require_client: bool,
        present_client: bool,
    ) -> Result<(), String> {
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let server = if require_client {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(files)), provider())
                    .build()
                    .map_err(|e| e.to_string())?;
            server.with_client_cert_verifier(verifier)
        } else {
            server.with_no_client_auth()
        }
        .with_single_cert(chain(&files.server_cert), key(&files.server_key))
        .map_err(|e| e.to_string())?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots(files));
        let client = if present_client {
            client
                .with_client_auth_cert(chain(&files.client_cert), key(&files.client_key))
                .map_err(|e| e.to_string())?
        } else {
            client.with_no_client_auth()
        };
        let (near, far) = tokio::io::duplex(64 * 1024);
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let connector = TlsConnector::from(Arc::new(client));
        let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
        let serving = tokio::spawn(async move {
            let mut stream = acceptor.accept(far).await.map_err(|e| e.to_string())?;
            let mut byte = [0u8; 1];
            stream
                .read_exact(&mut byte)
                .await
                .map_err(|e| e.to_string())?;
            stream.write_all(&byte).await.map_err(|e| e.to_string())?;
            stream.flush().await.map_err(|e| e.to_string())
        });
        let talking = async {
            let mut stream = connector
                .connect(name, near)
                .await
                .map_err(|e| e.to_string())?;
            stream.write_all(b"x").await.map_err(|e| e.to_string())?;
            stream.flush().await.map_err(|e| e.to_string())?;
            let mut byte = [0u8; 1];
            stream
                .read_exact(&mut byte)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(byte)
        };
        // The client's error first: it says why it refused (the server's only that the
        // client sent an alert).
        let talked = talking.await;
        let served = serving.await.map_err(|e| e.to_string())?;
        assert_eq!(talked?, *b"x");
        served
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("warren-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        dir
    }

    #[test]
    fn clients_trusting_the_ca_reach_the_server_by_name_and_by_address() {
        let dir = scratch("names");
        let files = generate(&dir, &["localhost".into(), "127.0.0.1".into()]).expect("made");
        let rt = runtime();
        assert_eq!(
            rt.block_on(handshake(&files, "localhost", false, false)),
            Ok(())
        );
        assert_eq!(
            rt.block_on(handshake(&files, "127.0.0.1", false, false)),
            Ok(())
        );
        let other = rt.block_on(handshake(&files, "broker.example.com", false, false));
        assert!(
            other
                .as_ref()
                .is_err_and(|e| e.contains("not valid for name")),
            "a name the certificate does not carry: {other:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_server_that_requires_a_client_certificate_takes_warrens_and_refuses_none() {
        let dir = scratch("clients");
        let files = generate(&dir, &["localhost".into()]).expect("made");
        let rt = runtime();
        assert_eq!(
            rt.block_on(handshake(&files, "localhost", true, true)),
            Ok(())
        );
        assert!(
            rt.block_on(handshake(&files, "localhost", true, false))
                .is_err()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn keys_are_readable_by_their_owner_only_and_a_second_ca_is_another() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("modes");
        let first = generate(&dir, &["localhost".into()]).expect("made");
        let mode = std::fs::metadata(&first.server_key)
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let ca = std::fs::read_to_string(&first.ca_cert).expect("written");
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        let other_dir = scratch("modes-other");
        let second = generate(&other_dir, &["localhost".into()]).expect("made");
        // A client trusting the second CA does not trust the first broker.
        let mixed = TlsFiles {
            ca_cert: second.ca_cert.clone(),
            ..first.clone()
        };
        let refused = runtime().block_on(handshake(&mixed, "localhost", false, false));
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("UnknownIssuer")),
            "{refused:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other_dir);
    }
}
