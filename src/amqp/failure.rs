//! Client failures classified into what the caller must do about them, and the record of
//! why a channel or connection ended, kept so that every operation that fails because of
//! it reports the broker's reason rather than the client's internal one.

use std::sync::Mutex;

/// How long opening a channel (with confirm.select and the declarations) may take.
pub const OPEN_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a polite close may wait for the broker's answer.
pub const CLOSE_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs a channel or connection operation that must answer within `limit`: a broker that
/// is silent (paused, or behind a network that drops bytes) counts as a lost connection.
///
/// # Errors
/// The operation's own [`Failure`], or `ConnectionLost` when it did not answer in time.
pub async fn within<T>(
    limit: std::time::Duration,
    what: &str,
    operation: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, operation).await {
        Ok(result) => result,
        Err(_) => Err(Failure::connection_lost(format!(
            "no answer to {what} within {} s",
            limit.as_secs()
        ))),
    }
}

/// What a failure means for the task that saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The connection is gone (I/O error, missed heartbeats, closed by the broker): reconnect.
    ConnectionLost,
    /// Only the channel is gone (a channel error): open another on the same connection.
    ChannelClosed,
    /// The broker refused an operation for good (wrong arguments, access): do not retry.
    Refused,
}

/// A classified client error, with credentials redacted from its message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

/// AMQP reply codes of channel errors that retrying cannot fix: access refused, not
/// found, resource locked, precondition failed.
const REFUSALS: std::ops::RangeInclusive<u16> = 403..=406;

impl Failure {
    /// The connection is gone.
    pub(super) fn connection_lost(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::ConnectionLost,
            message: crate::redact::redact(&message.into()),
        }
    }

    /// Only the channel is gone.
    pub(super) fn channel_closed(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::ChannelClosed,
            message: crate::redact::redact(&message.into()),
        }
    }

    /// A request the broker would refuse, caught before it is sent.
    pub(super) fn refused(message: String) -> Self {
        Self {
            kind: FailureKind::Refused,
            message,
        }
    }

    /// The broker closed a channel with `code` (channel.close).
    pub(super) fn from_channel_close(code: u16, text: &str) -> Self {
        let kind = if REFUSALS.contains(&code) {
            FailureKind::Refused
        } else {
            FailureKind::ChannelClosed
        };
        Self {
            kind,
            message: crate::redact::redact(&format!("channel closed by the broker: {code} {text}")),
        }
    }

    /// The broker closed the connection with `code` (connection.close): every code there
    /// (a forced close, a hard error) ends the connection, so the caller reconnects.
    pub(super) fn from_connection_close(code: u16, text: &str) -> Self {
        Self::connection_lost(format!("connection closed by the broker: {code} {text}"))
    }
}

/// What a connection shares with its channels and the client's callbacks.
#[derive(Debug, Default)]
pub(super) struct ConnectionState {
    /// Why the broker closed the connection, once it has.
    pub(super) ended: EndReason,
}

/// Why a channel or a connection ended, once it has. The client's callbacks record it
/// before they let the operations waiting on that channel or connection fail.
#[derive(Debug, Default)]
pub(super) struct EndReason(Mutex<Option<Failure>>);

impl EndReason {
    /// Records the first reason; later ones are consequences of it.
    pub(super) fn record(&self, failure: Failure) {
        let mut reason = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if reason.is_none() {
            *reason = Some(failure);
        }
    }

    /// The recorded reason, if the channel or connection has ended.
    pub(super) fn get(&self) -> Option<Failure> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_errors_that_retrying_cannot_fix_are_refusals() {
        for code in [403, 404, 405, 406] {
            assert_eq!(
                Failure::from_channel_close(code, "X").kind,
                FailureKind::Refused
            );
        }
        for code in [311, 313, 504, 530, 541] {
            assert_eq!(
                Failure::from_channel_close(code, "X").kind,
                FailureKind::ChannelClosed,
                "{code}"
            );
        }
        assert_eq!(
            Failure::from_connection_close(320, "CONNECTION_FORCED").kind,
            FailureKind::ConnectionLost
        );
    }

    #[test]
    fn the_first_end_reason_is_kept() {
        let reason = EndReason::default();
        assert!(reason.get().is_none());
        reason.record(Failure::from_channel_close(404, "NOT_FOUND"));
        reason.record(Failure::connection_lost("later"));
        let kept = reason.get().expect("recorded");
        assert_eq!(kept.kind, FailureKind::Refused);
        assert!(kept.message.contains("404 NOT_FOUND"), "{}", kept.message);
    }

    #[test]
    fn messages_never_carry_passwords() {
        let failure = Failure::connection_lost("cannot reach amqp://u:secret@127.0.0.1:1/%2f");
        assert!(!failure.message.contains("secret"), "{}", failure.message);
    }
}
