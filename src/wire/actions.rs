//! What the router answers a host.

use serde::{Deserialize, Serialize};

use super::{Header, Spent};

/// What the host should send to an origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardBody {
    /// The client's body unchanged (or its stream, for streamed bodies).
    Original,
    /// The client's body with its top-level `model` replaced by this one
    /// (the host applies it with `exchange::transform::SetModel`, so the module
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
    /// The node's breaker is open and the request goes to it anyway: every
    /// node it could use is unhealthy (`health_check.panic_threshold`).
    pub panic: bool,
    /// The caller's rate limits as the request left them (`x-ratelimit-*`).
    pub ratelimit: RateLimit,
    /// The request's difficulty score, if one chose its model's size (shown with a rewritten model).
    pub difficulty: Option<Difficulty>,
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
    /// A path other than the API endpoints, sent to the passthrough node.
    Passthrough,
    /// The node that holds a response object (`/v1/responses`), named by
    /// the tag of its id: a `previous_response_id`, or the id in the path.
    Affinity,
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
            difficulty: self.difficulty,
            cache: self.cache,
            panic: self.panic,
            ratelimit: self.ratelimit,
        })
    }
}

/// A caller's rate limits, as OpenAI's `x-ratelimit-*` headers report them
/// (see [`crate::limits`]). Empty for a caller without limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests per minute.
    pub requests: Option<Window>,
    /// Tokens per minute.
    pub tokens: Option<Window>,
}

/// What the store a fleet of edge boxes shares (`state.redis`) said of a
/// request's rate limits, which the host asked before the router decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fleet {
    /// The store took the request's share, leaving these limits.
    Admitted(RateLimit),
    /// The store refused it: one of its limits would be overdrawn.
    Refused {
        /// Which of the caller's limited scopes: 0 the first (its key's, if
        /// limited; else its tenant's), 1 the second.
        scope: u8,
        /// Requests (true) or tokens.
        requests: bool,
        /// The limit per minute.
        limit: u64,
        /// What the request asked for.
        requested: u64,
        /// When it would fit; `None`: never.
        retry_after_ms: Option<u64>,
        /// The limits as they stand.
        ratelimit: RateLimit,
    },
    /// The store could not be reached: the box counts alone, on
    /// `state.local_share` of each limit.
    Unreachable,
}

/// One limit's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// The allowance per minute.
    pub limit: u64,
    /// What is left of it now.
    pub remaining: u64,
    /// Milliseconds until it is whole again.
    pub reset_ms: u64,
}

/// The names of the explanation's headers, made at compile time: made from
/// a `&str` at run time, each would be checked byte by byte on every
/// response (about 150 instructions a name, by callgrind). Hosts that read
/// the explanation back (the access log's record) look them up by these too.
pub mod names {
    use crate::error::headers;
    use http::HeaderName;

    pub const NODE: HeaderName = HeaderName::from_static(headers::NODE);
    pub const RULE: HeaderName = HeaderName::from_static(headers::RULE);
    pub const ATTEMPTS: HeaderName = HeaderName::from_static(headers::ATTEMPTS);
    pub const COUNTRY: HeaderName = HeaderName::from_static(headers::COUNTRY);
    pub const MODEL: HeaderName = HeaderName::from_static(headers::MODEL);
    pub const CACHE: HeaderName = HeaderName::from_static(headers::CACHE);
    pub const PANIC: HeaderName = HeaderName::from_static(headers::PANIC);
    pub const REQUESTS: [HeaderName; 3] = [
        HeaderName::from_static("x-ratelimit-limit-requests"),
        HeaderName::from_static("x-ratelimit-remaining-requests"),
        HeaderName::from_static("x-ratelimit-reset-requests"),
    ];
    pub const TOKENS: [HeaderName; 3] = [
        HeaderName::from_static("x-ratelimit-limit-tokens"),
        HeaderName::from_static("x-ratelimit-remaining-tokens"),
        HeaderName::from_static("x-ratelimit-reset-tokens"),
    ];
}

