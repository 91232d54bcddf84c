//! The router state machine.
//!
//! The host feeds events (a request arrived, an origin answered or failed, an
//! exchange finished, time passed) and performs the action each one returns.
//! The router reads no clock and does no I/O; `now_ms` and `random` arrive in
//! the events. It owns the state that routing needs across requests, per
//! node: requests in flight (for `max_concurrent`), health, pauses an origin
//! asked for, spending against the daily budget, operators' weights and
//! drains, observed latencies (for `latency_first`) and the last hour's
//! traffic (for `edge-router status`, see [`admin`]).
//!
//! - this file: the router's state and the dispatch of events;
//! - [`admission`]: a request's refusal or its chain of nodes, and its cache key;
//! - [`attempts`]: the next node of a chain, or why none is left;
//! - [`outcomes`]: what an origin's answer or failure does to its node;
//! - [`accounting`]: an exchange's end: capacity, cost, tallies;
//! - [`ledger`]: reservations at a ledger shared by many routers (the Worker's);
//! - [`admin`]: the status report, weights, drains, restored state.
//! - [`reconfigure`]: a new config in place of the running one, state kept by node id.

#[cfg(test)]
mod access_tests;
mod accounting;
mod admin;
mod admission;
mod attempts;
#[cfg(test)]
mod health_tests;
mod ledger;
mod outcomes;
mod reconfigure;
#[cfg(test)]
mod resilience_tests;
#[cfg(test)]
mod surface_tests;
#[cfg(test)]
mod tests;

use crate::config::cost_of;
use attempts::{delivery_explain, unavailable};
pub use ledger::{BudgetClaim, Settlement};

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use origin_fallback::{
    Breaker, BreakerPolicy, BreakerState, DailySpend, LatencyTracker, RetryBudget, RetryPolicy, TrafficWindow, mix64,
};

use crate::config::RouterConfig;
use crate::geo::Country;
use crate::model::ModelChoice;
use crate::wire::{
    Action, BearerToken, CacheFill, CacheStatus, Event, Failure, Header, Notice, REQUEST_TAG, RequestRef, RuleRef,
};

/// An exchange silent for this long is assumed abandoned by its host and its
/// capacity slot is released on the next tick. Hosts always report
/// `Finished`; this only guards against a host bug leaking slots forever.
const ABANDONED_AFTER_MS: u64 = 6 * 60 * 60 * 1000;

/// The longest pause a `retry-after` can impose on a node.
const MAX_RETRY_AFTER_S: u64 = 3600;

/// One client request on its way through the fallback chain.
#[derive(Debug)]
struct Exchange {
    /// Client headers not to forward.
    unforwardable: Vec<String>,
    /// Nodes to try, in order, with the model each is asked for.
    chain: Vec<(usize, ModelChoice)>,
    /// Position in `chain` of the next node to consider.
    next: usize,
    /// Node currently holding a capacity slot for this exchange.
    holding: Option<usize>,
    /// The model the current attempt asked for, when it was rewritten: its
    /// index in the `models` of the node the exchange is `holding`.
    rewritten_model: Option<usize>,
    /// Where the request's difficulty score placed it, when
    /// `strategy: learned` chose its model's size.
    difficulty: Option<crate::wire::Difficulty>,
    /// Whether the current attempt's model is the one the request's size
    /// chose ([`ModelChoice::Sized`]): only then is the score shown with it.
    sized: bool,
    attempts: u32,
    /// What chose the chain: the `x-edge-rule` label, by reference.
    rule: RuleRef,
    country: Option<Country>,
    /// The caller's tenant, for cost accounting.
    tenant: std::sync::Arc<str>,
    /// Estimated tokens (prompt plus completion); zero for passthrough paths.
    /// What the caller's token limits reserved, if it has any.
    estimated_tokens: u64,
    /// The caller's rate-limited scopes (its key's, its tenant's), settled when it ends.
    limited: Vec<crate::limits::Limited>,
    /// The caller's limits as the request left them (`x-ratelimit-*`).
    ratelimit: crate::wire::RateLimit,
    /// The caller has a token limit, here or in a shared store: the
    /// answer's `usage` is needed to settle it.
    token_limited: bool,
    /// Cost reserved at the node holding the slot.
    reserved: f64,
    /// When the current attempt was sent.
    sent_ms: u64,
    last_activity_ms: u64,
    failures: Vec<(usize, Failure)>,
    /// Status of a fallback status skipped in favour of the next node.
    skipped_statuses: Vec<(usize, u16)>,
    /// Nodes passed over: unhealthy, full, resting, over budget or draining.
    passed_over: Vec<(usize, PassedOver)>,
    /// The status of the current attempt's response head, once it came.
    status: Option<u16>,
    /// The current attempt's body broke off after its head.
    body_failed: bool,
    /// A further attempt was refused by the retry budget.
    retry_denied: bool,
    /// Whether the request's body is still at hand (read whole, not streamed).
    body_kept: bool,
    /// Whether making the request twice has no effect once does not: an
    /// idempotent method, or an inference call.
    repeatable: bool,
    /// A failed attempt after which the request may not go elsewhere, and why.
    no_retry: Option<(usize, origin_fallback::NoRetry)>,
    /// The current attempt went to a node whose breaker is open (panic).
    panic: bool,
    /// Where a successful answer is cached.
    fill: Option<CacheFill>,
    /// Whose answer the cache key stands for: the first node of the chain,
    /// and the model it would be asked for when the body's is rewritten. A
    /// fallback to another model (or, for a passthrough `GET`, another node)
    /// answers the client but fills nothing.
    fill_for: (usize, Option<usize>),
    /// What the cache did, for `x-edge-cache`.
    cache: CacheStatus,
}

