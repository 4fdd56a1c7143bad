//! The PEM files TLS settings name, read and checked once, when the scenario is checked:
//! the CAs a client trusts (a bundle, or this system's roots) and a client certificate
//! with its key, which must belong together.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, RootCertStore};

/// What is wrong with a file `[broker.tls]` names.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("{path}: cannot be read: {cause}")]
    Unreadable {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("{path}: not a usable certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error(
        "{path}: no private key in it (expected a PEM key: -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)"
    )]
    NoKey { path: PathBuf },
    #[error(
        "{path}: the key is encrypted, and warren reads unencrypted keys only; decrypt it with `openssl pkey -in {path} -out client_key.pem` and keep that file private"
    )]
    EncryptedKey { path: PathBuf },
    #[error("{path}: not a usable private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("{key}: this key does not belong to the certificate in {cert}")]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error(
        "no trusted root certificates found on this system (install ca-certificates, or name the broker's CA in [broker.tls] ca_file)"
    )]
    NoSystemRoots,
}

/// The certificates a client trusts, read from a file or from the system.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The trusted certificates.
    pub roots: Arc<RootCertStore>,
    /// Where they came from, for messages: the file, or "this system's trusted roots".
    pub from: String,
}

impl Trust {
    /// Every certificate of a PEM bundle.
    ///
    /// # Errors
    /// [`TlsFileError`] when the file cannot be read or holds no usable certificate.
    pub fn from_file(path: &Path) -> Result<Self, TlsFileError> {
        let certificates = certificates(path)?;
        let mut roots = RootCertStore::empty();
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|e| TlsFileError::BadCertificate {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
        }
        Ok(Self {
            roots: Arc::new(roots),
            from: path.display().to_string(),
        })
    }

    /// This system's trusted roots, read once per process.
    ///
    /// # Errors
    /// [`TlsFileError::NoSystemRoots`] when the system has none.
    pub fn system() -> Result<Self, TlsFileError> {
        static SYSTEM: OnceLock<Option<Arc<RootCertStore>>> = OnceLock::new();
        let roots = SYSTEM.get_or_init(|| {
            let mut roots = RootCertStore::empty();
            for certificate in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(certificate);
            }
            (!roots.is_empty()).then(|| Arc::new(roots))
        });
        roots
            .clone()
            .map(|roots| Self {
                roots,
                from: "this system's trusted roots".into(),
            })
            .ok_or(TlsFileError::NoSystemRoots)
    }
}

/// A client certificate with its key, checked to belong together.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The certificate, then its chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: Arc<PrivateKeyDer<'static>>,
}

impl Identity {
    /// Reads a certificate (and the chain after it) and its private key.
    ///
    /// # Errors
    /// [`TlsFileError`] naming the file at fault, or both when the key is another's.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsFileError> {
        let chain = certificates(cert)?;
        let text = std::fs::read(key).map_err(|cause| TlsFileError::Unreadable {
            path: key.to_path_buf(),
            cause,
        })?;
        if text.windows(9).any(|w| w == b"ENCRYPTED") {
            return Err(TlsFileError::EncryptedKey {
                path: key.to_path_buf(),
            });
        }
        let private = PrivateKeyDer::from_pem_slice(&text).map_err(|_| TlsFileError::NoKey {
            path: key.to_path_buf(),
        })?;
        match CertifiedKey::from_der(chain.clone(), private.clone_key(), &provider()) {
            Ok(_) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(TlsFileError::KeyMismatch {
                    key: key.to_path_buf(),
                    cert: cert.to_path_buf(),
                });
            }
            Err(error) => {
                return Err(TlsFileError::BadKey {
                    path: key.to_path_buf(),
                    reason: error.to_string(),
                });
            }
        }
        Ok(Self {
            chain,
            key: Arc::new(private),
        })
    }
}

/// Every PEM certificate of a file.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let text = std::fs::read(path).map_err(|cause| TlsFileError::Unreadable {
        path: path.to_path_buf(),
        cause,
    })?;
    let found: Vec<_> = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsFileError::BadCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if found.is_empty() {
        return Err(TlsFileError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(found)
}

/// The crypto provider of every TLS client and check of warren (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
