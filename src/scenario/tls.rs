//! `broker.tls` and `broker.tls_client_auth`: `tls = true` makes warren's own nodes speak
//! TLS; a `[broker.tls]` table says how clients speak TLS to an external broker's amqps
//! URIs. Every file it names is read and checked here (it exists, parses, the key is the
//! certificate's), so a bad file is a scenario error with its line, never a failed run.

use std::path::{Path, PathBuf};

use super::diagnostic::Checker;
use super::file::{TlsEntry, TlsSection};
use crate::broker_uri::BrokerUri;
use crate::tls::{Identity, ManagedTls, TlsFileError, TlsSettings, Trust};

/// What warren's own nodes do about TLS.
pub(super) fn managed(
    c: &mut Checker<'_>,
    entry: Option<TlsEntry>,
    client_auth: Option<bool>,
) -> Option<ManagedTls> {
    let enabled = match entry {
        None | Some(TlsEntry::Enabled(false)) => false,
        Some(TlsEntry::Enabled(true)) => true,
        Some(TlsEntry::Client(_)) => {
            c.key_error(
                "broker.tls",
                "warren makes the certificates of its own nodes: write tls = true under [broker] (and tls_client_auth = true to demand client certificates); a [broker.tls] table is for an external broker's amqps URIs",
            );
            false
        }
    };
    if client_auth.is_some() && !enabled {
        c.key_error(
            "broker.tls_client_auth",
            "only used with tls = true (warren's own TLS nodes); remove it or set tls = true",
        );
    }
    enabled.then(|| ManagedTls {
        client_auth: client_auth.unwrap_or(false),
    })
}

/// How clients speak TLS to an external broker, with every file checked. Relative paths
/// are from the scenario file's folder.
pub(super) fn external(
    c: &mut Checker<'_>,
    entry: Option<TlsEntry>,
    client_auth: Option<bool>,
    uris: &[BrokerUri],
    scenario: &Path,
) -> Option<Box<TlsSettings>> {
    if client_auth.is_some() {
        c.key_error(
            "broker.tls_client_auth",
            "only used with warren's own TLS nodes (mode = \"managed\", tls = true); an external broker decides itself whether it demands client certificates: give warren one in [broker.tls] cert_file and key_file",
        );
    }
    let section = match entry? {
        TlsEntry::Enabled(_) => {
            c.error(
                "broker.tls",
                "an external broker speaks TLS where its URIs are amqps://; say how in a [broker.tls] table (ca_file, cert_file, key_file, server_name, verify)",
            );
            return None;
        }
        TlsEntry::Client(section) => section,
    };
    if !uris.is_empty() && !uris.iter().any(BrokerUri::is_tls) {
        c.key_error(
            "broker.tls",
            "applies to amqps:// URIs, and broker.uris has none; write the URIs as amqps://host:5671/... or remove [broker.tls]",
        );
    }
    settings(c, section, scenario).map(Box::new)
}

fn settings(c: &mut Checker<'_>, section: TlsSection, scenario: &Path) -> Option<TlsSettings> {
    let folder = scenario.parent().unwrap_or(Path::new("."));
    let resolve = |text: &str| -> PathBuf {
        let path = PathBuf::from(text);
        if path.is_absolute() {
            path
        } else {
            folder.join(path)
        }
    };
    let ca_file = section.ca_file.as_deref().map(resolve);
    let cert_file = section.cert_file.as_deref().map(resolve);
    let key_file = section.key_file.as_deref().map(resolve);
    let mut sound = true;
    if let Some(path) = &ca_file {
        if let Err(error) = Trust::from_file(path) {
            file_error(c, "broker.tls.ca_file", &section.ca_file, &error);
            sound = false;
        }
    }
    match (&cert_file, &key_file) {
        (Some(cert), Some(key)) => {
            if let Err(error) = Identity::from_files(cert, key) {
                let field = match &error {
                    TlsFileError::Unreadable { path, .. }
                    | TlsFileError::NoCertificate { path }
                    | TlsFileError::BadCertificate { path, .. }
                        if path == cert =>
                    {
                        "cert_file"
                    }
                    _ => "key_file",
                };
                let text = if field == "cert_file" {
                    &section.cert_file
                } else {
                    &section.key_file
                };
                file_error(c, &format!("broker.tls.{field}"), text, &error);
                sound = false;
            }
        }
        (Some(_), None) => {
            c.error(
                "broker.tls.cert_file",
                "a client certificate needs its private key: add key_file",
            );
            sound = false;
        }
        (None, Some(_)) => {
            c.error(
                "broker.tls.key_file",
                "a private key needs its client certificate: add cert_file",
            );
            sound = false;
        }
        (None, None) => {}
    }
    if let Some(name) = &section.server_name {
        let valid = tokio_rustls::rustls::pki_types::ServerName::try_from(name.as_str()).is_ok();
        if !valid {
            c.error(
                "broker.tls.server_name",
                format!(
                    " = {name:?}: expected a DNS name or an IP address, the one the broker's certificate carries"
                ),
            );
            sound = false;
        }
    }
    let verify = section.verify.unwrap_or(true);
    if !verify {
        c.warn(
            "broker.tls.verify",
            " = false: the broker's certificate is not checked, so nothing proves warren talks to the broker meant (for a lab broker only); name its CA in ca_file instead",
        );
    }
    sound.then_some(TlsSettings {
        ca_file,
        cert_file,
        key_file,
        server_name: section.server_name,
        verify,
    })
}

fn file_error(c: &mut Checker<'_>, field: &str, written: &Option<String>, error: &TlsFileError) {
    c.error(
        field,
        format!(" = {:?}: {error}", written.as_deref().unwrap_or_default()),
    );
}
