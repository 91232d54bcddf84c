//! Byte sizes written the way people write them: `64MiB`, `1GB`, `512KiB`, or a plain number.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, de};

/// A number of bytes parsed from `64MiB`, `1GB`, `500kB` or a bare integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl TryFrom<&str> for ByteSize {
    type Error = String;

    fn try_from(text: &str) -> Result<Self, Self::Error> {
        let complaint =
            || format!("`{text}` is not a size: write a number with B, kB, KiB, MB, MiB, GB or GiB, e.g. `256MiB`");
        let trimmed = text.trim();
        let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(complaint());
        }
        let number: u64 = trimmed[..digits].parse().map_err(|_| complaint())?;
        let unit: u64 = match trimmed[digits..].trim() {
            "" | "B" => 1,
            "kB" | "KB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            _ => return Err(complaint()),
        };
        number.checked_mul(unit).map(Self).ok_or_else(complaint)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as `256MiB`, or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::try_from(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v).map(ByteSize).map_err(|_| E::custom(format!("{v} is not a size: it is negative")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]+ ?(B|kB|KB|KiB|MB|MiB|GB|GiB)?$"}
            ],
            "description": "A size: a number of bytes, or a number with B, kB, KiB, MB, MiB, GB or GiB, e.g. `256MiB`."
        })
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            b if b >= 1 << 30 && b.is_multiple_of(1 << 30) => write!(f, "{}GiB", b >> 30),
            b if b >= 1 << 20 && b.is_multiple_of(1 << 20) => write!(f, "{}MiB", b >> 20),
            b if b >= 1 << 10 && b.is_multiple_of(1 << 10) => write!(f, "{}KiB", b >> 10),
            b => write!(f, "{b}B"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_and_decimal_units_and_plain_numbers() {
        let size = |t: &str| ByteSize::try_from(t).map(|s| s.0);
        assert_eq!(size("256MiB"), Ok(256 << 20));
        assert_eq!(size("1 GB"), Ok(1_000_000_000));
        assert_eq!(size("512KiB"), Ok(512 << 10));
        assert_eq!(size("4096"), Ok(4096));
        for bad in ["", "MiB", "1.5GiB", "-1", "12 parsecs", "99999999999999999999GiB"] {
            assert!(size(bad).is_err_and(|e| e.contains("is not a size")), "{bad}");
        }
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
    }
}
