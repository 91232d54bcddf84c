//! The messages that cross the wasm boundary: events in, actions out.
//!
//! Both the module and the host link this file, and messages are encoded
//! with postcard, so the two sides cannot disagree on the format.
//! `docs/abi.md` describes the exported functions that carry them.

use serde::{Deserialize, Serialize};

/// Encodes `value` with postcard at the end of `out`, as both sides of the
/// ABI do. postcard's own `to_extend` appends every piece, down to each
/// one-byte varint, with a copy of variable length: natively a call to
/// `memmove`, and in the module a call out of wasm (`memory.copy`), either
/// far dearer than the byte it copies. Here pieces of up to three bytes (most
/// varints) are pushed.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: Vec<u8>) -> postcard::Result<Vec<u8>> {
    postcard::serialize_with_flavor(value, Appender(out))
}

struct Appender(Vec<u8>);

impl postcard::ser_flavors::Flavor for Appender {
    type Output = Vec<u8>;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    // Only a single byte (most varints: lengths, tags, small numbers) is
    // pushed in place; the rest is a call. Inlined whole at every field,
    // it made the module a fifth larger for no measurable gain.
    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        match *data {
            [a] => self.0.push(a),
            _ => self.extend(data),
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

impl Appender {
    #[inline(never)]
    fn extend(&mut self, data: &[u8]) {
        // Unrolled, not a loop: in the module every loop iteration also
        // checks the call's deadline. Copies of a fixed size are plain
        // loads and stores; eight bytes is an `f64` (spending, prices).
        match *data {
            [a, b] => self.0.extend_from_slice(&[a, b]),
            [a, b, c] => self.0.extend_from_slice(&[a, b, c]),
            [a, b, c, d, e, f, g, h] => self.0.extend_from_slice(&[a, b, c, d, e, f, g, h]),
            _ => self.0.extend_from_slice(data),
        }
    }
}

/// Encodes `request` as the [`Event::Request`] it borrows from, at the end of `out`.
pub fn encode_request(request: &RequestRef<'_>, mut out: Vec<u8>) -> postcard::Result<Vec<u8>> {
    out.push(REQUEST_TAG);
    encode_into(request, out)
}

/// One header. Values are bytes: HTTP allows non-UTF-8 values and none may be lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Lower-case name.
    pub name: String,
    /// Raw value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

impl Header {
    /// A header from text.
    pub fn new(name: &str, value: &str) -> Self {
        Self { name: name.to_string(), value: value.as_bytes().to_vec() }
    }

    /// The header, borrowed.
    pub fn as_ref(&self) -> HeaderRef<'_> {
        HeaderRef { name: &self.name, value: &self.value }
    }
}

/// A client header as the router reads it: borrowed from a [`Header`], or
/// straight from an encoded [`Event::Request`] (see [`RequestRef`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderRef<'a> {
    /// Lower-case name.
    pub name: &'a str,
    /// Raw value.
    #[serde(with = "serde_bytes")]
    pub value: &'a [u8],
}

/// The client headers the router reads (lower-case), besides the key
/// headers ([`KEY_HEADERS`]). Its decisions depend on no other request
/// header, so a host may leave the others out of [`Event::Request`]: the
/// edge box does, which saves encoding and reading them in the module.
pub const READ_HEADERS: [&str; 4] = ["cache-control", "connection", "x-edge-cache-ttl", "x-request-type"];

/// The headers a client key comes in. The router reads them only when the
/// host does not pass the key's digest (`key_sha256`).
pub const KEY_HEADERS: [&str; 2] = ["authorization", "x-api-key"];

/// Whether the router may read request header `name` (lower-case); `hashed`:
/// the host passes the key's digest.
pub fn router_reads(name: &str, hashed: bool) -> bool {
    READ_HEADERS.contains(&name) || (!hashed && KEY_HEADERS.contains(&name))
}

/// The first byte of an encoded [`Event::Request`]: postcard writes an
/// enum's variant index first, and `Request` is the first variant.
pub const REQUEST_TAG: u8 = 0;

