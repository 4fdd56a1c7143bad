//! Broker URIs whose passwords never reach a message, a log line or a file.

use std::fmt;
use std::str::FromStr;

use amq_protocol::uri::AMQPUri;
use serde::{Serialize, Serializer};

/// An AMQP URI. `Display`, `Debug` and `Serialize` show it with the password replaced by
/// `****`; only [`BrokerUri::expose`] gives the real text, for connecting.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUri {
    text: String,
    parsed: AMQPUri,
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
        redact(&self.text)
    }

    /// Host name or address.
    pub fn host(&self) -> &str {
        &self.parsed.authority.host
    }

    /// TCP port (the scheme's default when the URI gives none).
    pub fn port(&self) -> u16 {
        self.parsed.authority.port
    }

    /// The same URI (credentials, vhost, options) pointing at `host:port` instead: how a
    /// client reaches the broker through a proxy.
    pub fn with_address(&self, host: &str, port: u16) -> BrokerUri {
        let (scheme, rest) = self
            .text
            .split_once("://")
            .expect("an AMQP URI has a scheme");
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let userinfo = authority.rfind('@').map_or("", |at| &authority[..=at]);
        format!("{scheme}://{userinfo}{host}:{port}{tail}")
            .parse()
            .expect("an address change keeps a valid URI")
    }

    /// True for `amqps://`.
    pub fn is_tls(&self) -> bool {
        self.text.starts_with("amqps://")
    }
}

impl FromStr for BrokerUri {
    type Err = UriError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = |reason: &str| UriError {
            uri: redact(text),
            reason: reason.to_string(),
        };
        if !(text.starts_with("amqp://") || text.starts_with("amqps://")) {
            return Err(refuse(
                "expected an AMQP URI like \"amqp://guest:guest@127.0.0.1:5672/%2f\" (scheme amqp or amqps)",
            ));
        }
        let parsed = AMQPUri::from_str(text).map_err(|why| refuse(&redact(&why)))?;
        if parsed.authority.host.is_empty() {
            return Err(refuse("the URI names no host"));
        }
        Ok(Self {
            text: text.to_string(),
            parsed,
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

/// Replaces the password of every `scheme://user:password@host` in `text` with `****`.
/// Text without credentials comes back unchanged, so it is safe on any message.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let authority_start = scheme_end + 3;
        out.push_str(&rest[..authority_start]);
        rest = &rest[authority_start..];
        let authority_end = rest
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"')
            .unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":****");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &rest[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_replaced_everywhere() {
        assert_eq!(
            redact("amqp://guest:s3cr3t@127.0.0.1:5672/%2f"),
            "amqp://guest:****@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact("failed amqps://u:p%40ss@h:1 and amqp://x:y@z"),
            "failed amqps://u:****@h:1 and amqp://x:****@z"
        );
        assert_eq!(redact("amqp://host:5672/"), "amqp://host:5672/");
        assert_eq!(redact("amqp://user@host"), "amqp://user@host");
        assert_eq!(redact("no uri here"), "no uri here");
    }

    #[test]
    fn uris_show_redacted_and_connect_with_the_real_text() {
        let uri: BrokerUri = "amqp://guest:hunter2@127.0.0.1:5673/%2f".parse().unwrap();
        assert_eq!(uri.to_string(), "amqp://guest:****@127.0.0.1:5673/%2f");
        assert!(!format!("{uri:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&uri).unwrap().contains("hunter2"));
        assert!(uri.expose().contains("hunter2"));
        assert_eq!(uri.port(), 5673);
    }

    #[test]
    fn a_uri_can_point_at_a_proxy_and_keep_everything_else() {
        let uri: BrokerUri = "amqp://u:p@rabbit:5672/vh?heartbeat=5".parse().unwrap();
        assert_eq!(
            uri.with_address("127.0.0.1", 25672).expose(),
            "amqp://u:p@127.0.0.1:25672/vh?heartbeat=5"
        );
        let bare: BrokerUri = "amqp://host".parse().unwrap();
        assert_eq!(bare.with_address("h", 1).expose(), "amqp://h:1");
    }

    #[test]
    fn bad_uris_are_refused_without_their_password() {
        let err = "http://guest:hunter2@host"
            .parse::<BrokerUri>()
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("amqp"), "{err}");
    }
}
