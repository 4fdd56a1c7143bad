//! Small checks shared by the lowering of every section: ranges of counts and numbers,
//! fields that only make sense with another setting. Each records a diagnostic and
//! returns a usable fallback so checking can go on.

use std::time::Duration;

use super::diagnostic::Checker;
use super::units::{DurationValue, format_duration};

/// A whole number in `min..=max`, or `default` when absent.
pub fn whole(
    c: &mut Checker<'_>,
    path: &str,
    value: Option<i64>,
    default: u64,
    min: u64,
    max: u64,
    meaning: &str,
) -> u64 {
    match value {
        None => default,
        Some(v) if v >= 0 && (v as u64) >= min && (v as u64) <= max => v as u64,
        Some(v) => {
            let range = if max == u64::MAX {
                format!(">= {min}")
            } else {
                format!("from {min} to {max}")
            };
            c.error(
                path,
                format!(" = {v}: expected {meaning}, a whole number {range}"),
            );
            default
        }
    }
}

/// A finite number > 0, if present.
pub fn positive(c: &mut Checker<'_>, path: &str, value: Option<f64>, meaning: &str) -> Option<f64> {
    match value {
        Some(v) if v.is_finite() && v > 0.0 => Some(v),
        Some(v) => {
            c.error(
                path,
                format!(" = {v}: expected a positive number of {meaning}"),
            );
            None
        }
        None => None,
    }
}

/// A duration > 0, if present.
pub fn nonzero(c: &mut Checker<'_>, path: &str, value: Option<DurationValue>) -> Option<Duration> {
    match value {
        Some(DurationValue(d)) if d.is_zero() => {
            c.error(path, " = \"0s\": expected a duration longer than zero");
            None
        }
        other => other.map(|v| v.0),
    }
}

/// An AMQP heartbeat: whole seconds from 0 (the broker's own, 60 s on a default RabbitMQ) to 65535.
pub fn heartbeat(c: &mut Checker<'_>, path: &str, value: Option<DurationValue>) -> Duration {
    const DEFAULT: Duration = Duration::from_secs(5);
    match value {
        None => DEFAULT,
        Some(DurationValue(d)) if d.subsec_nanos() == 0 && d.as_secs() <= 65_535 => d,
        Some(DurationValue(d)) => {
            c.error(
                path,
                format!(
                    " = {:?}: AMQP heartbeats are whole seconds up to 65535, like \"5s\" (\"0s\" takes the broker's)",
                    format_duration(d)
                ),
            );
            DEFAULT
        }
    }
}

/// Refuses a field that only means something under another setting.
pub fn only_with<T>(
    c: &mut Checker<'_>,
    path: &str,
    value: &Option<T>,
    allowed: bool,
    condition: &str,
) {
    if value.is_some() && !allowed {
        c.key_error(
            path,
            format!("only used with {condition}; remove it or change that setting"),
        );
    }
}

/// Quotes a duration the way a scenario writes it.
pub fn quoted(duration: Duration) -> String {
    format!("{:?}", format_duration(duration))
}
