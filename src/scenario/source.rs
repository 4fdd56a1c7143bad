//! The text of a scenario file and where each of its fields sits, so that every diagnostic
//! can name a line and a column, including those found after parsing (semantic checks).

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One scenario file's text, with the offsets at which its lines start.
#[derive(Debug)]
pub struct Source {
    /// The file name as the user wrote it, used as the prefix of every diagnostic.
    pub name: String,
    /// The whole text, kept to turn byte offsets into lines and columns.
    pub text: String,
    /// Byte offset of the first character of each line.
    line_starts: Vec<usize>,
}

/// A 1-based line and column in a [`Source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column (in characters), starting at 1.
    pub column: usize,
}

impl Source {
    /// Wraps a file's text under the name diagnostics will show.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// Turns a byte offset into a line and column.
    pub fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line_index = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let line_start = self.line_starts[line_index];
        let column = self.text[line_start..offset].chars().count() + 1;
        Location {
            line: line_index + 1,
            column,
        }
    }
}

/// Where each field of a parsed document sits: the span of its key and of its value,
/// by field path (`publishers.rate`, `faults[2].at`, `report.formats[0]`).
#[derive(Debug, Default)]
pub struct FieldSpans {
    keys: HashMap<String, Range<usize>>,
    values: HashMap<String, Range<usize>>,
}

impl FieldSpans {
    /// Indexes every key and value of a document parsed with spans.
    pub fn index(document: &Spanned<DeTable<'_>>) -> Self {
        let mut spans = Self::default();
        spans.walk_table("", document.get_ref());
        spans
    }

    fn walk_table(&mut self, prefix: &str, table: &DeTable<'_>) {
        for (key, value) in table.iter() {
            let path = join(prefix, key.get_ref());
            self.keys.insert(path.clone(), key.span());
            self.walk_value(path, value);
        }
    }

    fn walk_value(&mut self, path: String, value: &Spanned<DeValue<'_>>) {
        match value.get_ref() {
            DeValue::Table(table) => self.walk_table(&path, table),
            DeValue::Array(array) => {
                for (i, item) in array.iter().enumerate() {
                    self.walk_value(format!("{path}[{i}]"), item);
                }
            }
            _ => {}
        }
        self.values.insert(path, value.span());
    }

    /// The byte offset a diagnostic about `path` should point at: the value when the field
    /// is present, else the closest enclosing field that is, else the start of the file.
    pub fn value_offset(&self, path: &str) -> usize {
        self.offset(path, &self.values)
    }

    /// Like [`FieldSpans::value_offset`], but pointing at the key (for unknown fields).
    pub fn key_offset(&self, path: &str) -> usize {
        self.offset(path, &self.keys)
    }

    fn offset(&self, path: &str, spans: &HashMap<String, Range<usize>>) -> usize {
        let mut current = path;
        loop {
            if let Some(span) = spans.get(current).or_else(|| self.keys.get(current)) {
                return span.start;
            }
            match parent(current) {
                Some(p) => current = p,
                None => return 0,
            }
        }
    }
}

/// Appends a key to a field path.
pub fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The enclosing field of a path: `faults[1].at` → `faults[1]` → `faults`.
fn parent(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let source = Source::new("x.toml", "a = 1\nbb = 2\n\nc = 3");
        assert_eq!(source.location(0), Location { line: 1, column: 1 });
        assert_eq!(source.location(6), Location { line: 2, column: 1 });
        assert_eq!(source.location(11), Location { line: 2, column: 6 });
        assert_eq!(source.location(14), Location { line: 4, column: 1 });
    }

    #[test]
    fn fields_are_found_by_path_and_missing_ones_point_at_their_parent() {
        let text = "name = \"x\"\n[publishers]\nrate = -5\n[[faults]]\nkind = \"down\"\n";
        let source = Source::new("x.toml", text);
        let document = DeTable::parse(text).unwrap();
        let spans = FieldSpans::index(&document);
        let at = |path: &str| source.location(spans.value_offset(path));
        assert_eq!(at("publishers.rate"), Location { line: 3, column: 8 });
        assert_eq!(at("faults[0].kind"), Location { line: 5, column: 8 });
        assert_eq!(at("publishers.count").line, 2);
        assert_eq!(at("nothing.here"), Location { line: 1, column: 1 });
    }
}
