//! Scenario files: the TOML format (version 1), its defaults, and validation that names the
//! file, line, column and field of every problem. `load` returns a [`Plan`] or every
//! problem found, never just the first.

mod checks;
mod clients;
pub mod diagnostic;
mod faults;
pub mod file;
mod lower;
pub mod plan;
pub mod routing;
pub mod short_strings;
pub mod source;
mod tls;
mod topology;
pub mod units;
mod warnings;

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub use diagnostic::{Diagnostic, Diagnostics};
pub use plan::*;

use diagnostic::{Checker, humanize_serde_message};
use file::ScenarioFile;
use source::{FieldSpans, Source, join};

/// The smallest message body: warren's message header (with its checksum).
pub const MIN_BODY_SIZE: u64 = crate::message::HEADER_LEN as u64;

/// The largest message body RabbitMQ accepts by default (max_message_size, 128 MiB).
pub const MAX_BODY_SIZE: u64 = 128 * 1024 * 1024;

/// Why a scenario could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read at all.
    /// (The I/O error is part of the message, not a separate source, so an error chain
    /// printed whole says it once.)
    #[error("{path}: cannot read the scenario file: {cause}")]
    Read { path: String, cause: std::io::Error },
    /// The file was read and has problems, each with its position.
    #[error(transparent)]
    Invalid(#[from] Diagnostics),
}

/// Command-line settings that replace the scenario's own before it is checked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    /// `--duration`: replaces the scenario's `duration`.
    pub duration: Option<Duration>,
    /// `--threads`: replaces the scenario's `threads`.
    pub threads: Option<u32>,
}

/// Reads, parses and checks a scenario file.
///
/// # Errors
/// [`ScenarioError::Read`] when the file cannot be read, [`ScenarioError::Invalid`] with
/// every problem found otherwise.
pub fn load(path: &Path, overrides: Overrides) -> Result<Plan, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ScenarioError::Read {
        path: path.display().to_string(),
        cause,
    })?;
    Ok(parse(path, &text, overrides)?)
}

/// Parses and checks scenario text; `path` names the file in diagnostics.
///
/// # Errors
/// Every problem found, in file order.
pub fn parse(path: &Path, text: &str, overrides: Overrides) -> Result<Plan, Diagnostics> {
    let source = Source::new(path.display().to_string(), text);
    let (document, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        let spans = FieldSpans::default();
        let mut checker = Checker::new(&source, &spans);
        for error in syntax_errors {
            let offset = error.span().map_or(0, |s| s.start);
            checker.error_at(offset, "", format!("TOML syntax: {}", error.message()));
        }
        return checker
            .finish()
            .map(|_| unreachable!("syntax errors were recorded"));
    }
    let spans = FieldSpans::index(&document);
    let mut checker = Checker::new(&source, &spans);
    let file = read_sections(document, &mut checker);
    let mut plan = lower::lower(file, path, overrides, &mut checker);
    plan.warnings = checker.finish()?.iter().map(ToString::to_string).collect();
    Ok(plan)
}

/// The top-level fields, for "unknown field" suggestions.
const TOP_LEVEL_FIELDS: &[&str] = &[
    "version",
    "name",
    "description",
    "duration",
    "after_faults",
    "messages",
    "seed",
    "drain_timeout",
    "final_read",
    "final_read_timeout",
    "threads",
    "broker",
    "topology",
    "publishers",
    "consumers",
    "faults",
    "chaos",
    "gates",
    "sweep",
    "report",
    "proxy",
];

