//! Kubernetes resource quantities ("200m", "500Mi", "1.5Gi", "1e3"), kept exact.
//!
//! A quantity is held as `mantissa × 10^exp10 × 2^exp2` so that binary suffixes and decimal fractions never
//! lose precision; conversions to integers round up, as `Quantity.Value()` / `MilliValue()` do upstream.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a quantity string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity is empty")]
    Empty,
    #[error(
        "{0:?} is not a quantity: expected a number with an optional suffix (m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or e<exponent>)"
    )]
    Syntax(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// A parsed quantity; the original text is kept so that manifests serialize back as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity {
    text: String,
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

// Digits beyond this many cannot change anything a controller reads, and would overflow u128 arithmetic.
const MAX_DIGITS: usize = 30;

impl Quantity {
    /// Parses the Kubernetes quantity grammar: `[+-]<digits>[.<digits>][suffix]`.
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(QuantityError::Empty);
        }
        let syntax = || QuantityError::Syntax(text.to_string());
        let (negative, rest) = match trimmed.as_bytes()[0] {
            b'-' => (true, &trimmed[1..]),
            b'+' => (false, &trimmed[1..]),
            _ => (false, trimmed),
        };
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_len);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
            return Err(syntax());
        }
        // Leading zeros carry no value; trailing fraction zeros none either.
        let digits: String = format!("{int_part}{frac_part}");
        let significant = digits.trim_start_matches('0');
        let mut exp10 = -(frac_part.len() as i32);
        let mut significant = significant.to_string();
        while significant.len() > 1 && significant.ends_with('0') {
            significant.pop();
            exp10 += 1;
        }
        if significant.len() > MAX_DIGITS {
            return Err(QuantityError::TooLarge(text.to_string()));
        }
        let mantissa: u128 = if significant.is_empty() { 0 } else { significant.parse().map_err(|_| syntax())? };

        let exp2 = match suffix {
            "Ki" => 10,
            "Mi" => 20,
            "Gi" => 30,
            "Ti" => 40,
            "Pi" => 50,
            "Ei" => 60,
            _ => 0,
        };
        if exp2 == 0 {
            exp10 += match suffix {
                "" => 0,
                "m" => -3,
                "k" => 3,
                "M" => 6,
                "G" => 9,
                "T" => 12,
                "P" => 15,
                "E" => 18,
                s if s.starts_with('e') || s.starts_with('E') => {
                    let exponent = &s[1..];
                    let unsigned = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
                    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(syntax());
                    }
                    let value: i32 = exponent.parse().map_err(|_| QuantityError::TooLarge(text.to_string()))?;
                    if value.abs() > 100 {
                        return Err(QuantityError::TooLarge(text.to_string()));
                    }
                    value
                }
                _ => return Err(syntax()),
            };
        }
        let quantity =
            Quantity { text: trimmed.to_string(), negative: negative && mantissa != 0, mantissa, exp10, exp2 };
        // Refuse anything whose value does not fit an i64, so later conversions cannot fail.
        quantity.scaled(0).ok_or_else(|| QuantityError::TooLarge(text.to_string()))?;
        Ok(quantity)
    }

    /// The text as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value in thousandths of a unit, rounded up (millicores for cpu), like `MilliValue()`; saturates
    /// beyond ±9.2e15 units.
    pub fn milli_value(&self) -> i64 {
        self.scaled(3).unwrap_or(if self.negative { i64::MIN } else { i64::MAX })
    }

    /// The value in whole units, rounded up (bytes for memory), like `Value()`.
    pub fn value(&self) -> i64 {
        self.scaled(0).expect("checked when parsed")
    }

    /// An approximate float, like `AsApproximateFloat64()`; used for tolerances such as "0.05".
    pub fn as_f64(&self) -> f64 {
        let magnitude = self.mantissa as f64 * 10f64.powi(self.exp10) * 2f64.powi(self.exp2 as i32);
        if self.negative { -magnitude } else { magnitude }
    }

    pub fn is_negative(&self) -> bool {
        self.negative
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// `value × 10^extra10`, rounded away from zero, or None when it does not fit an i64.
    fn scaled(&self, extra10: i32) -> Option<i64> {
        let binary = 1u128.checked_shl(self.exp2)?;
        let numerator = self.mantissa.checked_mul(binary)?;
        let exponent = self.exp10 + extra10;
        let magnitude = if exponent >= 0 {
            numerator.checked_mul(10u128.checked_pow(exponent as u32)?)?
        } else {
            match 10u128.checked_pow(exponent.unsigned_abs()) {
                Some(divisor) => numerator.div_ceil(divisor),
                // Beyond u128 range the value is a tiny fraction: it rounds up to one, unless zero.
                None => u128::from(numerator > 0),
            }
        };
        let magnitude = i64::try_from(magnitude).ok()?;
        Some(if self.negative { -magnitude } else { magnitude })
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

// kubectl accepts a quantity as a string or as a bare YAML number (`averageValue: 1`).
impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct QuantityVisitor;
        impl Visitor<'_> for QuantityVisitor {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as \"200m\", \"500Mi\" or 1.5")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                Quantity::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                if !v.is_finite() {
                    return Err(E::custom(format!("{v} is not a quantity")));
                }
                self.visit_str(&v.to_string())
            }
        }
        deserializer.deserialize_any(QuantityVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn milli(s: &str) -> i64 {
        Quantity::parse(s).unwrap().milli_value()
    }

    fn value(s: &str) -> i64 {
        Quantity::parse(s).unwrap().value()
    }

    #[test]
    fn decimal_si_suffixes() {
        assert_eq!(milli("200m"), 200);
        assert_eq!(milli("1"), 1000);
        assert_eq!(milli("1.5"), 1500);
        assert_eq!(milli("0.1"), 100);
        assert_eq!(milli(".5"), 500);
        assert_eq!(milli("2."), 2000);
        assert_eq!(value("1k"), 1000);
        assert_eq!(value("3M"), 3_000_000);
        assert_eq!(value("2G"), 2_000_000_000);
        assert_eq!(value("1T"), 1_000_000_000_000);
        assert_eq!(value("1P"), 1_000_000_000_000_000);
        assert_eq!(value("1E"), 1_000_000_000_000_000_000);
    }

    #[test]
    fn binary_si_suffixes() {
        assert_eq!(value("500Mi"), 524_288_000);
        assert_eq!(value("1.5Gi"), 1_610_612_736);
        assert_eq!(value("1Ki"), 1024);
        assert_eq!(value("64Mi"), 67_108_864);
        assert_eq!(value("1Ti"), 1_099_511_627_776);
        assert_eq!(milli("1Ki"), 1_024_000);
    }

    #[test]
    fn exponents_and_signs() {
        assert_eq!(value("1e3"), 1000);
        assert_eq!(value("1E3"), 1000);
        assert_eq!(milli("5e-3"), 5);
        assert_eq!(value("+12"), 12);
        assert_eq!(value("-12"), -12);
        assert!(Quantity::parse("-12").unwrap().is_negative());
        assert!(Quantity::parse("0").unwrap().is_zero());
        assert!(Quantity::parse("0.000").unwrap().is_zero());
    }

    #[test]
    fn conversions_round_up() {
        // Like MilliValue()/Value(): fractions round up, never down.
        assert_eq!(milli("0.0001"), 1);
        assert_eq!(value("1500m"), 2);
        assert_eq!(value("1m"), 1);
        assert_eq!(milli("1e-40"), 1);
    }

    #[test]
    fn float_view_of_tolerances() {
        assert!((Quantity::parse("0.05").unwrap().as_f64() - 0.05).abs() < 1e-12);
        assert!((Quantity::parse("100m").unwrap().as_f64() - 0.1).abs() < 1e-12);
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in ["", "m", "abc", "1.2.3", "1mi", "1 Gi", "1e", "1e+", "Gi", "1KB", "--1", "1.5x"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(Quantity::parse("").unwrap_err(), QuantityError::Empty);
        assert!(matches!(Quantity::parse("12q").unwrap_err(), QuantityError::Syntax(_)));
        assert!(matches!(Quantity::parse("99999999999Ei").unwrap_err(), QuantityError::TooLarge(_)));
        assert_eq!(Quantity::parse("1E").unwrap().milli_value(), i64::MAX);
    }

    #[test]
    fn keeps_the_text_and_serializes_it() {
        let q = Quantity::parse("500Mi").unwrap();
        assert_eq!(q.as_str(), "500Mi");
        assert_eq!(serde_json::to_string(&q).unwrap(), "\"500Mi\"");
        let back: Quantity = serde_json::from_str("\"1.5Gi\"").unwrap();
        assert_eq!(back.value(), 1_610_612_736);
        let number: Quantity = serde_json::from_str("2").unwrap();
        assert_eq!(number.milli_value(), 2000);
    }
}