/// Why a node of the chain got no attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PassedOver {
    /// An operator is draining it.
    Draining,
    /// Its breaker is open; a probe may go at this time.
    Unhealthy { probe_at_ms: u64 },
    /// It asked for a pause (`retry-after` on a 429 or 503) until this time.
    Resting { until_ms: u64, status: u16 },
    /// Its daily budget would be passed; the next budget day starts at this time.
    OverBudget { until_ms: u64 },
    /// At `max_concurrent`.
    Full,
}

/// Requests, tokens and cost of one budget day.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Tally {
    day: u32,
    requests: u64,
    tokens: u64,
    cost: f64,
}

/// What the router keeps about one node.
#[derive(Debug, Clone)]
struct NodeState {
    breaker: Breaker,
    in_flight: u32,
    /// `weight`, as configured or as an operator set it.
    weight: f64,
    /// An operator set the weight: a reloaded config's does not replace it.
    weight_set: bool,
    draining: bool,
    /// No attempts before this time: the node answered with a `retry-after`.
    resting_until_ms: u64,
    /// The status (429 or 503) that came with the latest `retry-after`.
    resting_status: u16,
    spend: DailySpend,
    /// Settled spending changed since the host was last told.
    spend_changed: bool,
    /// Tokens and requests of the day (its cost is `spend`).
    today: Tally,
    traffic: TrafficWindow,
    /// A request went to the node in panic (its breaker open) since the
    /// breaker last changed: the notice is not repeated.
    panic_told: bool,
}

impl NodeState {
    /// A node the router has seen nothing of yet.
    fn new(node: &crate::config::Node, policy: BreakerPolicy) -> Self {
        Self {
            breaker: Breaker::new(policy),
            in_flight: 0,
            weight: node.weight,
            weight_set: false,
            draining: false,
            resting_until_ms: 0,
            resting_status: 429,
            spend: DailySpend::default(),
            spend_changed: false,
            today: Tally::default(),
            traffic: TrafficWindow::default(),
            panic_told: false,
        }
    }
}

/// The breaker policy of `config`'s `health_check`.
fn breaker_policy(config: &RouterConfig) -> BreakerPolicy {
    let h = &config.health_check;
    BreakerPolicy {
        threshold: h.unhealthy_threshold,
        cool_down_ms: h.cool_down.as_millis(),
        max_cool_down_ms: h.max_cool_down.as_millis(),
    }
}

/// The retry budget policy of `config`.
fn retry_policy(config: &RouterConfig) -> RetryPolicy {
    RetryPolicy { ratio: config.retry_budget.ratio, min_per_second: config.retry_budget.min_per_second }
}

