//! Units a scenario is written in: durations ("250ms", "30s", "2m"), byte sizes (1024, "1KiB")
//! and their serde front ends, which turn a bad value into a message saying what is allowed.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// What a duration must look like, quoted in every duration error.
pub const DURATION_EXPECTED: &str = "expected a duration with a unit, like \"250ms\", \"30s\", \"2m\" or \"1m30s\" (units: us, ms, s, m, h)";

/// What a size must look like, quoted in every size error.
pub const SIZE_EXPECTED: &str = "expected a size in bytes, like 1024, \"512B\", \"4KiB\" or \"1MiB\" (units: B, KiB, MiB, GiB, kB, MB, GB)";

/// Parses a duration such as `250ms`, `30s`, `2m`, `1h`, `1.5s` or `1m30s`.
///
/// # Errors
/// Returns a message naming what is allowed when the text is not such a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("empty duration: {DURATION_EXPECTED}"));
    }
    let mut total = 0f64;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(DURATION_EXPECTED.to_string());
        }
        let number: f64 = rest[..number_len]
            .replace('_', "")
            .parse()
            .map_err(|_| DURATION_EXPECTED.to_string())?;
        rest = rest[number_len..].trim_start();
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("missing unit: {DURATION_EXPECTED}")),
            _ => return Err(DURATION_EXPECTED.to_string()),
        };
        total += number * seconds_per_unit;
        rest = rest[unit_len..].trim_start();
    }
    if !total.is_finite() || total > 1e9 {
        return Err(format!("duration too long: {DURATION_EXPECTED}"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parses a byte size: a plain number of bytes or a number with a unit (`4KiB`, `1MB`).
///
/// # Errors
/// Returns a message naming what is allowed when the text is not such a size.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let number_len = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '_' || c == '.'))
        .unwrap_or(trimmed.len());
    if number_len == 0 {
        return Err(SIZE_EXPECTED.to_string());
    }
    let number: f64 = trimmed[..number_len]
        .replace('_', "")
        .parse()
        .map_err(|_| SIZE_EXPECTED.to_string())?;
    let multiplier: f64 = match trimmed[number_len..].trim() {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return Err(SIZE_EXPECTED.to_string()),
    };
    let bytes = number * multiplier;
    if bytes.fract() != 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("not a whole number of bytes: {SIZE_EXPECTED}"));
    }
    Ok(bytes as u64)
}

/// Formats a duration the way scenarios write them (`250ms`, `30s`, `2m30s`), for messages.
pub fn format_duration(duration: Duration) -> String {
    let micros = duration.as_micros();
    if micros == 0 {
        return "0s".to_string();
    }
    if micros % 1_000 != 0 {
        return format!("{micros}us");
    }
    let millis = micros / 1_000;
    if millis % 1_000 != 0 {
        return format!("{millis}ms");
    }
    let seconds = millis / 1_000;
    match (seconds / 3600, (seconds % 3600) / 60, seconds % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// A duration field of a scenario, written as a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(DURATION_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<DurationValue, E> {
                parse_duration(text)
                    .map(DurationValue)
                    .map_err(|why| E::custom(format!(" = {text:?}: {why}")))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<DurationValue, E> {
                Err(E::custom(format!(
                    " = {n}: a duration needs a unit, for example \"{n}s\" or \"{n}ms\""
                )))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<DurationValue, E> {
                self.visit_i64(n as i64)
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<DurationValue, E> {
                Err(E::custom(format!(
                    " = {n}: a duration needs a unit, for example \"{n}s\""
                )))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// A byte-size field of a scenario: an integer number of bytes or a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// The serde visitor shared by [`ByteSize`] and the size range of `publishers.size`.
pub(crate) struct ByteSizeVisitor;

impl<'de> Visitor<'de> for ByteSizeVisitor {
    type Value = ByteSize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(SIZE_EXPECTED)
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
        parse_size(text)
            .map(ByteSize)
            .map_err(|why| E::custom(format!(" = {text:?}: {why}")))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
        u64::try_from(n).map(ByteSize).map_err(|_| {
            E::custom(format!(
                " = {n}: a size cannot be negative; {SIZE_EXPECTED}"
            ))
        })
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(n))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_without_units_or_with_unknown_units_are_refused() {
        for bad in ["", "30", "ten seconds", "5 sec", "s", "1d", "-5s", "1..5s"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains("expected a duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn sizes_in_bytes_and_units_parse() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("4 KiB"), Ok(4096));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1kB"), Ok(1000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert!(parse_size("1.1B").is_err());
        assert!(parse_size("1 KB/s").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn durations_format_the_way_scenarios_write_them() {
        for text in ["250ms", "30s", "2m", "1m30s", "1h", "500us", "0s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
