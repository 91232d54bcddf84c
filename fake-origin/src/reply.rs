//! What a fake origin answers.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A script: the reply to every request, or the n-th of `responses` to the
/// n-th request (the last one repeats).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// The reply, when `responses` is empty.
    #[serde(flatten)]
    pub reply: Reply,
    /// One reply per request, in turn.
    #[serde(default)]
    pub responses: Vec<Reply>,
    /// Replies for requests that match, tried in order before the others
    /// (a matched request does not count towards `responses`).
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Connections are refused (the harness makes this address; the
    /// server itself never sees it).
    #[serde(default)]
    pub refuse: bool,
}

/// A reply for the requests that match all of its conditions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The method, such as `GET`.
    pub method: Option<String>,
    /// The path, without the query.
    pub path: Option<String>,
    /// A header the request must carry, as `[name, value]`.
    pub header: Option<[String; 2]>,
    /// Text the request's body must contain.
    pub body_contains: Option<String>,
    /// The reply.
    #[serde(flatten)]
    pub reply: Reply,
}

impl Route {
    /// Whether a request (`parts`, with `body`) matches.
    pub fn matches(&self, parts: &http::request::Parts, body: &str) -> bool {
        self.body_contains.as_deref().is_none_or(|t| body.contains(t))
            && self.method.as_deref().is_none_or(|m| parts.method.as_str() == m)
            && self.path.as_deref().is_none_or(|p| parts.uri.path() == p)
            && self
                .header
                .as_ref()
                .is_none_or(|[n, v]| parts.headers.get(n).is_some_and(|h| h.as_bytes() == v.as_bytes()))
    }
}

impl Script {
    /// A script answering every request with `reply`.
    pub fn always(reply: Reply) -> Self {
        Self { reply, ..Self::default() }
    }

    /// The reply to the `n`-th request (from 0).
    pub fn reply(&self, n: usize) -> &Reply {
        match self.responses.len() {
            0 => &self.reply,
            len => &self.responses[n.min(len - 1)],
        }
    }

    /// The demo's origins: a canned answer that names the origin and the
    /// model, streamed a word every 80 ms when the client asks for a stream.
    pub fn demo() -> Self {
        let reply = Reply {
            text: Some("Hello from demo origin {origin}, model {model}. This is a canned answer.".into()),
            gap_ms: 80,
            ..Reply::default()
        };
        Self { reply, ..Self::default() }
    }
}

/// One reply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// Status (200 by default).
    pub status: Option<u16>,
    /// Header fields; `{http_date:+N}` in a value is the HTTP date N seconds
    /// from now (N may be negative).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `true`: always an SSE stream; `false`: always JSON; absent: as the
    /// request's `stream` asks.
    pub sse: Option<bool>,
    /// A raw body instead of a completion (`text/plain` unless `headers`
    /// say otherwise).
    pub body: Option<String>,
    /// The completion's text (`{origin}` and `{model}` are filled in, and
    /// in a chat completion `{prompt}` with the last user turn's text, as a
    /// model repeating what it was told); by default `hello from <origin>`.
    pub text: Option<String>,
    /// A chat completion that calls the first tool offered, with these
    /// arguments (a JSON text; `{prompt}` is filled in, escaped).
    pub arguments: Option<String>,
    /// A stream's text (and a call's arguments) in pieces of this many
    /// characters, instead of a word each.
    pub piece_chars: Option<usize>,
    /// A stream's bytes sent in chunks of this many bytes, events cut anywhere.
    pub chunk_bytes: Option<usize>,
    /// Sent as `ETag`; a request whose `If-None-Match` matches gets a `304`.
    pub etag: Option<String>,
    /// Honour a single `Range: bytes=…` of `body` with a `206`.
    #[serde(default)]
    pub ranges: bool,
    /// Interim responses sent before the answer.
    #[serde(default)]
    pub interim: Vec<Interim>,
    /// Milliseconds before the answer's head.
    #[serde(default)]
    pub delay_ms: u64,
    /// Milliseconds between the chunks of a stream.
    #[serde(default)]
    pub gap_ms: u64,
    /// The completion's `usage`, as `[prompt_tokens, completion_tokens]`
    /// (5 and 5 by default).
    pub usage: Option<[u64; 2]>,
}

/// An interim (1xx) response.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interim {
    /// Status, 102 to 199.
    pub status: u16,
    /// Header fields (`link` for `103 Early Hints`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `value` with each `{http_date:+N}` (or `-N`) replaced by the HTTP date N
/// seconds from `now`.
pub fn fill_dates(value: &str, now: std::time::SystemTime) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find("{http_date:") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "{http_date:".len()..];
        let Some(end) = after.find('}') else { break };
        let offset: i64 = after[..end].trim_start_matches('+').parse().unwrap_or(0);
        let when = if offset >= 0 {
            now + std::time::Duration::from_secs(offset.unsigned_abs())
        } else {
            now - std::time::Duration::from_secs(offset.unsigned_abs())
        };
        out.push_str(&httpdate(when));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// An IMF-fixdate (RFC 9110 §5.6.7).
fn httpdate(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (h, m, s) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let month_name =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][(month - 1) as usize];
    format!("{weekday}, {day:02} {month_name} {year} {h:02}:{m:02}:{s:02} GMT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_imf_fixdates_from_now() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        assert_eq!(httpdate(at), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(fill_dates("x {http_date:+30} y", at), "x Sun, 06 Nov 1994 08:50:07 GMT y");
        assert_eq!(fill_dates("{http_date:-37}", at), "Sun, 06 Nov 1994 08:49:00 GMT");
        assert_eq!(fill_dates("plain", at), "plain");
    }

    #[test]
    fn the_nth_request_gets_the_nth_reply_and_the_last_repeats() {
        let script: Script =
            serde_json::from_str(r#"{"responses": [{"status": 503}, {"status": 200}]}"#).expect("a script");
        assert_eq!(script.reply(0).status, Some(503));
        assert_eq!(script.reply(5).status, Some(200));
        assert!(serde_json::from_str::<Script>(r#"{"stauts": 1}"#).is_err(), "a typo is an error");
    }
}
