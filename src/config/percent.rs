//! A share from 0 to 100 percent, checked where it is read.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

/// A whole share from 0 to 100 percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent(u8);

impl Percent {
    /// 50%.
    pub const HALF: Self = Self(50);

    /// The share, from 0 to 100.
    pub fn get(self) -> u8 {
        self.0
    }

    /// Whether `part` of `whole` is less than this share of it.
    pub fn exceeds(self, part: usize, whole: usize) -> bool {
        (part as u128) * 100 < u128::from(self.0) * (whole as u128)
    }
}

impl TryFrom<u64> for Percent {
    type Error = String;

    fn try_from(n: u64) -> Result<Self, String> {
        u8::try_from(n).ok().filter(|n| *n <= 100).map(Self).ok_or_else(|| format!("{n} is not a share from 0 to 100"))
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::try_from(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Percent".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "integer", "minimum": 0, "maximum": 100})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_a_whole_number_up_to_100() {
        assert_eq!(Percent::try_from(50).map(Percent::get), Ok(50));
        assert!(Percent::try_from(101).is_err() && Percent::try_from(300).is_err());
        let half = Percent::try_from(50).unwrap_or(Percent(0));
        assert!(half.exceeds(0, 2) && !half.exceeds(1, 2) && half.exceeds(1, 3));
        assert!(!Percent(0).exceeds(0, 5), "0% is never exceeded");
        assert!(Percent(100).exceeds(4, 5) && !Percent(100).exceeds(5, 5));
    }
}
