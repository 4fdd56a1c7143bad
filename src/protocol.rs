//! What AMQP 0-9-1 fixes for every layer of warren: the scenario checks against it, the
//! clients rely on it.

/// The longest AMQP short string, in bytes: every queue and exchange name, routing and
/// binding key, consumer tag, table key and virtual host is one.
pub const SHORT_STRING_MAX: usize = u8::MAX as usize;