/// The router: configuration plus cross-request state.
#[derive(Debug)]
pub struct Router {
    config: RouterConfig,
    nodes: Vec<NodeState>,
    latency: LatencyTracker,
    exchanges: HashMap<u64, Exchange, BuildHasherDefault<IdHasher>>,
    /// Health changes not yet handed to the host.
    notices: Vec<Notice>,
    /// The `random` of the latest request, for jitter.
    entropy: u64,
    /// Caps fallback attempts when many requests fail.
    retries: RetryBudget,
    /// Today's requests, tokens and cost per tenant and per rule.
    tenants: BTreeMap<String, Tally>,
    rules: BTreeMap<String, Tally>,
    /// Requests answered from the edge cache.
    cache_hits: u64,
    /// The buckets of rate-limited keys and tenants.
    limiter: crate::limits::Limiter,
    /// Reservations of budgeted nodes released since the last call of
    /// `take_settled`, kept only once `record_settlements` was called.
    settled: Vec<Settlement>,
    recording_settlements: bool,
    /// The last attempt's reservation at a budgeted node, while recording.
    claim: Option<BudgetClaim>,
    /// Where recent difficulty scores fall (`model_routing.strategy:
    /// learned`), made at the first request scored; kept across reloads.
    calibrator: Option<crate::difficulty::Calibrator>,
}

impl Router {
    /// A router for a validated configuration.
    pub fn new(config: RouterConfig) -> Self {
        let shared_ledger = config.state.redis.is_some();
        let policy = breaker_policy(&config);
        let nodes = config.nodes.iter().map(|n| NodeState::new(n, policy)).collect();
        Self {
            latency: LatencyTracker::new(config.nodes.len()),
            retries: RetryBudget::new(retry_policy(&config)),
            config,
            nodes,
            exchanges: HashMap::default(),
            notices: Vec::new(),
            entropy: 0,
            tenants: BTreeMap::new(),
            rules: BTreeMap::new(),
            cache_hits: 0,
            limiter: crate::limits::Limiter::default(),
            settled: Vec::new(),
            // A fleet's shared ledger (`state.redis`) needs them.
            recording_settlements: shared_ledger,
            claim: None,
            calibrator: None,
        }
    }

    /// Each node's breaker state, in config order.
    pub fn health(&self) -> Vec<BreakerState> {
        self.nodes.iter().map(|n| n.breaker.state()).collect()
    }

