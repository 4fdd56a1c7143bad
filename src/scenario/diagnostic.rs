//! Scenario diagnostics: each names the file, line, column and field, and says what is
//! allowed. They are collected, sorted by position and reported together.

use std::fmt;

use super::source::{FieldSpans, Location, Source};

/// One problem found in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the user named it.
    pub file: String,
    /// Where the problem is.
    pub location: Location,
    /// The field path (`publishers.rate`), empty for problems of the whole file.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Location { line, column } = self.location;
        write!(f, "{}:{line}:{column}: ", self.file)?;
        if !self.field.is_empty() {
            write!(f, "{}", self.field)?;
            if !self.message.starts_with(" = ") {
                f.write_str(": ")?;
            }
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one scenario file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics while a scenario is checked, resolving field paths to positions.
pub struct Checker<'a> {
    source: &'a Source,
    spans: &'a FieldSpans,
    found: Vec<Diagnostic>,
    /// Things that are allowed but probably not meant.
    warnings: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    /// Starts an empty collection for one file.
    pub fn new(source: &'a Source, spans: &'a FieldSpans) -> Self {
        Self {
            source,
            spans,
            found: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records something allowed that is probably not what the author meant; it is shown,
    /// and refuses nothing.
    pub fn warn(&mut self, field: &str, message: impl fmt::Display) {
        let offset = self.spans.value_offset(field);
        self.warnings.push(Diagnostic {
            file: self.source.name.clone(),
            location: self.source.location(offset),
            field: field.to_string(),
            message: message.to_string(),
        });
    }

    /// Records a problem with the value of `field` (or with the field's absence).
    pub fn error(&mut self, field: &str, message: impl fmt::Display) {
        let offset = self.spans.value_offset(field);
        self.push(offset, field, message.to_string());
    }

    /// Records a problem with the key of `field` itself (unknown or misplaced fields).
    pub fn key_error(&mut self, field: &str, message: impl fmt::Display) {
        let offset = self.spans.key_offset(field);
        self.push(offset, field, message.to_string());
    }

    /// Records a problem at a known byte offset (parse errors carry their own span).
    pub fn error_at(&mut self, offset: usize, field: &str, message: impl fmt::Display) {
        self.push(offset, field, message.to_string());
    }

    fn push(&mut self, offset: usize, field: &str, message: String) {
        self.found.push(Diagnostic {
            file: self.source.name.clone(),
            location: self.source.location(offset),
            field: field.to_string(),
            message,
        });
    }

    /// Records that a needed field is absent, unless its value was already refused (a
    /// refused value is dropped, and should not then be reported missing as well).
    pub fn missing(&mut self, field: &str, message: impl fmt::Display) {
        if !self.has_error_at(field) {
            self.error(field, format!("missing: {message}"));
        }
    }

    /// True when a problem was already recorded for `field`: a field whose value was
    /// refused is then not also reported as missing.
    pub fn has_error_at(&self, field: &str) -> bool {
        self.found.iter().any(|d| d.field == field)
    }

    /// True when nothing has been found so far.
    pub fn is_clean(&self) -> bool {
        self.found.is_empty()
    }

    /// Ends the collection: `Ok` with the warnings when clean, else every diagnostic in
    /// file order.
    ///
    /// # Errors
    /// Returns the diagnostics found, sorted by position.
    pub fn finish(mut self) -> Result<Vec<Diagnostic>, Diagnostics> {
        if self.found.is_empty() {
            self.warnings.sort_by_key(|d| d.location);
            return Ok(self.warnings);
        }
        self.found.sort_by_key(|d| d.location);
        self.found.dedup();
        Err(Diagnostics(self.found))
    }
}

/// Rewrites serde's wording ("invalid type: string \"x\", expected u32") into the words a
/// scenario author uses, and suggests the closest field for a misspelt one.
pub fn humanize_serde_message(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        return unknown_field_message(rest);
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        return unknown_variant_message(rest);
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        return invalid_type_message(rest);
    }
    expected_words(message)
}

/// serde's type names, in the words a scenario author uses.
fn expected_words(message: &str) -> String {
    let mut text = message.to_string();
    for (serde_words, ours) in [
        ("expected i64", "expected a whole number"),
        ("expected u64", "expected a whole number >= 0"),
        ("expected u32", "expected a whole number >= 0"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected a string", "expected a string in quotes"),
        (
            "expected a sequence",
            "expected a list, like [\"a\", \"b\"]",
        ),
        ("expected a map", "expected a table"),
    ] {
        text = text.replace(serde_words, ours);
    }
    text
}

/// `string "many", expected i64` → ` = "many": expected a whole number`.
fn invalid_type_message(rest: &str) -> String {
    let Some((found, expected)) = rest.split_once(", expected ") else {
        return expected_words(rest);
    };
    let expected = expected_words(&format!("expected {expected}"));
    let value = if let Some(text) = found.strip_prefix("string ") {
        text.to_string()
    } else if let Some((_, literal)) = found.split_once(" `") {
        literal.trim_end_matches('`').to_string()
    } else {
        let kind = match found {
            "map" => "a table",
            "sequence" => "a list",
            other => other,
        };
        return format!(": {kind}, {expected}");
    };
    format!(" = {value}: {expected}")
}

/// `unknown field `rat`, expected one of `count`, `rate`` → a message with a suggestion.
fn unknown_field_message(rest: &str) -> String {
    let (name, expected) = split_name_and_expected(rest);
    let mut message = format!("unknown field `{name}`");
    if let Some(best) = closest(name, &expected) {
        message.push_str(&format!("; did you mean `{best}`?"));
    }
    if !expected.is_empty() {
        message.push_str(&format!(" Allowed here: {}", expected.join(", ")));
    }
    message
}

fn unknown_variant_message(rest: &str) -> String {
    let (name, expected) = split_name_and_expected(rest);
    let mut message = format!(" = {name:?}: expected one of: {}", expected.join(", "));
    if let Some(best) = closest(name, &expected) {
        message.push_str(&format!(" (did you mean {best:?}?)"));
    }
    message
}

/// Splits "name`, expected one of `a`, `b`" (or "expected `a` or `b`") into its parts.
fn split_name_and_expected(rest: &str) -> (&str, Vec<&str>) {
    let name_end = rest.find('`').unwrap_or(rest.len());
    let name = &rest[..name_end];
    let expected = rest[name_end..]
        .split('`')
        .skip(2)
        .step_by(2)
        .filter(|s| !s.is_empty())
        .collect();
    (name, expected)
}

/// The candidate within edit distance 2 of `name`, if any.
fn closest<'c>(name: &str, candidates: &[&'c str]) -> Option<&'c str> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_fields_get_a_suggestion() {
        let message =
            humanize_serde_message("unknown field `rat`, expected one of `count`, `rate`, `size`");
        assert_eq!(
            message,
            "unknown field `rat`; did you mean `rate`? Allowed here: count, rate, size"
        );
    }

    #[test]
    fn unknown_variants_list_what_is_allowed() {
        let message =
            humanize_serde_message("unknown variant `clasic`, expected one of `classic`, `quorum`");
        assert_eq!(
            message,
            " = \"clasic\": expected one of: classic, quorum (did you mean \"classic\"?)"
        );
    }

    #[test]
    fn serde_type_words_become_scenario_words() {
        assert_eq!(
            humanize_serde_message("invalid type: string \"many\", expected i64"),
            " = \"many\": expected a whole number"
        );
        assert_eq!(
            humanize_serde_message("invalid type: integer `5`, expected a string"),
            " = 5: expected a string in quotes"
        );
        assert_eq!(
            humanize_serde_message("invalid type: sequence, expected a boolean"),
            ": a list, expected true or false"
        );
    }
}