/// [`Event::Request`] borrowed: its strings, headers and body point into the
/// message they were read from, so the module reads a request without
/// copying it. The fields are `Event::Request`'s, in the same order and
/// encoding, so postcard reads an encoded `Event::Request` after its
/// [`REQUEST_TAG`] as this, and [`encode_request`] writes one that reads back
/// as an `Event::Request`: the edge box encodes its requests from the
/// client's headers and body without copying them first. Native callers of
/// the router may also use [`Event::Request`], which it borrows the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRef<'a> {
    /// Host-chosen id, unique among requests in flight.
    pub id: u64,
    /// Method.
    pub method: &'a str,
    /// Path and query.
    pub target: &'a str,
    /// Client headers.
    #[serde(borrow)]
    pub headers: Vec<HeaderRef<'a>>,
    /// ISO country from a trusted source, if any.
    #[serde(borrow)]
    pub country: Option<&'a str>,
    /// The body.
    #[serde(borrow)]
    pub body: BodyRef<'a>,
    /// Milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// A uniformly random value for weighted choices.
    pub random: u64,
    /// See [`Event::Request`].
    #[serde(with = "serde_bytes")]
    pub key_sha256: Option<[u8; 32]>,
    /// See [`Event::Request`].
    pub body_facts: Option<crate::facts::BodyFacts>,
}

/// [`RequestBody`] borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BodyRef<'a> {
    /// Read completely.
    Buffered(#[serde(with = "serde_bytes")] &'a [u8]),
    /// Left in the connection.
    Streamed,
}

impl RequestBody {
    /// The body, borrowed.
    pub fn as_ref(&self) -> BodyRef<'_> {
        match self {
            Self::Buffered(bytes) => BodyRef::Buffered(bytes),
            Self::Streamed => BodyRef::Streamed,
        }
    }
}

/// The body of a client request as the host hands it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestBody {
    /// Read completely (bounded by `server.max_body_bytes`).
    Buffered(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Left in the connection, to be streamed to the origin (passthrough paths).
    Streamed,
}

/// Why an attempt failed before a response head arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// The connection (or TLS) could not be established; the origin saw nothing.
    Connect,
    /// No response head within the node's `first_byte` limit.
    Timeout,
    /// The connection broke after the request was sent.
    Reset,
}

impl Failure {
    /// A short description for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Connect => "connection failed",
            Self::Timeout => "timed out before responding",
            Self::Reset => "connection reset",
        }
    }
}

/// Tokens an origin reported using for one response (its `usage` object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

impl Usage {
    /// Prompt plus completion.
    pub fn total(self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// An operator's change to the running router (from the admin API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Control {
    /// Changes a node's `weight` until the next change or restart.
    SetWeight {
        /// Node id.
        node: String,
        /// The new weight, zero or more.
        weight: f64,
    },
    /// Sends the node no new requests; those in flight go on.
    Drain {
        /// Node id.
        node: String,
    },
    /// Ends a drain.
    Undrain {
        /// Node id.
        node: String,
    },
}

/// A node's settled spending on a budget day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spend {
    /// Node id.
    pub node: String,
    /// Budget day number (see `origin_fallback::BudgetDay`).
    pub day: u32,
    /// Cost settled that day.
    pub spent: f64,
}

/// A node's settled spending as a [`Reply`] reports it: the node by its
/// place in the config's list of nodes ([`Configured::Ok`] lists their ids
/// once), so that no id crosses the ABI with every metered request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spent {
    /// Index of the node in the config's `nodes`.
    pub node: u32,
    /// Budget day number (see `origin_fallback::BudgetDay`).
    pub day: u32,
    /// Cost settled that day.
    pub spent: f64,
}

/// State the host keeps for the router across a module reload: spending
/// (so a reload does not reset daily budgets) and operators' changes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Restore {
    /// The latest spending of each node.
    pub spent: Vec<Spend>,
    /// Weights set at run time.
    pub weights: Vec<(String, f64)>,
    /// Nodes being drained.
    pub draining: Vec<String>,
}