impl RateLimit {
    /// Calls `f` with each `x-ratelimit-*` header.
    pub fn for_each_header(&self, mut f: impl FnMut(http::HeaderName, &str)) {
        for (window, [limit, remaining, reset]) in [(self.requests, names::REQUESTS), (self.tokens, names::TOKENS)] {
            if let Some(w) = window {
                f(limit, Digits::of(w.limit).as_str());
                f(remaining, Digits::of(w.remaining).as_str());
                f(reset, &crate::limits::duration_text(w.reset_ms));
            }
        }
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
    /// The difficulty score that chose the model's size
    /// (`model_routing.strategy: learned`), shown after the model when the
    /// request was rewritten: `x-edge-model: big; score=0.412; band=9`.
    pub difficulty: Option<Difficulty>,
    /// What the edge cache did (`x-edge-cache`).
    pub cache: CacheStatus,
    /// Whether the node was used although its breaker was open, because
    /// every node the request could use was unhealthy (`x-edge-panic: true`).
    pub panic: bool,
    /// The caller's rate limits (`x-ratelimit-*`).
    pub ratelimit: RateLimit,
}

impl Explain {
    /// The explanation of an answer the router (or a host) gives itself:
    /// no node served it (`-`), and no cache was involved.
    pub fn router(rule: &str, attempts: u32, country: String) -> Self {
        Self {
            node: "-".into(),
            rule: rule.into(),
            attempts,
            country,
            model: None,
            difficulty: None,
            cache: CacheStatus::Bypass,
            panic: false,
            ratelimit: RateLimit::default(),
        }
    }

    /// Calls `f` with each header name and value, in a fixed order.
    pub fn for_each_header(&self, mut f: impl FnMut(http::HeaderName, &str)) {
        f(names::NODE, &self.node);
        f(names::RULE, &self.rule);
        f(names::ATTEMPTS, Digits::of(self.attempts.into()).as_str());
        f(names::COUNTRY, &self.country);
        match (&self.model, self.difficulty) {
            (Some(model), Some(d)) => f(names::MODEL, &format!("{model}; {d}")),
            (Some(model), None) => f(names::MODEL, model),
            (None, _) => {}
        }
        f(names::CACHE, self.cache.as_str());
        if self.panic {
            f(names::PANIC, "true");
        }
        self.ratelimit.for_each_header(f);
    }

    /// The headers, as a list.
    pub fn headers(&self) -> Vec<Header> {
        let mut list = Vec::with_capacity(6);
        self.for_each_header(|name, value| list.push(Header::new(name.as_str(), value)));
        list
    }
}

/// A number's decimal digits, written without allocating: every delivered
/// response carries some (`x-edge-attempts`), and every access-log line.
pub struct Digits {
    buf: [u8; 20],
    at: usize,
}

impl Digits {
    /// The digits of `value`.
    pub fn of(mut value: u64) -> Self {
        let mut buf = [0u8; 20];
        let mut at = buf.len();
        loop {
            at -= 1;
            buf[at] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        Self { buf, at }
    }

    /// The digits, as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are written.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The digits, as bytes (ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.at..]
    }
}

/// Where a request's difficulty score placed it among recent requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difficulty {
    /// The score, in thousandths (0 to 1000).
    pub score_milli: u16,
    /// Its tenth of recent traffic, 1 (easiest) to 10 (hardest).
    pub band: u8,
}

impl Difficulty {
    /// Reads the parameters [`Display`](std::fmt::Display) writes after the
    /// model in `x-edge-model`: the model, and the difficulty if shown.
    pub fn parse_header(value: &str) -> (&str, Option<Self>) {
        let mut parts = value.split(';').map(str::trim);
        let model = parts.next().unwrap_or_default();
        let (mut score, mut band) = (None, None);
        for part in parts {
            match part.split_once('=') {
                Some(("score", v)) => score = thousandths(v).filter(|s| *s <= 1000),
                Some(("band", v)) => band = v.parse::<u8>().ok().filter(|b| (1..=10).contains(b)),
                _ => {}
            }
        }
        let difficulty = score.zip(band).map(|(score_milli, band)| Self { score_milli, band });
        (model, difficulty)
    }
}