    /// Health changes since the last call, for the host to log once each.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// The configuration in force.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// Requests in flight at each node, in config order.
    pub fn in_flight(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.in_flight).collect()
    }

    /// Exchanges not yet finished.
    pub fn open_exchanges(&self) -> usize {
        self.exchanges.len()
    }

    /// Handles a client request (an [`Event::Request`], borrowed) and says
    /// what to do next.
    pub fn request(&mut self, request: RequestRef<'_>) -> Action {
        self.entropy = request.random;
        self.on_request(request)
    }

    /// Handles postcard-encoded events, back to back, in order (the
    /// module's `er_handle`; see `docs/abi.md`), and returns the answer to
    /// the last: the host sends earlier ones only when it needs no answer,
    /// so they are [absorbed](Self::absorb). A request is read in place
    /// ([`RequestRef`]): its headers and body are not copied. An event that
    /// cannot be read ends the batch with the error; those before it were
    /// handled.
    pub fn handle_batch(&mut self, mut input: &[u8]) -> Result<Option<Action>, postcard::Error> {
        let mut action = None;
        while let Some((&tag, after_tag)) = input.split_first() {
            if tag == REQUEST_TAG {
                let (request, rest) = postcard::take_from_bytes::<RequestRef>(after_tag)?;
                action = Some(self.request(request));
                input = rest;
            } else {
                let (event, rest) = postcard::take_from_bytes::<Event>(input)?;
                if rest.is_empty() {
                    action = Some(self.handle(event));
                } else {
                    self.absorb(event);
                }
                input = rest;
            }
        }
        Ok(action)
    }

    /// Handles one event and says what to do next.
    pub fn handle(&mut self, event: Event) -> Action {
        self.dispatch(event, true)
    }

    /// Handles an event whose answer the caller does not need (one the
    /// edge box deferred: a `ResponseHead` whose status the `Forward` did
    /// not ask about, a `BodyFailed` or a `Finished`; see `docs/abi.md`).
    /// The router changes its state exactly as [`handle`](Self::handle)
    /// would, but builds no answer nobody reads.
    pub fn absorb(&mut self, event: Event) {
        self.dispatch(event, false);
    }

    /// `answer`: whether the caller reads the action (see [`absorb`](Self::absorb)).
    fn dispatch(&mut self, event: Event, answer: bool) -> Action {
        match event {
            Event::Request {
                id,
                method,
                target,
                headers,
                country,
                client,
                body,
                now_ms,
                random,
                key_sha256,
                body_facts,
                token,
                fleet,
            } => self.request(RequestRef {
                id,
                method: &method,
                target: &target,
                headers: headers.iter().map(Header::as_ref).collect(),
                country: country.as_deref(),
                client: client.as_deref(),
                body: body.as_ref(),
                now_ms,
                random,
                key_sha256,
                body_facts,
                token: token.as_ref().map(BearerToken::as_ref),
                fleet,
            }),
            Event::ResponseHead { id, status, retry_after_s, now_ms } => {
                self.on_response_head(id, status, retry_after_s, now_ms, answer)
            }
            Event::OriginFailed { id, failure, retry, now_ms } => self.on_origin_failed(id, failure, retry, now_ms),
            Event::BodyFailed { id, failure, now_ms } => {
                let Some(ex) = self.exchanges.get_mut(&id) else { return Action::Done };
                ex.last_activity_ms = now_ms;
                ex.body_failed = true;
                if let Some(node) = ex.holding {
                    let why = match failure {
                        Failure::Timeout => "its response body stalled",
                        Failure::Connect | Failure::Reset => "its response body broke off",
                    };
                    self.nodes[node].traffic.broke_off(now_ms);
                    self.charge_failure(node, id, now_ms, || why.to_string());
                }
                Action::Done
            }
            Event::Probed { node, ok, now_ms } => {
                if let Some(n) = self.config.node_index(&node) {
                    let jitter = self.jitter(now_ms);
                    let transition = self.nodes[n].breaker.on_probe(ok, now_ms, jitter);
                    self.note(n, transition, || "its health probe failed".to_string());
                }
                Action::Done
            }
            Event::Finished { id, usage, now_ms } => {
                if let Some(ex) = self.exchanges.remove(&id) {
                    let used = self.close(id, &ex, usage, now_ms);
                    self.settle_limits(&ex, used, now_ms);
                }
                Action::Done
            }
            Event::Tick { now_ms } => {
                let stale: Vec<u64> = self
                    .exchanges
                    .iter()
                    .filter(|(_, ex)| now_ms.saturating_sub(ex.last_activity_ms) > ABANDONED_AFTER_MS)
                    .map(|(id, _)| *id)
                    .collect();
                for id in stale {
                    if let Some(ex) = self.exchanges.remove(&id) {
                        let used = self.close(id, &ex, None, now_ms);
                        self.settle_limits(&ex, used, now_ms);
                    }
                }
                Action::Done
            }
            Event::CacheHit { id, now_ms } => {
                if let Some(ex) = self.exchanges.remove(&id) {
                    self.cache_hits += 1;
                    // The answer cost no node any tokens.
                    self.settle_limits(&ex, 0, now_ms);
                }
                Action::Done
            }
            Event::CacheMiss { id, now_ms } => self.next_attempt(id, now_ms),
            Event::Control { command, now_ms } => self.control(command, now_ms),
            Event::Status { now_ms } => self.status(now_ms),
            Event::Restore(state) => {
                self.restore(state);
                Action::Done
            }
            Event::BudgetRefused { id, spent, now_ms } => self.on_budget_refused(id, spent, now_ms),
        }
    }
}

/// Hashes exchange ids for the map of exchanges in flight: one mixing
/// step instead of SipHash, whose resistance to chosen keys an id chosen by
/// the host does not need (several times cheaper in the module).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the key is a `u64`); this keeps other keys correct.
        for &b in bytes {
            self.0 = mix64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = mix64(self.0 ^ id);
    }
}

/// The id of the node `action` forwards to, if it is a forward.
#[cfg(test)]
fn forward_id<'r>(r: &'r Router, action: &Action) -> Option<&'r str> {
    match action {
        Action::Forward(f) => Some(r.config().node_at(f.node).expect("a node of the config").id.as_str()),
        _ => None,
    }
}

/// A `POST /v1/chat/completions` from a US client with `body`.
#[cfg(test)]
fn chat_event(id: u64, now_ms: u64, random: u64, body: &str) -> Event {
    Event::Request {
        id,
        method: "POST".into(),
        target: "/v1/chat/completions".into(),
        headers: Vec::new(),
        country: Some("US".into()),
        client: None,
        body: crate::wire::RequestBody::Buffered(body.as_bytes().to_vec()),
        now_ms,
        random,
        key_sha256: None,
        body_facts: None,
        token: None,
        fleet: None,
    }
}
