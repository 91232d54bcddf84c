//! One record per request, made once for both hosts: the access log writes
//! it as a JSON line, the edge box's metrics count it, and
//! `edge-router routing-log --follow` streams it.
//!
//! A record is begun when the router has read the request ([`Begun`]),
//! completed from the head of the response the client gets ([`Record::at_head`]:
//! its status and explanation headers, the same on every path, the cache's
//! and the router's own answers included), and closed when its body ends
//! ([`Record::close`]) with the usage the answer reported. It never holds a
//! key or a message: the tenant is the key's owner as the config names it.

use std::sync::Arc;

use edge_router::RouterConfig;
use edge_router::error::{refusal_reason, request_id_hex};
use edge_router::facts::{BodyFacts, Endpoint};
use edge_router::wire::{BearerToken, Difficulty, Digits, Usage, names};
use http::{HeaderMap, StatusCode};

/// The `error.type` of an answer the router or a host gave itself, as a
/// response extension ([`crate::answer::respond`] sets it): what a record
/// reads the refusal from, without reading the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorKind(pub &'static str);

/// The personal values a node's `pii` policy found in the request, as a
/// response extension the exchange sets: counts by kind, never the values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiFound {
    /// `pseudonymize`, `redact` or `block`.
    pub mode: &'static str,
    /// How many values of each kind.
    pub found: std::collections::BTreeMap<String, u32>,
}

/// How a streamed answer ended, as its watchdog saw it: set once, by the
/// body, before its last chunk goes, and read where the record is closed
/// (it travels there as a response extension).
#[derive(Debug, Clone, Default)]
pub struct Ending(Arc<std::sync::OnceLock<(Outcome, Option<Usage>)>>);

impl Ending {
    /// The body ended this way (only the first call counts).
    pub fn set(&self, outcome: Outcome, usage: Option<Usage>) {
        let _ = self.0.set((outcome, usage));
    }

    /// How the body ended, as the watchdog said, else as the host saw it
    /// (`seen`); a client that went away first is what happened.
    pub fn outcome(&self, seen: Outcome) -> (Outcome, Option<Usage>) {
        let (outcome, usage) = self.0.get().copied().unwrap_or((seen, None));
        (if seen == Outcome::ClientGone { seen } else { outcome }, usage)
    }
}

/// What is known of a request once the router has read it.
#[derive(Debug, Clone, Default)]
pub struct Begun {
    /// The request's id (`x-request-id`).
    pub id: u64,
    /// When it arrived, in milliseconds since the Unix epoch.
    pub start_ms: u64,
    /// Its method.
    pub method: http::Method,
    /// Its path, without the query (which may carry anything).
    pub path: String,
    /// Which API it is.
    pub endpoint: Option<Endpoint>,
    /// The tenant of the caller's key; `anonymous` without a known key.
    pub tenant: Option<Arc<str>>,
    /// The model the body asks for.
    pub requested_model: Option<String>,
}

impl Begun {
    /// A request `id` that arrived at `start_ms`, before its body is read.
    pub fn new(id: u64, start_ms: u64, method: &http::Method, path_and_query: &str) -> Self {
        let path = path_and_query.split('?').next().unwrap_or_default();
        Self { id, start_ms, method: method.clone(), path: path.to_string(), ..Self::default() }
    }

    /// What the router read of the request: its endpoint, the tenant of its
    /// key (by the key's SHA-256, never the key) or of its valid token, and
    /// the model it asks for.
    pub fn read(
        &mut self,
        config: &RouterConfig,
        endpoint: Endpoint,
        key_sha256: Option<&[u8; 32]>,
        token: Option<&BearerToken>,
        facts: Option<&BodyFacts>,
    ) {
        self.endpoint = Some(endpoint);
        let key = key_sha256.and_then(|d| config.auth.identify_digest(d));
        self.tenant = Some(match (token, key) {
            (Some(BearerToken::Valid { tenant, .. }), _) => Arc::from(tenant.as_str()),
            (None, Some(k)) => k.principal.tenant.clone(),
            _ => Arc::from("anonymous"),
        });
        self.requested_model = facts.and_then(|f| f.model.clone());
    }
}