/// An input to the router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A client request arrived.
    Request {
        /// Host-chosen id, unique among requests in flight.
        id: u64,
        /// Method, e.g. `POST`.
        method: String,
        /// Path and query.
        target: String,
        /// Client headers.
        headers: Vec<Header>,
        /// ISO country from a trusted source, if any.
        country: Option<String>,
        /// The body.
        body: RequestBody,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
        /// A uniformly random value for weighted choices.
        random: u64,
        /// SHA-256 of the client key the headers present (the one
        /// [`crate::auth::presented_key`] finds), when the host hashed it;
        /// with `None` the router hashes it. A native host has SHA-256 in
        /// hardware, the module only in software. Encoded as a byte string:
        /// postcard writes an array element by element, and the module
        /// would read it back with 32 calls.
        #[serde(with = "serde_bytes")]
        key_sha256: Option<[u8; 32]>,
        /// What [`crate::facts::parse_body`] read from a buffered body of
        /// one of the three API endpoints, when the host read it; with
        /// `None` the router parses the body itself (and explains a body
        /// it cannot read). A native host parses faster than the module.
        body_facts: Option<crate::facts::BodyFacts>,
    },
    /// The origin of the current attempt sent its response head.
    ResponseHead {
        /// Request id.
        id: u64,
        /// Status code.
        status: u16,
        /// The `retry-after` of a 429 or 503, in seconds (an HTTP date is
        /// converted by the host), if it sent one.
        retry_after_s: Option<u32>,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// The current attempt failed before a response head.
    OriginFailed {
        /// Request id.
        id: u64,
        /// How.
        failure: Failure,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// The exchange ended: the body was delivered, or the client went away.
    Finished {
        /// Request id.
        id: u64,
        /// The `usage` the response body reported, for a `Forward` with `meter` set.
        usage: Option<Usage>,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// The current attempt's response body broke off after its head was
    /// delivered: the node stalled (`Timeout`) or reset (`Reset`). Nothing
    /// can be retried any more; the router counts it against the node's
    /// health. The host needs no answer. `Finished` still follows.
    BodyFailed {
        /// Exchange id.
        id: u64,
        /// How it broke.
        failure: Failure,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// An active health probe of a node came back: `ok` unless it failed to
    /// connect, timed out, or answered with a status that counts as a node
    /// failure (`origin_fallback::counts_as_failure`). No answer needed.
    Probed {
        /// Node id.
        node: String,
        /// Whether the node looked healthy.
        ok: bool,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// Time passes.
    Tick {
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// An operator's change. Answered with `Respond`: 200 and the node's new
    /// state as JSON, or 404 / 400 with an error.
    Control {
        /// The change.
        command: Control,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// Asks for the status report. Answered with `Respond`: 200 and JSON
    /// (see `docs/admin.md`).
    Status {
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// The request's `Lookup` found the answer in the cache, which the host
    /// served; the exchange is over. No answer needed.
    CacheHit {
        /// Request id.
        id: u64,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// The request's `Lookup` found nothing (or another request's fill of
    /// the same key failed). Answered with the next action: a `Forward`.
    CacheMiss {
        /// Request id.
        id: u64,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// Hands back the state a previous instance reported (see [`Restore`]).
    /// Sent right after configuring a fresh instance. No answer needed.
    Restore(Restore),
    /// A ledger shared by many routers (the Workers build's `BudgetLedger`)
    /// refused the reservation of the current attempt (see
    /// `Router::reservation`): its node has spent `spent` today across all
    /// of them. The attempt is not made; answered with the next action, as
    /// for `OriginFailed`, but the node's health is not charged.
    BudgetRefused {
        /// Request id.
        id: u64,
        /// The node's spending today, as the ledger knows it.
        spent: f64,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
}

/// What the host should send to an origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardBody {
    /// The client's body unchanged (or its stream, for streamed bodies).
    Original,
    /// The client's body with its top-level `model` replaced by this one
    /// (the host applies `exchange::upstream::rewrite_model`, so the module
    /// never holds request bodies beyond the decision).
    RewriteModel(String),
}

/// A request to send to a node: the client's method, to the node's
/// `base_url` followed by the client's target
/// ([`crate::config::Node::url_for`]), with the node's key (its
/// `api_key_env`) as `Authorization: Bearer`. The host has all of these
/// already, so none crosses the ABI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    /// The node: its index in the config's `nodes`, the order of
    /// [`Configured::Ok`]'s `node_ids` ([`crate::RouterConfig::node_at`]).
    /// An index rather than the id, so no string is copied out of the
    /// router and, in the edge box, none decoded from the module's reply.
    pub node: u32,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Lower-case names of further client headers not to forward: those the
    /// client's `Connection` header names. The host never forwards the
    /// headers [`crate::hop::never_forwarded`] names either, nor its own
    /// trusted country header; every other client header goes on unchanged.
    pub remove_headers: Vec<String>,
    /// Body to send.
    pub body: ForwardBody,
    /// Connect limit.
    pub connect_timeout_ms: u64,
    /// Response-head limit.
    pub first_byte_timeout_ms: u64,
    /// Longest gap between response body chunks.
    pub idle_timeout_ms: u64,
    /// Limit from sending the request to the end of the response body.
    pub total_timeout_ms: u64,
    /// Whether a response status in [`FALLBACK_STATUSES`] may lead to a
    /// fallback (the chain has nodes left): see [`Forward::asks_about`].
    pub fallback: bool,
    /// Whether the host should look for `usage` in the response body and
    /// report it in `Finished` (the node has a price per token).
    pub meter: bool,
    /// Store a successful (200) answer in the edge cache.
    pub fill: Option<CacheFill>,
    /// What chose the node (its label is the `x-edge-rule` header:
    /// [`crate::RouterConfig::rule_label`]).
    pub rule: RuleRef,
    /// What the edge cache did for the request.
    pub cache: CacheStatus,
}

/// What chose a request's nodes, by reference: the label it stands for
/// ([`crate::RouterConfig::rule_label`]) is in the config, which the host
/// has too, so no string crosses the ABI for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleRef {
    /// The rule at this index of the config's rules, in evaluation order.
    Rule(u32),
    /// No rule matched: the default strategy.
    Default,
    /// A path other than the three API endpoints, sent to the passthrough node.
    Passthrough,
}

/// Response statuses after which the next node of a fallback chain is tried.
pub const FALLBACK_STATUSES: [u16; 4] = [429, 502, 503, 504];

impl Forward {
    /// Whether the host must report a response head with this status and
    /// act on the router's answer before it sends anything on: the status
    /// may lead to a fallback. For any other status the answer is known in
    /// advance ([`Forward::explain`]).
    pub fn asks_about(&self, status: u16) -> bool {
        self.fallback && FALLBACK_STATUSES.contains(&status)
    }

    /// The explanation of a response the forward does not ask about
    /// ([`Forward::asks_about`]): exactly what the router would answer its
    /// `ResponseHead` with, so the host may deliver at once and report the
    /// head later, in the next batch (see `docs/abi.md`). Its node, rule,
    /// attempt and model are the forward's own, named as `config` (the
    /// router's) names them, and `country` is the client's, as the request
    /// gave it. `None` if `config` has no such node.
    pub fn explain(&self, config: &crate::RouterConfig, country: Option<crate::geo::Country>) -> Option<Explain> {
        Some(Explain {
            node: config.node_at(self.node)?.id.clone(),
            rule: config.rule_label(self.rule).to_string(),
            attempts: self.attempt,
            country: crate::geo::country_label(country),
            model: match &self.body {
                ForwardBody::RewriteModel(model) => Some(model.clone()),
                ForwardBody::Original => None,
            },
            cache: self.cache,
        })
    }
}

/// The `x-edge-*` headers of a delivered response, as data: fixed names need
/// not cross the ABI on every request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explain {
    /// Serving node id.
    pub node: String,
    /// Rule label or `strategy:<name>`.
    pub rule: String,
    /// Attempts made, this one included.
    pub attempts: u32,
    /// Client country, `XX` when unknown.
    pub country: String,
    /// The model the request was rewritten to, if it was.
    pub model: Option<String>,
    /// What the edge cache did (`x-edge-cache`).
    pub cache: CacheStatus,
}

impl Explain {
    /// The explanation of an answer the router (or a host) gives itself:
    /// no node served it (`-`), and no cache was involved.
    pub fn router(rule: &str, attempts: u32, country: String) -> Self {
        Self { node: "-".into(), rule: rule.into(), attempts, country, model: None, cache: CacheStatus::Bypass }
    }

    /// Calls `f` with each header name and value, in a fixed order.
    pub fn for_each_header(&self, mut f: impl FnMut(&'static str, &str)) {
        use crate::error::headers;
        f(headers::NODE, &self.node);
        f(headers::RULE, &self.rule);
        f(headers::ATTEMPTS, &self.attempts.to_string());
        f(headers::COUNTRY, &self.country);
        if let Some(model) = &self.model {
            f(headers::MODEL, model);
        }
        f(headers::CACHE, self.cache.as_str());
    }

    /// The headers, as a list.
    pub fn headers(&self) -> Vec<Header> {
        let mut list = Vec::with_capacity(6);
        self.for_each_header(|name, value| list.push(Header::new(name, value)));
        list
    }
}

/// What the edge cache did for a response: the `x-edge-cache` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheStatus {
    /// Answered from the cache.
    Hit,
    /// Not in the cache: forwarded, and stored if it succeeds.
    Miss,
    /// Answered from the cache past its freshness (`stale-while-revalidate`, `stale-if-error`).
    Stale,
    /// The cache was not used for this request.
    Bypass,
    /// A stale entry was confirmed by the origin (`304`) and served.
    Revalidated,
}

impl CacheStatus {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Stale => "STALE",
            Self::Bypass => "BYPASS",
            Self::Revalidated => "REVALIDATED",
        }
    }
}

/// Where a forwarded answer is stored when it succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheFill {
    /// The cache key (see `edge_cache::ai::ai_key`).
    pub key: String,
    /// How long the answer stays fresh, in seconds.
    pub ttl_s: u64,
    /// The request's estimated tokens: what a hit saves when the answer
    /// reports no `usage`.
    pub estimated_tokens: u64,
    /// A `GET`/`HEAD` of a passthrough path, cached as RFC 9111 says
    /// (`edge_cache::http`): `ttl_s` is unused, the response decides.
    pub http: bool,
}

/// A cache lookup the host makes before the router picks a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheLookup {
    /// Where the answer would be.
    pub key: String,
    /// An RFC 9111 entry (see [`CacheFill::http`]) rather than an AI answer.
    pub http: bool,
    /// The explanation of a hit (the host puts the node that answered
    /// originally in `node`).
    pub explain: Explain,
}

/// An output of the router.
// Forward is the common case and an Action lives only until the host acts on
// it; boxing it would add an allocation to every request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Answer the client with this response; the exchange is over.
    Respond {
        /// Status.
        status: u16,
        /// Headers.
        headers: Vec<Header>,
        /// Body.
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    /// Send this request to a node (a first attempt or a fallback).
    Forward(Forward),
    /// Look the answer up in the edge cache: on a hit, answer from it and
    /// report `CacheHit`; on a miss, report `CacheMiss` for the next action.
    Lookup(CacheLookup),
    /// Pass the origin's response to the client with these explanation
    /// headers added, then report `Finished`.
    Deliver(Explain),
    /// Nothing to do.
    Done,
}

/// A change in a node's health, for the host to log once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notice {
    /// The node's breaker opened: it gets no requests until a probe.
    Unhealthy {
        /// Node id.
        node: String,
        /// The failure that tipped it.
        reason: String,
        /// Milliseconds until a probe request may go.
        probe_in_ms: u64,
    },
    /// A probe request is on its way to a node that was unhealthy.
    Probing {
        /// Node id.
        node: String,
    },
    /// The probe succeeded: the node gets requests again.
    Healthy {
        /// Node id.
        node: String,
    },
}

/// What `er_handle` returns: the answer to the last event, the health
/// changes any of the events caused (usually none), and the spending they
/// settled, for the host to keep across a module reload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The answer.
    pub action: Action,
    /// Health changes, oldest first.
    pub notices: Vec<Notice>,
    /// Nodes whose spending changed, with the new totals.
    pub spent: Vec<Spent>,
}

