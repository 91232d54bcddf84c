//! Reading the header fields caching depends on: HTTP dates, delta-seconds,
//! `Age`, and field values as text. The one HTTP-date parser of the project
//! is [`http_date_s`]: every host and crate that reads a date calls it.

use http::HeaderMap;

/// delta-seconds larger than this are taken as this (RFC 9111 §1.2.2).
pub const DELTA_SECONDS_MAX: u64 = 2_147_483_648;

/// Text values of every field line named `name` (values that are not
/// visible ASCII are skipped: nothing cache-related may use them).
pub fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok())
}

/// The first text value of `name`.
pub fn first<'a>(headers: &'a HeaderMap, name: &'a str) -> Option<&'a str> {
    values(headers, name).next()
}

/// An HTTP date (RFC 9110 §5.6.7: IMF-fixdate, and the obsolete RFC 850 and
/// asctime forms a recipient must accept) as seconds since the Unix epoch.
/// `None` for anything else, and for dates before the epoch.
pub fn http_date_s(text: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(text.trim()).ok()?;
    t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// `seconds` since the Unix epoch as an IMF-fixdate.
pub fn fmt_http_date(seconds: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds))
}

/// delta-seconds (RFC 9111 §1.2.2): one or more digits, nothing else (no
/// sign, no spaces inside); values past [`DELTA_SECONDS_MAX`] are capped.
pub fn delta_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<u64>().unwrap_or(DELTA_SECONDS_MAX).min(DELTA_SECONDS_MAX))
}

/// The `Age` a response carries (RFC 9111 §5.1): `Age = delta-seconds`. A
/// field that is not exactly that, or that is sent more than once (a list),
/// is invalid and ignored, as the section says: `None`.
pub fn age_s(headers: &HeaderMap) -> Option<u64> {
    let mut lines = headers.get_all(http::header::AGE).iter();
    let value = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    // Optional whitespace around a field value is not part of it (RFC 9110 §5.5).
    delta_seconds(value.to_str().ok()?.trim_matches([' ', '\t']))
}

/// A `retry-after` (RFC 9110 §10.2.3) as seconds from `now_ms`: delay-seconds,
/// or an HTTP date (a date in the past is no wait). `None` when absent or
/// neither form.
pub fn retry_after_s(headers: &HeaderMap, now_ms: u64) -> Option<u64> {
    let value = first(headers, "retry-after")?.trim();
    if let Some(seconds) = delta_seconds(value) {
        return Some(seconds);
    }
    let at = http_date_s(value)?;
    Some(at.saturating_sub(now_ms / 1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_str(v).expect("a header value"));
        }
        h
    }

    #[test]
    fn rfc9111_5_1_age_is_delta_seconds_and_anything_else_is_ignored() {
        assert_eq!(age_s(&with("age", &["17"])), Some(17));
        assert_eq!(age_s(&with("age", &[" 17 "])), Some(17), "optional whitespace is not part of the value");
        for bad in ["+5", "-5", "5.0", "5 6", "five", "0x10", ""] {
            assert_eq!(age_s(&with("age", &[bad])), None, "{bad:?} is not delta-seconds");
        }
        assert_eq!(age_s(&with("age", &["5, 6"])), None, "a list is invalid");
        assert_eq!(age_s(&with("age", &["5", "6"])), None, "two field lines make a list");
        assert_eq!(age_s(&with("age", &["99999999999999999999"])), Some(DELTA_SECONDS_MAX), "§1.2.2 cap");
        assert_eq!(age_s(&HeaderMap::new()), None);
    }

    #[test]
    fn rfc9110_5_6_7_all_three_date_forms_are_read() {
        let at = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(http_date_s("Sun, 06 Nov 1994 08:49:37 GMT"), Some(at));
        assert_eq!(http_date_s("Sunday, 06-Nov-94 08:49:37 GMT"), Some(at));
        assert_eq!(http_date_s("Sun Nov  6 08:49:37 1994"), Some(at));
        assert_eq!(http_date_s("yesterday"), None);
        assert_eq!(fmt_http_date(at), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn rfc9110_10_2_3_retry_after_is_seconds_or_a_date() {
        let now_ms = 784_111_777_000;
        assert_eq!(retry_after_s(&with("retry-after", &["120"]), now_ms), Some(120));
        assert_eq!(retry_after_s(&with("retry-after", &["Sun, 06 Nov 1994 08:50:07 GMT"]), now_ms), Some(30));
        assert_eq!(retry_after_s(&with("retry-after", &["Sun, 06 Nov 1994 08:00:00 GMT"]), now_ms), Some(0));
        assert_eq!(retry_after_s(&with("retry-after", &["soon"]), now_ms), None);
        assert_eq!(retry_after_s(&with("retry-after", &["-3"]), now_ms), None);
    }
}
