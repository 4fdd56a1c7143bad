//! Exit codes, and which errors map to which: a CI job reads them.

use std::process::ExitCode;

use crate::broker::BrokerError;
use crate::scenario::ScenarioError;

/// How warren ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every gate passed.
    Success = 0,
    /// A gate failed; the verdict was printed.
    GateFailed = 1,
    /// Bad input: a scenario or the command line.
    BadInput = 2,
    /// Infrastructure failure: the broker would not start, a proxy was unreachable.
    Infrastructure = 3,
    /// Interrupted (Ctrl-C or SIGTERM); what was measured was written.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// A bad command-line value found after parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for an error, from the first error in its chain that warren knows.
pub fn for_error(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if cause.is::<ScenarioError>()
            || cause.is::<UsageError>()
            || cause.is::<crate::scenario::Diagnostics>()
        {
            return Exit::BadInput;
        }
        if let Some(broker) = cause.downcast_ref::<BrokerError>() {
            return match broker {
                BrokerError::Interrupted => Exit::Interrupted,
                _ => Exit::Infrastructure,
            };
        }
    }
    Exit::Infrastructure
}
