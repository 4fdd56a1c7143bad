//! This module provides configuration API of Security and Access Control.
//!
//! The configuration is used as part of [`OpenConnectionArguments`] value.
//!
//! [`OpenConnectionArguments`]: ../connection/struct.OpenConnectionArguments.html
//! [`Connection::open`]: ../connection/struct.Connection.html#method.open
use amqp_serde::types::ByteArray;
use bytes::BufMut;

use crate::frame::LongStrTooLong;

/// Credentials used to open a connection.
#[derive(Clone, PartialEq)]
pub struct SecurityCredentials {
    username: String,
    password: String,
    mechanism: AuthenticationMechanism,
}

#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
enum AuthenticationMechanism {
    PLAIN,
    AMQPLAIN,
    EXTERNAL,
    // RABBIT-CR-DEMO,
}

impl SecurityCredentials {
    /// Create and return a SASL/PLAIN credential with given `username` and `password`.
    ///
    /// See [RabbitMQ access control](https://www.rabbitmq.com/access-control.html#mechanisms).
    pub fn new_plain(username: &str, password: &str) -> Self {
        Self {
            username: username.to_owned(),
            password: password.to_owned(),
            mechanism: AuthenticationMechanism::PLAIN,
        }
    }
    /// Create and return a AMQPLAIN credential with given `username` and `password`.
    ///
    /// See [RabbitMQ access control](https://www.rabbitmq.com/access-control.html#mechanisms).
    pub fn new_amqplain(username: &str, password: &str) -> Self {
        Self {
            username: username.to_owned(),
            password: password.to_owned(),
            mechanism: AuthenticationMechanism::AMQPLAIN,
        }
    }

    /// Create and return EXTERNAL without credentials
    ///
    /// This must be used together with mTLS connection.
    pub fn new_external() -> Self {
        Self {
            username: "".to_owned(),
            password: "".to_owned(),
            mechanism: AuthenticationMechanism::EXTERNAL,
        }
    }

    /// Get the name of authentication mechanism of current credential
    // warren: 'static, so that it converts as one of the crate's literals
    pub(crate) fn get_mechanism_name(&self) -> &'static str {
        match self.mechanism {
            AuthenticationMechanism::PLAIN => "PLAIN",
            AuthenticationMechanism::AMQPLAIN => "AMQPLAIN",
            AuthenticationMechanism::EXTERNAL => "EXTERNAL",
        }
    }
    /// Get the security challenge `response`, to be sent to server.
    ///
    /// warren: bytes, written directly: AMQPLAIN's length prefixes are not UTF-8 once a
    /// username or password is 128 bytes or longer (it panicked making a `String` of them,
    /// and unwrapped every serialization). An error for a value of 4 GiB or more.
    pub(crate) fn get_response(&self) -> Result<ByteArray, LongStrTooLong> {
        let bytes = match self.mechanism {
            AuthenticationMechanism::PLAIN => {
                format!("\0{}\0{}", self.username, self.password).into_bytes()
            }
            AuthenticationMechanism::AMQPLAIN => {
                // a field table's entries without its length: each name a short string
                // (its length byte first), 'S', then the value as a long string
                let mut buf = Vec::new();
                for (name, value, what) in [
                    (&b"\x05LOGIN"[..], &self.username, "username"),
                    (&b"\x08PASSWORD"[..], &self.password, "password"),
                ] {
                    let len = u32::try_from(value.len()).map_err(|_| LongStrTooLong {
                        what,
                        len: value.len(),
                    })?;
                    buf.put_slice(name);
                    buf.put_u8(b'S');
                    buf.put_u32(len);
                    buf.put_slice(value.as_bytes());
                }
                buf
            }
            AuthenticationMechanism::EXTERNAL => Vec::new(),
        };
        let len = bytes.len();
        ByteArray::try_from(bytes).map_err(|_| LongStrTooLong {
            what: "credentials",
            len,
        })
    }
}

// warren: the responses, byte for byte, and AMQPLAIN with credentials of 128 bytes or
// more (their length prefixes are not UTF-8; it panicked)
#[cfg(test)]
mod tests {
    use super::SecurityCredentials;

    fn response(credentials: &SecurityCredentials) -> Vec<u8> {
        credentials.get_response().unwrap().into()
    }

    #[test]
    fn plain_is_nul_user_nul_password() {
        let credentials = SecurityCredentials::new_plain("user", "bitnami");
        assert_eq!(response(&credentials), b"\0user\0bitnami");
        assert_eq!(credentials.get_mechanism_name(), "PLAIN");
    }

    #[test]
    fn amqplain_is_a_field_table_without_its_length() {
        let credentials = SecurityCredentials::new_amqplain("user", "bitnami");
        assert_eq!(
            response(&credentials),
            b"\x05LOGINS\0\0\0\x04user\x08PASSWORDS\0\0\0\x07bitnami"
        );
    }

    #[test]
    fn amqplain_takes_a_password_of_200_bytes() {
        let password = "p".repeat(200);
        let credentials = SecurityCredentials::new_amqplain("user", &password);
        let bytes = response(&credentials);
        let tail = [&b"\x08PASSWORDS\0\0\0\xc8"[..], password.as_bytes()].concat();
        assert!(bytes.ends_with(&tail));
    }

    #[test]
    fn external_is_empty() {
        assert!(response(&SecurityCredentials::new_external()).is_empty());
    }
}
