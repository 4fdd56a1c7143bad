//! warren: checked conversions of strings into AMQP short and long strings.
//!
//! A short string carries its length in one byte, so it holds at most 255 bytes; a
//! caller's longer value (an exchange name, a routing key, a message id...) is an error
//! that names the value, where it used to panic the client (`try_into().unwrap()`).

use std::fmt;

use amqp_serde::types::{LongStr, ShortStr};

/// warren: the most bytes an AMQP short string holds (its length is one octet).
const SHORT_STR_MAX: usize = u8::MAX as usize;

/// warren: a value too long for an AMQP short string (more than 255 bytes), refused
/// before anything is sent. `what` names the value ("exchange name", "routing key", ...)
/// and `len` is its length in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortStrTooLong {
    /// What the value is, e.g. "exchange name".
    pub what: &'static str,
    /// Its length in bytes.
    pub len: usize,
}

impl fmt::Display for ShortStrTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} is {} bytes; an AMQP short string is at most {SHORT_STR_MAX}",
            self.what, self.len
        )
    }
}

impl std::error::Error for ShortStrTooLong {}

/// warren: `value` as an AMQP short string, for a value that comes from the caller.
///
/// # Errors
///
/// [`ShortStrTooLong`], naming `what` the value is, if it is longer than 255 bytes.
pub fn short_str(
    value: impl Into<String>,
    what: &'static str,
) -> Result<ShortStr, ShortStrTooLong> {
    let value = value.into();
    let len = value.len();
    ShortStr::try_from(value).map_err(|_| ShortStrTooLong { what, len })
}

/// warren: one of the crate's own short literals ("PLAIN", "en_US", "capabilities", ...)
/// as a short string. They are all far below 255 bytes; should one ever not be, debug
/// builds stop here and release builds send an empty string rather than panic.
pub(crate) fn literal(value: &'static str) -> ShortStr {
    debug_assert!(
        value.len() <= SHORT_STR_MAX,
        "literal {value:?} is too long for a short string"
    );
    ShortStr::try_from(value).unwrap_or_default()
}

/// warren: one of the crate's own literals ("AMQPRS", "Rust", ...) as a long string; see
/// [`literal`].
pub(crate) fn long_literal(value: &'static str) -> LongStr {
    LongStr::try_from(value).unwrap_or_default()
}

/// warren: a value too long for an AMQP long string (4 GiB or more); like
/// [`ShortStrTooLong`], `what` names the value and `len` is its length in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LongStrTooLong {
    /// What the value is, e.g. "connection name".
    pub(crate) what: &'static str,
    /// Its length in bytes.
    pub(crate) len: usize,
}

impl fmt::Display for LongStrTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} is {} bytes; an AMQP long string is at most {}",
            self.what,
            self.len,
            u32::MAX
        )
    }
}

/// warren: `value` as an AMQP long string, for a value that comes from the caller (a
/// connection name, a new secret); an error naming `what` if it is 4 GiB or more.
pub(crate) fn long_str(
    value: impl Into<String>,
    what: &'static str,
) -> Result<LongStr, LongStrTooLong> {
    let value = value.into();
    let len = value.len();
    LongStr::try_from(value).map_err(|_| LongStrTooLong { what, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_str_of_255_bytes_is_taken() {
        let value = "x".repeat(255);
        let short = short_str(value.clone(), "exchange name").unwrap();
        assert_eq!(short.as_ref(), &value);
    }

    #[test]
    fn a_short_str_of_256_bytes_is_refused_naming_what() {
        let error = short_str("x".repeat(256), "routing key").unwrap_err();
        assert_eq!(
            error,
            ShortStrTooLong {
                what: "routing key",
                len: 256
            }
        );
        assert_eq!(
            error.to_string(),
            "the routing key is 256 bytes; an AMQP short string is at most 255"
        );
    }

    #[test]
    fn the_length_counts_bytes_not_characters() {
        // 128 two-byte characters: 256 bytes
        let error = short_str("é".repeat(128), "queue name").unwrap_err();
        assert_eq!(error.len, 256);
    }

    #[test]
    fn a_literal_is_its_text() {
        assert_eq!(literal("PLAIN").as_ref(), "PLAIN");
    }

    #[test]
    fn a_long_str_takes_more_than_255_bytes() {
        let value = "x".repeat(300);
        assert_eq!(
            long_str(value.clone(), "connection name").unwrap().as_ref(),
            &value
        );
    }
}
