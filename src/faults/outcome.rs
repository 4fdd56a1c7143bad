//! What became of one fault of the timeline: made, never started, or failed and why. In
//! JSON (summary.json, events, a worker's results) it is the sentence the report prints:
//! `"applied"`, `"not started: the run ended"`, `"failed: <reason>"`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What became of one fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultOutcome {
    /// It was made (and taken back when it has an end).
    Applied,
    /// The run ended before its time came.
    NotStarted,
    /// It could not be made: why.
    Failed(String),
}

const APPLIED: &str = "applied";
const NOT_STARTED: &str = "not started: the run ended";
const FAILED: &str = "failed: ";

impl FaultOutcome {
    /// True when the fault was made.
    pub fn is_applied(&self) -> bool {
        *self == FaultOutcome::Applied
    }

    /// The outcome a sentence names (the inverse of its `Display`).
    pub fn parse(text: &str) -> Self {
        match text {
            APPLIED => FaultOutcome::Applied,
            NOT_STARTED => FaultOutcome::NotStarted,
            other => FaultOutcome::Failed(other.strip_prefix(FAILED).unwrap_or(other).to_string()),
        }
    }
}

impl fmt::Display for FaultOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultOutcome::Applied => f.write_str(APPLIED),
            FaultOutcome::NotStarted => f.write_str(NOT_STARTED),
            FaultOutcome::Failed(reason) => write!(f, "{FAILED}{reason}"),
        }
    }
}

impl Serialize for FaultOutcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FaultOutcome {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(FaultOutcome::parse(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_back_as_written_in_earlier_reports() {
        for (outcome, json) in [
            (FaultOutcome::Applied, "\"applied\""),
            (FaultOutcome::NotStarted, "\"not started: the run ended\""),
            (
                FaultOutcome::Failed("no proxy on the client paths".into()),
                "\"failed: no proxy on the client paths\"",
            ),
        ] {
            assert_eq!(serde_json::to_string(&outcome).unwrap(), json);
            assert_eq!(serde_json::from_str::<FaultOutcome>(json).unwrap(), outcome);
        }
        assert!(FaultOutcome::Applied.is_applied());
        assert!(!FaultOutcome::Failed("x".into()).is_applied());
    }
}
