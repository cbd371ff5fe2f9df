//! Durations as a researcher writes them in a matrix: `90s`, `10m`, `1h30m`, `250ms`, or a bare number of seconds.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Why a written duration was refused; the messages quote the text as written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("{0:?} is not a duration like 90s, 10m, 1h30m or 250ms")]
    NotADuration(String),
    #[error("{0:?} is not a number")]
    NotANumber(String),
    #[error("{0:?}: a number inside a duration needs a unit (ms, s, m, h, d)")]
    MissingUnit(String),
    #[error("{text:?}: unknown unit {unit:?}; use ms, s, m, h or d")]
    UnknownUnit { text: String, unit: String },
    /// Negative, NaN or infinite seconds.
    #[error("must be a non-negative duration, got {0}")]
    Negative(f64),
    #[error(transparent)]
    TooLong(#[from] std::time::TryFromFloatSecsError),
}

/// Parses `1h30m`, `45s`, `250ms`, `1.5h` or `30` (seconds).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds_to_duration(seconds);
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::NotADuration(text.to_string()));
        }
        let number: f64 = rest[..digits].parse().map_err(|_| DurationError::NotANumber(rest[..digits].to_string()))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "" => return Err(DurationError::MissingUnit(text.to_string())),
            unit => return Err(DurationError::UnknownUnit { text: text.to_string(), unit: unit.to_string() }),
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    seconds_to_duration(total)
}

fn seconds_to_duration(seconds: f64) -> Result<Duration, DurationError> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(DurationError::Negative(seconds));
    }
    Ok(Duration::try_from_secs_f64(seconds)?)
}

/// Writes a duration the way [`parse`] reads it back (whole units where possible).
pub fn format(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut seconds = duration.as_secs();
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if seconds >= size {
            out.push_str(&format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Seconds(f64),
    Text(String),
}

/// serde helper: an optional duration written as text or a number of seconds.
pub fn deserialize_option<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let written = Option::<Written>::deserialize(deserializer)?;
    match written {
        None => Ok(None),
        Some(Written::Seconds(s)) => seconds_to_duration(s).map(Some).map_err(serde::de::Error::custom),
        Some(Written::Text(t)) => parse(&t).map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_combinations_parse() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in ["", "ten minutes", "10 parsecs", "5x", "-3", "1h30", "m"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn format_reads_back() {
        for d in [Duration::from_secs(5400), Duration::from_millis(250), Duration::from_secs(61), Duration::ZERO] {
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
