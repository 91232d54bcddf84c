//! Durations written the way people write them in config files: `500ms`, `30s`, `5m`, `1h`, `1d`.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, de};

/// A non-negative duration parsed from a string such as `30s` or `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DurationSpec(pub Duration);

impl DurationSpec {
    /// Whole milliseconds, saturating. In 64-bit arithmetic: `Duration::as_millis`
    /// is 128-bit, which wasm has no instruction for (each multiply is a call
    /// out, four per forwarded request), and so is `u64::saturating_mul`.
    pub fn as_millis(self) -> u64 {
        origin_fallback::saturating_mul_by(self.0.as_secs(), 1000).saturating_add(u64::from(self.0.subsec_millis()))
    }

    /// A duration of whole seconds, for defaults.
    pub const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
}

impl TryFrom<&str> for DurationSpec {
    type Error = String;

    fn try_from(text: &str) -> Result<Self, Self::Error> {
        let complaint = || {
            format!(
                "`{text}` is not a duration: write a number followed by ms, s, m, h or d, for example `30s` or `1h30m`"
            )
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(complaint());
        }
        let mut total_ms: u64 = 0;
        let mut rest = trimmed;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(complaint());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| complaint())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit_ms = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(complaint()),
            };
            rest = &rest[unit_len..];
            total_ms = number.checked_mul(unit_ms).and_then(|ms| total_ms.checked_add(ms)).ok_or_else(complaint)?;
        }
        Ok(Self(Duration::from_millis(total_ms)))
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = DurationSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as `30s`, `5m` or `1h`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationSpec, E> {
                DurationSpec::try_from(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d))+$",
            "description": "A duration: a number followed by ms, s, m, h or d, e.g. `30s` or `1h30m`."
        })
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.as_millis();
        match ms {
            0 => f.write_str("0s"),
            _ if ms.is_multiple_of(3_600_000) => write!(f, "{}h", ms / 3_600_000),
            _ if ms.is_multiple_of(60_000) => write!(f, "{}m", ms / 60_000),
            _ if ms.is_multiple_of(1_000) => write!(f, "{}s", ms / 1_000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_compound_units() {
        assert_eq!(DurationSpec::try_from("30s").unwrap().as_millis(), 30_000);
        assert_eq!(DurationSpec::try_from("250ms").unwrap().as_millis(), 250);
        assert_eq!(DurationSpec::try_from("1h30m").unwrap().as_millis(), 5_400_000);
        assert_eq!(DurationSpec::try_from("1d").unwrap().as_millis(), 86_400_000);
    }

    #[test]
    fn milliseconds_are_whole_and_saturate_as_the_128_bit_ones_would() {
        let secs = [0, 1, 59, 86_400, u64::MAX / 1000 - 1, u64::MAX / 1000, u64::MAX / 1000 + 1, u64::MAX];
        for s in secs {
            for nanos in [0, 999_999, 1_000_000, 615_999_999, 999_999_999] {
                let d = Duration::new(s, nanos);
                let wide = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                assert_eq!(DurationSpec(d).as_millis(), wide, "{s} s {nanos} ns");
            }
        }
    }

    #[test]
    fn refuses_missing_or_unknown_units_and_overflow() {
        for bad in ["", "30", "s", "5 parsecs", "-1s", "1.5s", "99999999999999999999d"] {
            let err = DurationSpec::try_from(bad).unwrap_err();
            assert!(err.contains("is not a duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn displays_in_the_largest_whole_unit() {
        assert_eq!(DurationSpec::try_from("90m").unwrap().to_string(), "90m");
        assert_eq!(DurationSpec::try_from("120m").unwrap().to_string(), "2h");
        assert_eq!(DurationSpec::try_from("1500ms").unwrap().to_string(), "1500ms");
    }
}
