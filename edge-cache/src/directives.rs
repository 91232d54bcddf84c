//! `Cache-Control` (RFC 9111 §5.2) and `CDN-Cache-Control` (RFC 9213)
//! directives, parsed once into a struct.
//!
//! The two fields have different grammars. `Cache-Control` is the lenient
//! list of RFC 9111 §5.2. `CDN-Cache-Control` is a Structured Field
//! Dictionary (RFC 9213 §2.1, RFC 9651 §3.2), parsed by [`structured`]: a
//! value that does not parse as one is ignored whole, never half used.

use crate::fields::{DELTA_SECONDS_MAX, delta_seconds};
use crate::structured::{self, Value};

/// The directives a shared cache acts on. Unknown directives are ignored
/// (RFC 9111 §5.2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// `max-age` (§5.2.1.1, §5.2.2.1).
    pub max_age: Option<u64>,
    /// `s-maxage` (§5.2.2.10).
    pub s_maxage: Option<u64>,
    /// `no-store` (§5.2.1.5, §5.2.2.5).
    pub no_store: bool,
    /// `no-cache`, qualified or not (§5.2.1.4, §5.2.2.4): a qualified one is
    /// treated as unqualified, which the RFC allows.
    pub no_cache: bool,
    /// `private` (§5.2.2.7): a shared cache must not store the response.
    pub private: bool,
    /// `public` (§5.2.2.9).
    pub public: bool,
    /// `must-revalidate` (§5.2.2.2).
    pub must_revalidate: bool,
    /// `proxy-revalidate` (§5.2.2.8).
    pub proxy_revalidate: bool,
    /// `max-stale`, with or without a value (§5.2.1.2).
    pub max_stale: Option<Option<u64>>,
    /// `min-fresh` (§5.2.1.3).
    pub min_fresh: Option<u64>,
    /// `only-if-cached` (§5.2.1.7).
    pub only_if_cached: bool,
    /// `stale-while-revalidate` (RFC 5861 §3).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error` (RFC 5861 §4).
    pub stale_if_error: Option<u64>,
}

impl Directives {
    /// Parses the values of every `Cache-Control` field line of a message.
    ///
    /// When a directive appears twice, the first occurrence is used (§4.2.1).
    /// A `max-age` or `s-maxage` whose value is not delta-seconds makes the
    /// response stale, as §4.2.1 allows for invalid freshness information.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut d = Self::default();
        let mut seen: Vec<String> = Vec::new();
        for value in values {
            for item in split_list(value) {
                let (name, arg) = match item.split_once('=') {
                    Some((n, a)) => (n.trim().to_ascii_lowercase(), Some(unquote(a.trim()))),
                    None => (item.trim().to_ascii_lowercase(), None),
                };
                if name.is_empty() || seen.contains(&name) {
                    continue;
                }
                seen.push(name.clone());
                let seconds = arg.as_deref().and_then(delta_seconds);
                // The request's own directives; the rest are shared with `CDN-Cache-Control`.
                match name.as_str() {
                    "max-stale" => d.max_stale = Some(seconds),
                    "min-fresh" => d.min_fresh = seconds,
                    "only-if-cached" => d.only_if_cached = true,
                    other => d.set(other, true, seconds),
                }
            }
        }
        d
    }

    /// Whether any directive was present at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Parses the values of every `CDN-Cache-Control` field line of a
    /// response as one Structured Field Dictionary (RFC 9213 §2.1). `None`
    /// when there is no such field, or when it does not parse: the cache then
    /// acts as if it were absent (§2.1: a field with a parsing error is
    /// ignored). Directive names are the dictionary's keys; a value that is
    /// not what the directive needs (a `max-age` that is not a non-negative
    /// Integer) makes the response stale, as for `Cache-Control`.
    /// Parameters are ignored (§2.1).
    pub fn parse_cdn<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let mut combined = String::new();
        let mut any = false;
        for value in values {
            if any {
                combined.push_str(", ");
            }
            combined.push_str(value);
            any = true;
        }
        if !any {
            return None;
        }
        let mut d = Self::default();
        for (key, value) in structured::dictionary(&combined)? {
            let seconds = match value {
                Value::Integer(n) => u64::try_from(n).ok().map(|n| n.min(DELTA_SECONDS_MAX)),
                _ => None,
            };
            // A bare key is the Boolean true; `?0` turns a flag off (and
            // `no-cache="field"`, a String, means no-cache as any value but `?0`).
            // A key given twice: the later value wins, as in a Dictionary.
            d.set(key, value != Value::Boolean(false), seconds);
        }
        Some(d)
    }

    /// Sets response directive `name`, whichever field it came in: a flag to
    /// `flag`, a time to `seconds` (`None`: absent or not a valid time, which
    /// for `max-age` and `s-maxage` makes the response stale). Other names
    /// are ignored.
    fn set(&mut self, name: &str, flag: bool, seconds: Option<u64>) {
        match name {
            "max-age" => self.max_age = Some(seconds.unwrap_or(0)),
            "s-maxage" => self.s_maxage = Some(seconds.unwrap_or(0)),
            "no-store" => self.no_store = flag,
            "no-cache" => self.no_cache = flag,
            "private" => self.private = flag,
            "public" => self.public = flag,
            "must-revalidate" => self.must_revalidate = flag,
            "proxy-revalidate" => self.proxy_revalidate = flag,
            "stale-while-revalidate" => self.stale_while_revalidate = seconds,
            "stale-if-error" => self.stale_if_error = seconds,
            _ => {}
        }
    }
}