/// The result of configuring the module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Configured {
    /// Accepted.
    Ok {
        /// The nodes' ids, in the config's order: [`Spent::node`] indexes this list.
        node_ids: Vec<String>,
        /// Number of rules.
        rules: u32,
    },
    /// Refused; the previous config (if any) stays in force.
    Refused(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::BodyFacts;

    /// Encodes `event` as the host does; its first byte must be the request tag.
    fn encoded_request(event: &Event) -> Vec<u8> {
        let bytes = postcard::to_allocvec(event).expect("encodes");
        assert_eq!(bytes.first(), Some(&REQUEST_TAG), "a request's encoding starts with its tag");
        bytes
    }

    #[test]
    fn an_encoded_request_reads_back_borrowed_field_by_field() {
        let facts = BodyFacts {
            model: Some("auto".into()),
            stream: true,
            max_tokens: Some(7),
            prompt_tokens: 12,
            temperature: Some(0.5),
        };
        let cases = [
            (RequestBody::Buffered(b"{\"model\":\"auto\"}".to_vec()), Some("DE"), Some([7u8; 32]), Some(facts)),
            (RequestBody::Streamed, None, None, None),
            (RequestBody::Buffered(Vec::new()), Some(""), None, Some(BodyFacts::default())),
        ];
        for (body, country, key_sha256, body_facts) in cases {
            let headers = vec![
                Header::new("authorization", "Bearer sk"),
                // Not UTF-8: values are bytes, and none may be lost.
                Header { name: "x-raw".into(), value: vec![0xff, 0x00, b'a'] },
                Header::new("", ""),
            ];
            let event = Event::Request {
                id: u64::MAX,
                method: "POST".into(),
                target: "/v1/chat/completions?x=ü".into(),
                headers: headers.clone(),
                country: country.map(Into::into),
                body: body.clone(),
                now_ms: 1_700_000_000_000,
                random: 0x9E37_79B9_7F4A_7C15,
                key_sha256,
                body_facts: body_facts.clone(),
            };
            let bytes = encoded_request(&event);
            let (request, rest) = postcard::take_from_bytes::<RequestRef>(&bytes[1..]).expect("reads as a RequestRef");
            assert!(rest.is_empty(), "the whole request was read");
            // ...and a RequestRef encodes to the very same bytes.
            assert_eq!(encode_request(&request, Vec::new()).expect("encodes"), bytes);
            assert_eq!(
                request,
                RequestRef {
                    id: u64::MAX,
                    method: "POST",
                    target: "/v1/chat/completions?x=ü",
                    headers: headers.iter().map(Header::as_ref).collect(),
                    country,
                    body: body.as_ref(),
                    now_ms: 1_700_000_000_000,
                    random: 0x9E37_79B9_7F4A_7C15,
                    key_sha256,
                    body_facts,
                }
            );
        }
    }

    #[test]
    fn other_events_do_not_start_with_the_request_tag() {
        let others = [
            Event::ResponseHead { id: 0, status: 200, retry_after_s: None, now_ms: 0 },
            Event::Finished { id: 0, usage: None, now_ms: 0 },
            Event::Tick { now_ms: 0 },
            Event::Status { now_ms: 0 },
        ];
        for event in others {
            assert_ne!(postcard::to_allocvec(&event).expect("encodes")[0], REQUEST_TAG, "{event:?}");
        }
    }
}
