//! Broker URIs whose passwords never reach a message, a log line or a file, parsed with a
//! real URI parser so that the broker connected to is the one named (an IPv6 literal is
//! that address, never `localhost`).

use std::fmt;
use std::str::FromStr;

use percent_encoding::percent_decode_str;
use serde::{Serialize, Serializer};
use url::{Host, Url};

use crate::protocol::SHORT_STRING_MAX;
use crate::redact::redact_uri;

/// An AMQP URI. `Display`, `Debug` and `Serialize` show it with the password replaced by
/// `****`; only [`BrokerUri::expose`] and [`BrokerUri::password`] give the secret, for
/// connecting.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUri {
    /// The URI as written (or as rebuilt by [`BrokerUri::with_address`]).
    text: String,
    /// True for `amqps`.
    tls: bool,
    /// Host name or address; an IPv6 address without its brackets.
    host: String,
    /// True when `host` is an IPv6 address.
    ipv6: bool,
    /// The host as the URI was first written: the name a TLS certificate is checked
    /// against, kept when [`BrokerUri::with_address`] points the URI at a proxy.
    origin_host: String,
    /// TCP port (the scheme's default when the URI gives none).
    port: u16,
    /// User name, percent-decoded (`guest` when the URI names none).
    username: String,
    /// Password, percent-decoded (`guest` when the URI gives none).
    password: String,
    /// Virtual host, percent-decoded (`/` when the URI has no path).
    vhost: String,
}

/// Why a URI was refused (the message never contains the password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{uri}: {reason}")]
pub struct UriError {
    /// The URI, redacted.
    pub uri: String,
    /// What is wrong.
    pub reason: String,
}

impl BrokerUri {
    /// The full URI, password included: for the AMQP client only.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The URI with its password replaced by `****`.
    pub fn redacted(&self) -> String {
        redact_uri(&self.text)
    }

    /// Host name or address; an IPv6 address comes without brackets, ready for
    /// `TcpStream::connect((host, port))`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// TCP port (the scheme's default when the URI gives none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, with an IPv6 address in brackets: for messages and proxy upstreams.
    pub fn address(&self) -> String {
        if self.ipv6 {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// User name, percent-decoded.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Password, percent-decoded: for the AMQP client only.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Virtual host, percent-decoded.
    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    /// The same URI (credentials, vhost) pointing at `host:port` instead: how a client
    /// reaches the broker through a proxy. `host` is a name or an address (an IPv6 one
    /// without brackets).
    ///
    /// # Errors
    /// [`UriError`] when `host` is neither.
    pub fn with_address(&self, host: &str, port: u16) -> Result<BrokerUri, UriError> {
        let refuse = |reason: String| UriError {
            uri: self.redacted(),
            reason,
        };
        if !is_host(host) {
            return Err(refuse(format!(
                "{host:?} is neither a host name nor an address"
            )));
        }
        let mut url = Url::parse(&self.text).map_err(|e| refuse(e.to_string()))?;
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        url.set_host(Some(&bracketed))
            .map_err(|e| refuse(format!("{host:?}: {e}")))?;
        url.set_port(Some(port))
            .map_err(|()| refuse(format!("port {port}")))?;
        let mut proxied: BrokerUri = url.as_str().parse()?;
        proxied.origin_host = self.origin_host.clone();
        Ok(proxied)
    }

    /// The host the URI named before any proxy came between: the name a TLS client
    /// checks the broker's certificate against (SNI too), unless told another.
    pub fn origin_host(&self) -> &str {
        &self.origin_host
    }

    /// True for `amqps://`.
    pub fn is_tls(&self) -> bool {
        self.tls
    }
}

impl FromStr for BrokerUri {
    type Err = UriError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = |reason: &str| UriError {
            uri: redact_uri(text),
            reason: reason.to_string(),
        };
        // The parser's own message may quote the input: only its kind is shown.
        let url = Url::parse(text).map_err(|e| refuse(&format!("not a valid URI ({e})")))?;
        let tls = match url.scheme() {
            "amqp" => false,
            "amqps" => true,
            _ => {
                return Err(refuse(
                    "expected an AMQP URI like \"amqp://guest:guest@127.0.0.1:5672/%2f\" (scheme amqp or amqps)",
                ));
            }
        };
        let decode = |part: &str, what: &str| {
            percent_decode_str(part)
                .decode_utf8()
                .map(|text| text.into_owned())
                .map_err(|_| refuse(&format!("the {what} is not UTF-8 once percent-decoded")))
        };
        let (host, ipv6) = match url.host() {
            None => return Err(refuse("the URI names no host")),
            Some(Host::Ipv6(address)) => (address.to_string(), true),
            Some(Host::Ipv4(address)) => (address.to_string(), false),
            Some(Host::Domain("")) => {
                return Err(refuse("the URI names no host"));
            }
            Some(Host::Domain(name)) => {
                let name = decode(name, "host")?;
                if name.contains(['[', ']']) || name.contains(':') {
                    return Err(refuse("the host is neither a name nor an address"));
                }
                (name, false)
            }
        };
        let port = url.port().unwrap_or(if tls { 5671 } else { 5672 });
        let username = match url.username() {
            "" => "guest".to_string(),
            name => decode(name, "user name")?,
        };
        let password = match url.password() {
            None => "guest".to_string(),
            Some(secret) => decode(secret, "password")?,
        };
        let path = url.path();
        let vhost = match path.strip_prefix('/') {
            None => "/".to_string(),
            Some(segment) if segment.contains('/') => {
                return Err(refuse(
                    "the virtual host is one path segment: write a / inside it as %2f",
                ));
            }
            Some(segment) => decode(segment, "virtual host")?,
        };
        if vhost.len() > SHORT_STRING_MAX {
            return Err(refuse(&format!(
                "the virtual host is {} bytes; it is at most {SHORT_STRING_MAX} (an AMQP short string)",
                vhost.len()
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(refuse(
                "warren does not read settings from the URI (?heartbeat=...): set them in the scenario",
            ));
        }
        Ok(Self {
            text: text.to_string(),
            tls,
            origin_host: host.clone(),
            host,
            ipv6,
            port,
            username,
            password,
            vhost,
        })
    }
}

impl fmt::Display for BrokerUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for BrokerUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUri({})", self.redacted())
    }
}

impl Serialize for BrokerUri {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

/// True for an IP address (an IPv6 one without brackets) or a DNS host name: what a
/// scenario may give as a host for clients or listeners.
pub fn is_host(text: &str) -> bool {
    if text.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests;