/// How the response's body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It went through whole.
    Complete,
    /// The origin broke it off, or it was cut (a stall, a time limit, a drain).
    Broken,
    /// The client went away before its end.
    ClientGone,
}

impl Outcome {
    /// As the access log writes it: `complete`, `broken` or `client_gone`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Broken => "broken",
            Outcome::ClientGone => "client_gone",
        }
    }
}

/// One request, as the access log writes it (see `docs/operations.md`;
/// [`Record::write_json`] writes it).
#[derive(Debug, Clone)]
pub struct Record {
    /// The request's id; written as `request_id`, 16 hex digits, as `x-request-id`.
    pub id: u64,
    /// When the request arrived, in milliseconds since the Unix epoch;
    /// written as `time`, RFC 3339 in UTC with milliseconds.
    pub start_ms: u64,
    pub tenant: Option<Arc<str>>,
    /// The client's country, `XX` when unknown.
    pub country: String,
    pub method: http::Method,
    pub path: String,
    /// The rule label, `strategy:<name>`, `passthrough`, `affinity`, or `-`.
    pub rule: String,
    /// The node that served the answer; `-` when the router answered itself.
    pub node: String,
    pub attempts: u32,
    pub requested_model: Option<String>,
    /// The model the node was asked for: the rewrite, else the requested one.
    pub served_model: Option<String>,
    /// The difficulty score that chose the served model's size
    /// (`model_routing.strategy: learned`), 0 to 1; left out when `None`.
    pub difficulty: Option<f64>,
    /// Its tenth of recent traffic, 1 (easiest) to 10 (hardest); left out
    /// when `None`.
    pub difficulty_band: Option<u8>,
    pub status: u16,
    /// `HIT`, `MISS`, `STALE`, `BYPASS` or `REVALIDATED`.
    pub cache: String,
    /// The personal values found in the request, by kind (`{"email": 2}`),
    /// for a node whose `pii` policy looks; never the values. Left out when `None`.
    pub pii: Option<std::collections::BTreeMap<String, u32>>,
    /// What the policy did with them: `pseudonymize`, `redact` or `block`;
    /// left out when `None`.
    pub pii_mode: Option<&'static str>,
    /// Why the router refused or failed the request (`geofence`, `residency`,
    /// `auth`, `budget`, `capacity`, `rate`, or the error's type).
    pub refusal: Option<&'static str>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    /// The price of the reported tokens at the node's `cost_per_1k_tokens`.
    pub cost: Option<f64>,
    /// Milliseconds from the request's arrival to the response head.
    pub ttfb_ms: u64,
    /// Milliseconds from the request's arrival to the body's end.
    pub duration_ms: u64,
    pub outcome: Option<Outcome>,
    /// Not written.
    pub endpoint: Option<Endpoint>,
}

impl Record {
    /// The record of `begun` once the client's response head is known: its
    /// status, its explanation headers, and the router's error kind if it
    /// answered itself (its response's extension [`ErrorKind`]), and the
    /// personal values found ([`PiiFound`]).
    pub fn at_head(
        begun: Begun,
        status: StatusCode,
        fields: &HeaderMap,
        extensions: &http::Extensions,
        head_ms: u64,
    ) -> Self {
        let kind = extensions.get::<ErrorKind>().copied();
        let pii = extensions.get::<PiiFound>();
        let text = |name: &http::HeaderName| fields.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let rewritten = text(&names::MODEL);
        let (rewritten, difficulty) = match rewritten.as_deref().map(Difficulty::parse_header) {
            Some((model, difficulty)) => (Some(model.to_string()), difficulty),
            None => (None, None),
        };
        Self {
            id: begun.id,
            start_ms: begun.start_ms,
            tenant: begun.tenant,
            country: text(&names::COUNTRY).unwrap_or_else(|| "XX".into()),
            method: begun.method,
            path: begun.path,
            rule: text(&names::RULE).unwrap_or_else(|| "-".into()),
            node: text(&names::NODE).unwrap_or_else(|| "-".into()),
            attempts: text(&names::ATTEMPTS).and_then(|a| a.parse().ok()).unwrap_or(0),
            served_model: rewritten.or_else(|| begun.requested_model.clone()),
            difficulty: difficulty.map(|d| f64::from(d.score_milli) / 1000.0),
            difficulty_band: difficulty.map(|d| d.band),
            requested_model: begun.requested_model,
            status: status.as_u16(),
            cache: text(&names::CACHE).unwrap_or_else(|| "BYPASS".into()),
            pii: pii.map(|p| p.found.clone()),
            pii_mode: pii.map(|p| p.mode),
            refusal: kind.filter(|_| status.as_u16() >= 400).map(|k| refusal_reason(k.0)),
            tokens_in: None,
            tokens_out: None,
            cost: None,
            ttfb_ms: head_ms.saturating_sub(begun.start_ms),
            duration_ms: head_ms.saturating_sub(begun.start_ms),
            outcome: None,
            endpoint: begun.endpoint,
        }
    }