fn unquote(text: &str) -> String {
    text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text).to_string()
}

/// Splits a comma-separated list, ignoring commas inside quoted strings.
pub(crate) fn split_list(value: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                items.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(value[start..].trim());
    items.retain(|i| !i.is_empty());
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9111_5_2_directives_are_case_insensitive_and_may_be_quoted() {
        let d = Directives::parse(["Public, MAX-AGE=\"60\", s-maxage=30", "no-cache=\"set-cookie, x-a\""]);
        assert_eq!((d.public, d.max_age, d.s_maxage, d.no_cache), (true, Some(60), Some(30), true));
        assert!(!d.private);
    }

    #[test]
    fn rfc9111_4_2_1_the_first_of_a_repeated_directive_wins_and_bad_ages_mean_stale() {
        let d = Directives::parse(["max-age=10", "max-age=99"]);
        assert_eq!(d.max_age, Some(10));
        assert_eq!(Directives::parse(["max-age=soon"]).max_age, Some(0));
        assert_eq!(Directives::parse(["max-age=-5"]).max_age, Some(0));
    }

    #[test]
    fn rfc9111_1_2_2_huge_delta_seconds_are_capped() {
        assert_eq!(Directives::parse(["max-age=99999999999999999999999"]).max_age, Some(DELTA_SECONDS_MAX));
    }

    #[test]
    fn rfc9213_cdn_cache_control_is_a_structured_dictionary() {
        let d = Directives::parse_cdn(["max-age=60, stale-if-error=30", "private;x=1"]).expect("parses");
        assert_eq!((d.max_age, d.stale_if_error, d.private), (Some(60), Some(30), true), "lines combine");
        let d = Directives::parse_cdn(["no-store=?0, no-cache=\"set-cookie\""]).expect("parses");
        assert!(!d.no_store && d.no_cache, "?0 turns a flag off; a String still means no-cache");
        assert_eq!(Directives::parse_cdn(["max-age=\"60\""]).map(|d| d.max_age), Some(Some(0)), "not an Integer");
        assert_eq!(Directives::parse_cdn(["max-age=-1"]).map(|d| d.max_age), Some(Some(0)));
        // Cache-Control syntax that is not a Structured Field: ignored whole.
        for invalid in ["max-age=60, private=\"a", "Max-Age=60", "max-age=60,,", "max-age=1.5.2", "max-age=60 no-store"]
        {
            assert_eq!(Directives::parse_cdn([invalid]), None, "{invalid}");
        }
        assert_eq!(Directives::parse_cdn(std::iter::empty()), None, "absent");
    }

    #[test]
    fn rfc5861_stale_extensions_and_request_directives_are_read() {
        let d = Directives::parse(["stale-while-revalidate=30, stale-if-error=600, max-stale, min-fresh=5"]);
        assert_eq!((d.stale_while_revalidate, d.stale_if_error), (Some(30), Some(600)));
        assert_eq!((d.max_stale, d.min_fresh), (Some(None), Some(5)));
        assert!(Directives::parse(["x-unknown=1, , "]).is_empty(), "unknown directives are ignored (§5.2.3)");
    }
}