/// Deserializes each top-level field on its own, so that a problem in one section does not
/// hide the problems of the others.
fn read_sections(document: Spanned<DeTable<'_>>, checker: &mut Checker<'_>) -> ScenarioFile {
    let mut file = ScenarioFile::default();
    for (key, value) in document.into_inner() {
        let name = key.get_ref().as_ref();
        match name {
            "version" => file.version = field(value, name, checker),
            "name" => file.name = field(value, name, checker),
            "description" => file.description = field(value, name, checker),
            "duration" => file.duration = field(value, name, checker),
            "after_faults" => file.after_faults = field(value, name, checker),
            "messages" => file.messages = field(value, name, checker),
            "seed" => file.seed = field(value, name, checker),
            "drain_timeout" => file.drain_timeout = field(value, name, checker),
            "final_read" => file.final_read = field(value, name, checker),
            "final_read_timeout" => file.final_read_timeout = field(value, name, checker),
            "threads" => file.threads = field(value, name, checker),
            "broker" => file.broker = field(value, name, checker).unwrap_or_default(),
            "topology" => file.topology = field(value, name, checker).unwrap_or_default(),
            "publishers" => file.publishers = field(value, name, checker).unwrap_or_default(),
            "consumers" => file.consumers = field(value, name, checker).unwrap_or_default(),
            "chaos" => file.chaos = field(value, name, checker),
            "gates" => file.gates = field(value, name, checker).unwrap_or_default(),
            "sweep" => file.sweep = field(value, name, checker),
            "report" => file.report = field(value, name, checker).unwrap_or_default(),
            "proxy" => file.proxy = field(value, name, checker).unwrap_or_default(),
            "faults" => file.faults = fault_entries(value, checker),
            unknown => {
                let message = humanize_serde_message(&format!(
                    "unknown field `{unknown}`, expected one of {}",
                    TOP_LEVEL_FIELDS
                        .iter()
                        .map(|f| format!("`{f}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                checker.key_error(unknown, message);
            }
        }
    }
    file
}

/// `[[faults]]` is read entry by entry, so one bad fault does not hide another.
fn fault_entries(value: Spanned<DeValue<'_>>, checker: &mut Checker<'_>) -> Vec<file::FaultEntry> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(array) => array
            .into_iter()
            .enumerate()
            .map(|(i, item)| field(item, &format!("faults[{i}]"), checker).unwrap_or_default())
            .collect(),
        _ => {
            checker.error_at(
                span.start,
                "faults",
                "expected a list of [[faults]] tables, each with a kind, like:\n  [[faults]]\n  at = \"20s\"\n  kind = \"broker_restart\"",
            );
            Vec::new()
        }
    }
}

/// Deserializes one value, recording a positioned diagnostic (with the field path inside
/// the value) for each field that does not fit. A bad field is dropped and the value tried
/// again, so one section reports all of its problems, not just the first.
fn field<T: DeserializeOwned>(
    mut value: Spanned<DeValue<'_>>,
    path: &str,
    checker: &mut Checker<'_>,
) -> Option<T> {
    const MAX_PROBLEMS_PER_VALUE: usize = 32;
    let value_start = value.span().start;
    for _ in 0..MAX_PROBLEMS_PER_VALUE {
        let deserializer = ValueDeserializer::from(value.clone());
        let error = match serde_path_to_error::deserialize::<_, T>(deserializer) {
            Ok(parsed) => return Some(parsed),
            Err(error) => error,
        };
        let keys: Option<Vec<String>> = error
            .path()
            .iter()
            .map(|segment| match segment {
                Segment::Map { key } => Some(key.clone()),
                _ => None,
            })
            .collect();
        let inner = error.path().to_string();
        let full_path = match inner.as_str() {
            "." => path.to_string(),
            inner if inner.starts_with('[') => format!("{path}{inner}"),
            inner => join(path, inner),
        };
        let error = error.into_inner();
        let message = humanize_serde_message(error.message());
        match error.span() {
            Some(span) => checker.error_at(span.start, &full_path, message),
            None if full_path == path => checker.error_at(value_start, &full_path, message),
            None => checker.error(&full_path, message),
        }
        match keys {
            Some(keys) if !keys.is_empty() && remove_field(&mut value, &keys) => {}
            _ => return None,
        }
    }
    None
}

/// Removes the field at `keys` (table keys from `value` down); false when it is not there.
fn remove_field(value: &mut Spanned<DeValue<'_>>, keys: &[String]) -> bool {
    let DeValue::Table(table) = value.get_mut() else {
        return false;
    };
    match keys {
        [] => false,
        [last] => table.remove(last.as_str()).is_some(),
        [first, rest @ ..] => match table.get_mut(first.as_str()) {
            Some(inner) => remove_field(inner, rest),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests;