    /// The body ended (`outcome`) at `end_ms` with `usage`, priced at the
    /// serving node's rate.
    pub fn close(&mut self, outcome: Outcome, usage: Option<Usage>, config: &RouterConfig, end_ms: u64) {
        self.outcome = Some(outcome);
        self.duration_ms = end_ms.saturating_sub(self.start_ms).max(self.ttfb_ms);
        if let Some(u) = usage {
            self.tokens_in = Some(u.prompt_tokens);
            self.tokens_out = Some(u.completion_tokens);
            let rate = config.node_index(&self.node).map_or(0.0, |i| config.nodes[i].cost_per_1k_tokens);
            self.cost = Some(edge_router::config::cost_of(u.total(), rate));
        }
    }

    /// Whether the access log writes this request, `share` of all being
    /// written: chosen by the request id's bits (ids are mixed, so their top
    /// bits are uniform), so every host picks the same requests.
    pub fn sampled(&self, share: f64) -> bool {
        sampled(self.id, share)
    }

    /// The access log's line (no newline).
    pub fn json_line(&self) -> String {
        let mut line = Vec::with_capacity(512);
        self.write_json(&mut line);
        // Only whole UTF-8 texts and ASCII are written.
        String::from_utf8(line).unwrap_or_default()
    }

    /// Appends the access log's line (no newline) to `out`: one JSON object,
    /// its fields in a fixed order. Written by hand rather than derived: the
    /// edge box writes one per request, and serde's writer took about 6,000
    /// instructions for it (callgrind), most of them per string written.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut w = Fields { out, first: true };
        w.text("request_id", std::str::from_utf8(&request_id_hex(self.id)).ok());
        w.text("time", std::str::from_utf8(&rfc3339_bytes(self.start_ms)).ok());
        w.text("tenant", self.tenant.as_deref());
        w.text("country", Some(&self.country));
        w.text("method", Some(self.method.as_str()));
        w.text("path", Some(&self.path));
        w.text("rule", Some(&self.rule));
        w.text("node", Some(&self.node));
        w.number("attempts", Some(self.attempts.into()));
        w.text("requested_model", self.requested_model.as_deref());
        w.text("served_model", self.served_model.as_deref());
        if self.difficulty.is_some() {
            w.float("difficulty", self.difficulty);
        }
        if let Some(band) = self.difficulty_band {
            w.number("difficulty_band", Some(band.into()));
        }
        w.number("status", Some(self.status.into()));
        w.text("cache", Some(&self.cache));
        if let Some(found) = &self.pii {
            w.key("pii");
            w.out.push(b'{');
            for (i, (kind, count)) in found.iter().enumerate() {
                if i > 0 {
                    w.out.push(b',');
                }
                json_string(w.out, kind);
                w.out.push(b':');
                decimal(w.out, (*count).into());
            }
            w.out.push(b'}');
        }
        if self.pii_mode.is_some() {
            w.text("pii_mode", self.pii_mode);
        }
        w.text("refusal", self.refusal);
        w.number("tokens_in", self.tokens_in);
        w.number("tokens_out", self.tokens_out);
        w.float("cost", self.cost);
        w.number("ttfb_ms", Some(self.ttfb_ms));
        w.number("duration_ms", Some(self.duration_ms));
        w.text("outcome", self.outcome.map(Outcome::as_str));
        w.out.push(b'}');
    }

    /// The OpenTelemetry `gen_ai.operation.name` of the request, if it is an
    /// inference call: `chat`, `text_completion` or `embeddings`.
    pub fn operation(&self) -> Option<&'static str> {
        match self.endpoint? {
            Endpoint::ChatCompletions | Endpoint::Responses | Endpoint::Messages => Some("chat"),
            Endpoint::Completions => Some("text_completion"),
            Endpoint::Embeddings => Some("embeddings"),
            Endpoint::Models | Endpoint::ResponseById | Endpoint::Other => None,
        }
    }

    /// The status class, `2xx` to `5xx`.
    pub fn status_class(&self) -> &'static str {
        match self.status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        }
    }

    /// Seconds per output token after the first, for an answer that went
    /// through whole with more than one output token (the OpenTelemetry
    /// `gen_ai.server.time_per_output_token`).
    pub fn time_per_output_token_s(&self) -> Option<f64> {
        let out = self.tokens_out.filter(|&t| t > 1)?;
        if self.outcome != Some(Outcome::Complete) || self.status >= 400 {
            return None;
        }
        Some(self.duration_ms.saturating_sub(self.ttfb_ms) as f64 / 1000.0 / (out - 1) as f64)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A JSON object being written, a field at a time.
struct Fields<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Fields<'_> {
    /// `key` is one of this file's field names: nothing in it to escape.
    fn key(&mut self, key: &str) {
        self.out.extend_from_slice(if self.first { b"{\"" } else { b",\"" });
        self.first = false;
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn text(&mut self, key: &str, value: Option<&str>) {
        self.key(key);
        match value {
            Some(value) => json_string(self.out, value),
            None => self.out.extend_from_slice(b"null"),
        }
    }

    fn number(&mut self, key: &str, value: Option<u64>) {
        self.key(key);
        match value {
            Some(value) => decimal(self.out, value),
            None => self.out.extend_from_slice(b"null"),
        }
    }

    /// A float as serde_json writes it (shortest, `null` when not finite).
    fn float(&mut self, key: &str, value: Option<f64>) {
        self.key(key);
        if serde_json::to_writer(&mut *self.out, &value.filter(|v| v.is_finite())).is_err() {
            self.out.extend_from_slice(b"null");
        }
    }
}

/// `value` in decimal digits.
fn decimal(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(Digits::of(value).as_bytes());
}

/// `text` as a JSON string, escaped as serde_json escapes: `"`, `\\`, and
/// the control characters (`\n`, `\r`, `\t`, `\b`, `\f`, else `\u00xx`).
fn json_string(out: &mut Vec<u8>, text: &str) {
    /// The bytes JSON escapes: the control characters, `"` and `\`.
    const ESCAPED: [bool; 256] = {
        let mut escaped = [false; 256];
        let mut b = 0;
        while b < 0x20 {
            escaped[b] = true;
            b += 1;
        }
        escaped[b'"' as usize] = true;
        escaped[b'\\' as usize] = true;
        escaped
    };
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut plain = 0;
    while let Some(at) = bytes[plain..].iter().position(|&b| ESCAPED[usize::from(b)]) {
        let i = plain + at;
        out.extend_from_slice(&bytes[plain..i]);
        plain = i + 1;
        let b = bytes[i];
        let short = match b {
            b'"' | b'\\' => b,
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            _ => {
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
                continue;
            }
        };
        out.extend_from_slice(&[b'\\', short]);
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

/// Whether request `id` is among the `share` of requests the access log
/// writes ([`Record::sampled`]).
pub fn sampled(id: u64, share: f64) -> bool {
    share >= 1.0 || ((id >> 11) as f64 / (1u64 << 53) as f64) < share
}

/// `model` as a metric label: itself if a node of `config` serves it (or
/// it is `auto`), else `other`, so that clients cannot mint series.
pub fn model_label<'a>(config: &RouterConfig, model: Option<&'a str>) -> &'a str {
    match model {
        None => "",
        Some(m) if m == "auto" || config.nodes.iter().any(|n| n.models.iter().any(|x| x == m)) => m,
        Some(_) => "other",
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 in UTC, e.g.
/// `2026-12-05T16:40:00.123Z` (days to a civil date after Howard Hinnant's
/// `civil_from_days`).
pub fn rfc3339_ms(ms: u64) -> String {
    String::from_utf8_lossy(&rfc3339_bytes(ms)).into_owned()
}

/// [`rfc3339_ms`] into 24 bytes, without allocating (the access log writes
/// one a request). Years past 9999 are not written right.
pub(crate) fn rfc3339_bytes(ms: u64) -> [u8; 24] {
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut digits = |at: usize, width: usize, value: u64| {
        let mut v = value;
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    digits(0, 4, year.clamp(0, 9999) as u64);
    digits(5, 2, month as u64);
    digits(8, 2, day as u64);
    digits(11, 2, rest / 3600);
    digits(14, 2, rest % 3600 / 60);
    digits(17, 2, rest % 60);
    digits(20, 3, millis);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_router::wire::{CacheStatus, Explain};

    fn config() -> RouterConfig {
        let text = "nodes:\n  - {id: gpu, type: local, host: \"http://a\", models: [llama-3-8b], cost_per_1k_tokens: 2}\n\
                    auth:\n  keys:\n    - {sha256: \"0000000000000000000000000000000000000000000000000000000000000001\", tenant: acme}\n";
        RouterConfig::load("t.yaml", text).expect("a valid config")
    }

    fn explained(node: &str, model: Option<&str>) -> HeaderMap {
        let explain = Explain {
            node: node.into(),
            rule: "local-first".into(),
            attempts: 2,
            country: "DE".into(),
            model: model.map(str::to_string),
            difficulty: None,
            cache: CacheStatus::Miss,
            panic: false,
            ratelimit: Default::default(),
        };
        let mut map = HeaderMap::new();
        crate::explain::set_explanation(&mut map, &explain);
        map
    }

    #[test]
    fn a_record_reads_the_explanation_and_prices_the_usage_at_the_nodes_rate() {
        let config = config();
        let mut begun = Begun::new(0xab, 1_000, &http::Method::POST, "/v1/chat/completions?key=secret");
        let facts = BodyFacts { model: Some("llama-3-8b".into()), ..BodyFacts::default() };
        let mut digest = [0u8; 32];
        digest[31] = 1;
        begun.read(&config, Endpoint::ChatCompletions, Some(&digest), None, Some(&facts));
        let mut r = Record::at_head(begun, StatusCode::OK, &explained("gpu", None), &http::Extensions::new(), 1_040);
        r.close(Outcome::Complete, Some(Usage { prompt_tokens: 100, completion_tokens: 401 }), &config, 1_440);
        assert_eq!(r.path, "/v1/chat/completions", "the query is not kept");
        assert_eq!(
            (r.tenant.as_deref(), r.node.as_str(), r.rule.as_str(), r.attempts, r.country.as_str()),
            (Some("acme"), "gpu", "local-first", 2, "DE")
        );
        assert_eq!((r.ttfb_ms, r.duration_ms, r.cache.as_str()), (40, 440, "MISS"));
        assert_eq!((r.tokens_in, r.tokens_out), (Some(100), Some(401)));
        assert!((r.cost.unwrap_or_default() - 1.002).abs() < 1e-9, "501 tokens at 2 per 1k: {:?}", r.cost);
        assert_eq!(r.served_model.as_deref(), Some("llama-3-8b"));
        assert!((r.time_per_output_token_s().unwrap_or_default() - 0.001).abs() < 1e-12);
        let line: serde_json::Value = serde_json::from_str(&r.json_line()).expect("one JSON object");
        assert_eq!(line["request_id"], "00000000000000ab");
        assert_eq!(line["time"], "1970-01-01T00:00:01.000Z");
        assert_eq!(line["outcome"], "complete");
        assert_eq!(line["refusal"], serde_json::Value::Null);
    }

    #[test]
    fn an_unknown_key_is_anonymous_and_a_refusal_names_its_reason() {
        let config = config();
        let mut begun = Begun::new(1, 0, &http::Method::POST, "/v1/chat/completions");
        begun.read(&config, Endpoint::ChatCompletions, Some(&[7; 32]), None, None);
        let mut extensions = http::Extensions::new();
        extensions.insert(ErrorKind("geofence_denied"));
        let r =
            Record::at_head(begun, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS, &explained("-", None), &extensions, 5);
        assert_eq!((r.tenant.as_deref(), r.refusal, r.status_class()), (Some("anonymous"), Some("geofence"), "4xx"));
        assert!(!r.json_line().contains("pii"), "no pii fields without findings");

        let mut extensions = http::Extensions::new();
        extensions.insert(ErrorKind("personal_data"));
        let found = [("email".to_string(), 2), ("card".to_string(), 1)].into_iter().collect();
        extensions.insert(PiiFound { mode: "block", found });
        let begun = Begun::new(2, 0, &http::Method::POST, "/v1/chat/completions");
        let r = Record::at_head(begun, StatusCode::BAD_REQUEST, &explained("-", None), &extensions, 5);
        let line: serde_json::Value = serde_json::from_str(&r.json_line()).unwrap();
        assert_eq!(line["refusal"], "pii");
        assert_eq!(line["pii"], serde_json::json!({"card": 1, "email": 2}));
        assert_eq!(line["pii_mode"], "block");
    }

    #[test]
    fn a_rewritten_model_is_the_served_one_and_unknown_models_are_other_as_labels() {
        let config = config();
        let mut begun = Begun::new(1, 0, &http::Method::POST, "/v1/chat/completions");
        let facts = BodyFacts { model: Some("auto".into()), ..BodyFacts::default() };
        begun.read(&config, Endpoint::ChatCompletions, None, None, Some(&facts));
        let r =
            Record::at_head(begun, StatusCode::OK, &explained("gpu", Some("llama-3-8b")), &http::Extensions::new(), 1);
        assert_eq!((r.requested_model.as_deref(), r.served_model.as_deref()), (Some("auto"), Some("llama-3-8b")));
        assert_eq!(model_label(&config, Some("auto")), "auto");
        assert_eq!(model_label(&config, Some("llama-3-8b")), "llama-3-8b");
        assert_eq!(model_label(&config, Some("made-up-by-a-client")), "other");
    }

    #[test]
    fn ids_are_written_as_x_request_id_names_them() {
        let mut begun = Begun::new(0x0123_4567_89ab_cdef, 0, &http::Method::GET, "/");
        begun.endpoint = Some(Endpoint::Other);
        let r = Record::at_head(begun, StatusCode::OK, &HeaderMap::new(), &http::Extensions::new(), 0);
        let line: serde_json::Value = serde_json::from_str(&r.json_line()).expect("JSON");
        assert_eq!(line["request_id"], edge_router::error::request_id_text(0x0123_4567_89ab_cdef));
    }

    /// The line as serde_json writes the same fields, in the same order
    /// (the workspace's serde_json keeps the order of insertion).
    fn by_serde(r: &Record) -> String {
        use serde_json::{Value, json};
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.into(), v);
        };
        put("request_id", json!(edge_router::error::request_id_text(r.id)));
        put("time", json!(rfc3339_ms(r.start_ms)));
        put("tenant", json!(r.tenant.as_deref()));
        put("country", json!(r.country));
        put("method", json!(r.method.as_str()));
        put("path", json!(r.path));
        put("rule", json!(r.rule));
        put("node", json!(r.node));
        put("attempts", json!(r.attempts));
        put("requested_model", json!(r.requested_model));
        put("served_model", json!(r.served_model));
        if let Some(d) = r.difficulty {
            put("difficulty", json!(d));
        }
        if let Some(b) = r.difficulty_band {
            put("difficulty_band", json!(b));
        }
        put("status", json!(r.status));
        put("cache", json!(r.cache));
        if let Some(p) = &r.pii {
            put("pii", json!(p));
        }
        if let Some(p) = r.pii_mode {
            put("pii_mode", json!(p));
        }
        put("refusal", json!(r.refusal));
        put("tokens_in", json!(r.tokens_in));
        put("tokens_out", json!(r.tokens_out));
        put("cost", json!(r.cost));
        put("ttfb_ms", json!(r.ttfb_ms));
        put("duration_ms", json!(r.duration_ms));
        put("outcome", json!(r.outcome.map(Outcome::as_str)));
        serde_json::to_string(&m).expect("a map of values")
    }

    /// Texts dense with what JSON escapes, and any text.
    const TEXT: &str = "(?s)[\"\\\\\\x00-\\x1f\\x7f a-z0-9é€😀]{0,12}|.{0,8}";

    proptest::proptest! {
        /// Every field, with any text (quotes, backslashes, control
        /// characters, any Unicode), any number and every absence, is
        /// written byte for byte as serde_json writes it.
        #[test]
        fn a_line_is_what_serde_json_writes(
            id: u64,
            start_ms in 0u64..253_402_300_799_999,
            texts in proptest::array::uniform5(TEXT),
            method in "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}",
            models in (proptest::option::of(TEXT), proptest::option::of(TEXT)),
            numbers: (u32, u16, Option<u64>, Option<u64>, u64, u64),
            floats in (proptest::option::of(proptest::num::f64::ANY), proptest::option::of(0.0f64..1e12)),
            band: Option<u8>,
            pii in proptest::option::of(proptest::collection::btree_map(TEXT, proptest::num::u32::ANY, 0..3)),
            picks in (0usize..4, 0usize..5, 0usize..3, proptest::bool::ANY),
        ) {
            let [tenant, country, path, rule, node] = texts;
            // Any method (a token), the standard ones and extensions alike.
            let method = http::Method::from_bytes(method.as_bytes()).expect("a token is a method");
            let r = Record {
                id,
                start_ms,
                tenant: picks.3.then(|| tenant.into()),
                country,
                method,
                path,
                rule,
                node: node.clone(),
                attempts: numbers.0,
                requested_model: models.0,
                served_model: models.1,
                difficulty: floats.0,
                difficulty_band: band,
                status: numbers.1,
                cache: node,
                pii,
                pii_mode: [None, Some("pseudonymize"), Some("redact"), Some("block")][picks.0],
                refusal: [None, Some("geofence"), Some("pii"), Some("auth"), Some("rate")][picks.1],
                tokens_in: numbers.2,
                tokens_out: numbers.3,
                cost: floats.1,
                ttfb_ms: numbers.4,
                duration_ms: numbers.5,
                outcome: [None, Some(Outcome::Complete), Some(Outcome::ClientGone)][picks.2],
                endpoint: None,
            };
            proptest::prop_assert_eq!(r.json_line(), by_serde(&r));
        }
    }

    #[test]
    fn control_characters_and_quotes_are_escaped_as_serde_json_escapes_them() {
        let mut begun = Begun::new(7, 0, &http::Method::GET, "/");
        begun.endpoint = Some(Endpoint::Other);
        let mut r = Record::at_head(begun, StatusCode::OK, &HeaderMap::new(), &http::Extensions::new(), 0);
        r.path = "/a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}é€😀".into();
        r.outcome = Some(Outcome::Broken);
        r.difficulty = Some(f64::NAN);
        assert_eq!(r.json_line(), by_serde(&r));
        let path = "\"path\":\"/a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\u{7f}é€😀\"";
        assert!(r.json_line().contains(path), "{}", r.json_line());
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_796_488_800_123), "2026-12-05T16:40:00.123Z");
    }
}