/// A decimal from 0 to 1 such as `0.412` or `1` in thousandths, rounded
/// half up after the third decimal; `None` unless it is digits with at most
/// one point, and at most 1.
/// Read with integers: a float parser would bring the standard library's
/// tables (about 10 KiB compressed) into the Worker for this one header.
fn thousandths(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || (text.contains('.') && fraction.is_empty()) {
        return None;
    }
    let whole = whole.trim_start_matches('0');
    // More than 1 is refused before rounding: `1.0004` is not 1.
    if whole.len() > 1 || (whole == "1" && fraction.bytes().any(|b| b != b'0')) {
        return None;
    }
    let mut milli = u16::from(whole.bytes().next().map_or(0, |b| b - b'0')) * 1000;
    let mut places = fraction.bytes().map(|b| u16::from(b - b'0'));
    for scale in [100, 10, 1] {
        milli += places.next().unwrap_or(0) * scale;
    }
    Some(milli + u16::from(places.next().is_some_and(|d| d >= 5)))
}

impl std::fmt::Display for Difficulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "score={}.{:03}; band={}", self.score_milli / 1000, self.score_milli % 1000, self.band)
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
    /// Every node a request could use was unhealthy (fewer than
    /// `health_check.panic_threshold` of them healthy), so it was sent to
    /// this one although its breaker is open. Told once per opening.
    Panic {
        /// Node id.
        node: String,
        /// How many of the request's nodes were healthy, and of how many.
        healthy: u32,
        /// The nodes the request could use (not drained).
        candidates: u32,
    },
    /// A fault in the router: request `id` (0: none) was answered with an
    /// internal error, whose detail is this (for the host's log only).
    Fault {
        /// The request.
        id: u64,
        /// What went wrong.
        detail: String,
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
    /// The reservation of the attempt `action` makes, when the router
    /// records them (`state.redis`): the host reserves it at the fleet's
    /// shared ledger before sending.
    pub claim: Option<crate::machine::BudgetClaim>,
    /// Reservations released, to settle at that ledger.
    pub settled: Vec<crate::machine::Settlement>,
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

    #[test]
    fn digits_are_what_display_writes() {
        let mut values = vec![0, 1, 9, 10, 99, 100, 4_294_967_295, u64::MAX - 1, u64::MAX];
        values.extend((0..64).map(|shift| 1u64 << shift).flat_map(|p| [p - 1, p, p + 1]));
        for value in values {
            assert_eq!(Digits::of(value).as_str(), value.to_string());
            assert_eq!(Digits::of(value).as_bytes(), value.to_string().as_bytes());
        }
    }

    #[test]
    fn the_model_header_reads_back_every_difficulty_it_shows() {
        for score_milli in 0..=1000 {
            for band in [1, 10] {
                let shown = Difficulty { score_milli, band };
                assert_eq!(Difficulty::parse_header(&format!("big; {shown}")), ("big", Some(shown)));
            }
        }
    }

    #[test]
    fn scores_are_decimals_from_0_to_1_in_thousandths() {
        let read =
            |score: &str| Difficulty::parse_header(&format!("m; score={score}; band=3")).1.map(|d| d.score_milli);
        for (score, milli) in [
            ("1", 1000),
            ("1.000", 1000),
            ("0", 0),
            ("0.5", 500),
            ("00.25", 250),
            ("0.4125", 413),
            ("0.41249", 412),
            ("0.9995", 1000),
        ] {
            assert_eq!(read(score), Some(milli), "{score}");
        }
        for bad in [
            "1.0005",
            "1.0004",
            "1.001",
            "2",
            "-0.1",
            "+0.5",
            "",
            ".",
            ".5",
            "0.",
            "0.5.1",
            "1e-3",
            "0x1",
            "٣",
            "99999999999999999999",
        ] {
            assert_eq!(read(bad), None, "{bad}");
        }
        assert_eq!(Difficulty::parse_header("m; score=0.5; band=11").1, None);
    }
}
