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

mod admin;
#[cfg(test)]
mod resilience_tests;

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use origin_fallback::{
    Breaker, BreakerPolicy, BreakerState, Candidate, DailySpend, GOLDEN_GAMMA, LatencyTracker, RetryBudget,
    RetryPolicy, Strategy, TrafficWindow, Transition, canary_draw, counts_as_failure, mix64, order_candidates,
    saturating_mul_by,
};

use crate::auth::{Principal, key_digest, presented_key};
use crate::config::RouterConfig;
use crate::error::RouterError;
use crate::facts::{BodyFacts, Endpoint, RequestFacts, parse_body, request_facts};
use crate::geo::{Country, JurisdictionId, country_label, permits};
use crate::hop::{for_each_connection_token, never_forwarded};
use crate::model::{ModelChoice, Reached, choose_model, serves};
use crate::wire::{
    Action, BodyRef, CacheFill, CacheLookup, CacheStatus, Event, Explain, FALLBACK_STATUSES, Failure, Forward,
    ForwardBody, Header, HeaderRef, Notice, REQUEST_TAG, RequestRef, RuleRef, Spend, Spent, Usage,
};

/// An exchange silent for this long is assumed abandoned by its host and its
/// capacity slot is released on the next tick. Hosts always report
/// `Finished`; this only guards against a host bug leaking slots forever.
const ABANDONED_AFTER_MS: u64 = 6 * 60 * 60 * 1000;

/// The longest pause a `retry-after` can impose on a node.
const MAX_RETRY_AFTER_S: u64 = 3600;

/// The lower-case names of the client headers an origin must not see beyond
/// those it never sees ([`never_forwarded`]): the ones the client's
/// `Connection` header names. Usually none (a bare `keep-alive` names only a
/// hop-by-hop header), and then nothing is allocated.
fn unforwardable(headers: &[HeaderRef<'_>]) -> Vec<String> {
    let mut names = Vec::new();
    for_each_connection_token(named(headers, "connection"), |t| {
        if !never_forwarded(t) {
            names.push(t.to_ascii_lowercase());
        }
    });
    if names.len() > 1 {
        names.sort_unstable();
        names.dedup();
    }
    names
}

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
    attempts: u32,
    /// What chose the chain: the `x-edge-rule` label, by reference.
    rule: RuleRef,
    country: Option<Country>,
    /// The caller's tenant, for cost accounting.
    tenant: std::sync::Arc<str>,
    /// Estimated tokens (prompt plus completion); zero for passthrough paths.
    estimated_tokens: u64,
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
    /// Where a successful answer is cached.
    fill: Option<CacheFill>,
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

impl Tally {
    fn add(&mut self, day: u32, tokens: u64, cost: f64) {
        if day > self.day {
            *self = Self { day, ..Self::default() };
        }
        self.requests += 1;
        self.tokens = self.tokens.saturating_add(tokens);
        self.cost += cost;
    }

    /// The tally as of `day` (empty if it is of an earlier day).
    fn on(self, day: u32) -> Self {
        if day > self.day { Self { day, ..Self::default() } } else { self }
    }
}

/// What the router keeps about one node.
#[derive(Debug, Clone)]
struct NodeState {
    breaker: Breaker,
    in_flight: u32,
    /// `weight`, as configured or as an operator set it.
    weight: f64,
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
    /// Reservations of budgeted nodes released since the last call of
    /// `take_settled`, kept only once `record_settlements` was called.
    settled: Vec<Settlement>,
    recording_settlements: bool,
}

/// What a request's reservation at a node with a daily budget is, for a
/// ledger shared by many routers (the Workers build's Durable Object): the
/// host reserves `amount` there before forwarding, and settles it at the
/// cost the router reports in a [`Settlement`].
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetClaim {
    /// Node id.
    pub node: String,
    /// Budget day number.
    pub day: u32,
    /// The estimated cost reserved.
    pub amount: f64,
    /// The node's `max_cost_per_day`.
    pub limit: f64,
}

/// A released reservation at a node with a daily budget: what the attempt
/// of exchange `id` cost (zero when it failed or was passed over).
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    /// Exchange id.
    pub id: u64,
    /// Node id.
    pub node: String,
    /// Budget day number.
    pub day: u32,
    /// What it cost.
    pub cost: f64,
}

impl Router {
    /// A router for a validated configuration.
    pub fn new(config: RouterConfig) -> Self {
        let retry_policy =
            RetryPolicy { ratio: config.retry_budget.ratio, min_per_second: config.retry_budget.min_per_second };
        let h = &config.health_check;
        let policy = BreakerPolicy {
            threshold: h.unhealthy_threshold,
            cool_down_ms: h.cool_down.as_millis(),
            max_cool_down_ms: h.max_cool_down.as_millis(),
        };
        let nodes = config
            .nodes
            .iter()
            .map(|n| NodeState {
                breaker: Breaker::new(policy),
                in_flight: 0,
                weight: n.weight,
                draining: false,
                resting_until_ms: 0,
                resting_status: 429,
                spend: DailySpend::default(),
                spend_changed: false,
                today: Tally::default(),
                traffic: TrafficWindow::default(),
            })
            .collect();
        Self {
            latency: LatencyTracker::new(config.nodes.len()),
            config,
            nodes,
            exchanges: HashMap::default(),
            notices: Vec::new(),
            entropy: 0,
            retries: RetryBudget::new(retry_policy),
            tenants: BTreeMap::new(),
            rules: BTreeMap::new(),
            cache_hits: 0,
            settled: Vec::new(),
            recording_settlements: false,
        }
    }

    /// Makes the router keep a [`Settlement`] for every released
    /// reservation at a budgeted node, for a host that reserves at a shared
    /// ledger too (the Workers build). Such a host must drain them with
    /// `take_settled`; others never call this, and nothing is kept.
    pub fn record_settlements(&mut self) {
        self.recording_settlements = true;
    }

    /// The reservation the current attempt of exchange `id` holds, if its
    /// node has a daily budget.
    pub fn reservation(&self, id: u64) -> Option<BudgetClaim> {
        let ex = self.exchanges.get(&id)?;
        let node = ex.holding?;
        let limit = self.config.nodes[node].max_cost_per_day?;
        let day = self.nodes[node].spend.day();
        Some(BudgetClaim { node: self.config.nodes[node].id.clone(), day, amount: ex.reserved, limit })
    }

    /// Reservations at budgeted nodes released since the last call.
    pub fn take_settled(&mut self) -> Vec<Settlement> {
        std::mem::take(&mut self.settled)
    }

    /// Each node's breaker state, in config order.
    pub fn health(&self) -> Vec<BreakerState> {
        self.nodes.iter().map(|n| n.breaker.state()).collect()
    }

    /// Health changes since the last call, for the host to log once each.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Spending settled since the last call, for the host to keep (and hand
    /// back with `Event::Restore` after a module reload).
    pub fn take_spent(&mut self) -> Vec<Spend> {
        let mut by_index = Vec::new();
        self.take_spent_into(&mut by_index);
        let id = |s: &Spent| self.config.nodes[s.node as usize].id.clone();
        by_index.iter().map(|s| Spend { node: id(s), day: s.day, spent: s.spent }).collect()
    }

    /// [`take_spent`](Self::take_spent) with nodes by index, appended to
    /// `out`: what a module's reply carries.
    pub fn take_spent_into(&mut self, out: &mut Vec<Spent>) {
        for (i, n) in self.nodes.iter_mut().enumerate().filter(|(_, n)| n.spend_changed) {
            n.spend_changed = false;
            let day = n.spend.day();
            out.push(Spent { node: i as u32, day, spent: n.spend.spent(day) });
        }
    }

    /// Records a breaker transition of `node` for the host; `why` is only
    /// asked for when the breaker opened.
    fn note(&mut self, node: usize, transition: Option<Transition>, why: impl FnOnce() -> String) {
        let Some(t) = transition else { return };
        let node = self.config.nodes[node].id.clone();
        self.notices.push(match t {
            Transition::Opened { for_ms } => Notice::Unhealthy { node, reason: why(), probe_in_ms: for_ms },
            Transition::Probing => Notice::Probing { node },
            Transition::Closed => Notice::Healthy { node },
        });
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
            Event::Request { id, method, target, headers, country, body, now_ms, random, key_sha256, body_facts } => {
                self.request(RequestRef {
                    id,
                    method: &method,
                    target: &target,
                    headers: headers.iter().map(Header::as_ref).collect(),
                    country: country.as_deref(),
                    body: body.as_ref(),
                    now_ms,
                    random,
                    key_sha256,
                    body_facts,
                })
            }
            Event::ResponseHead { id, status, retry_after_s, now_ms } => {
                self.on_response_head(id, status, retry_after_s, now_ms, answer)
            }
            Event::OriginFailed { id, failure, now_ms } => self.on_origin_failed(id, failure, now_ms),
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
                    self.close(id, &ex, usage, now_ms);
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
                        self.close(id, &ex, None, now_ms);
                    }
                }
                Action::Done
            }
            Event::CacheHit { id, .. } => {
                if self.exchanges.remove(&id).is_some() {
                    self.cache_hits += 1;
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

    /// A shared ledger refused the current attempt's reservation: the node
    /// is over its budget across all routers (`spent` so far today). The
    /// attempt never went out, so it is not counted, and the chain goes on.
    fn on_budget_refused(&mut self, id: u64, spent: f64, now_ms: u64) -> Action {
        let Some(ex) = self.exchanges.get_mut(&id) else {
            return Action::Done;
        };
        if let Some(node) = ex.holding.take() {
            let day = self.config.budget_day.of(now_ms);
            ex.passed_over.push((node, PassedOver::OverBudget { until_ms: self.config.budget_day.end_ms(day) }));
            ex.attempts = ex.attempts.saturating_sub(1);
            let reserved = std::mem::take(&mut ex.reserved);
            self.nodes[node].breaker.on_abandoned(id, now_ms);
            self.nodes[node].spend.restore(day, spent);
            self.release(id, node, reserved, 0.0, now_ms);
        }
        self.next_attempt(id, now_ms)
    }

    fn on_request(&mut self, request: RequestRef<'_>) -> Action {
        let RequestRef { id, method, target, headers, country, body, now_ms, random, key_sha256, body_facts } = request;
        let country = country.and_then(Country::parse);
        let refuse = |e: RouterError, label: &str| refusal(&e, label, country);
        if let Err(geo) = self.config.geofence.check(country) {
            return refuse(RouterError::Geofenced(geo.to_string()), "geofence");
        }
        let digest = key_sha256.or_else(|| presented_key_of(&headers).map(key_digest));
        let principal = match digest.and_then(|d| self.config.auth.identify_digest(&d)) {
            Some(p) => p.clone(),
            None if self.config.auth.required => return refuse(RouterError::Unauthorized, "auth"),
            None => Principal::anonymous(),
        };
        let tenant = principal.tenant.clone();
        let jurisdiction = self.config.residency.jurisdiction_of(country);
        let endpoint = Endpoint::classify(method, target);

        let (rule, chain, estimated_tokens, fill) = if endpoint == Endpoint::Other {
            let Some(node) = self.config.passthrough else {
                let path = target.split('?').next().unwrap_or_default().to_string();
                return refuse(RouterError::NoRoute { method: method.to_string(), path }, "passthrough");
            };
            let chain = vec![(node, ModelChoice::Keep)];
            let http = self.config.cache.enabled && matches!(method, "GET" | "HEAD");
            let fill = http.then(|| {
                let key = format!("http/{}{}", self.config.nodes[node].id, target);
                (CacheFill { key, ttl_s: 0, estimated_tokens: 0, http: true }, false)
            });
            match self.residency_filter(chain, jurisdiction) {
                Ok(chain) => (RuleRef::Passthrough, chain, 0, fill),
                Err(e) => return refuse(e, "passthrough"),
            }
        } else {
            let BodyRef::Buffered(bytes) = body else {
                return refuse(RouterError::Internal("the host did not buffer an API request body".into()), "-");
            };
            let facts = match self.facts(endpoint, bytes, body_facts, &headers, country, principal) {
                Ok(f) => f,
                Err(e) => return refuse(e, "-"),
            };
            let (rule, chain, rule_ttl) = self.plan(&facts, random);
            let chain = match self.residency_filter(chain, jurisdiction) {
                Ok(c) => c,
                Err(e) => return refuse(e, self.config.rule_label(rule)),
            };
            let fill = self.cache_fill(method, target, bytes, &headers, &facts, &chain, rule_ttl, &tenant);
            (rule, chain, facts.estimated_tokens, fill)
        };

        let exchange = Exchange {
            unforwardable: unforwardable(&headers),
            chain,
            next: 0,
            holding: None,
            rewritten_model: None,
            attempts: 0,
            rule,
            country,
            tenant,
            estimated_tokens,
            reserved: 0.0,
            sent_ms: now_ms,
            last_activity_ms: now_ms,
            failures: Vec::new(),
            skipped_statuses: Vec::new(),
            passed_over: Vec::new(),
            status: None,
            body_failed: false,
            retry_denied: false,
            cache: if fill.is_some() { CacheStatus::Miss } else { CacheStatus::Bypass },
            fill: fill.as_ref().map(|(fill, _)| fill.clone()),
        };
        self.retries.deposit(now_ms);
        let lookup = match fill {
            Some((fill, false)) => {
                let explain = Explain { cache: CacheStatus::Hit, ..delivery_explain(&self.config, &exchange, None) };
                Some(CacheLookup { key: fill.key, http: fill.http, explain })
            }
            _ => None,
        };
        self.exchanges.insert(id, exchange);
        match lookup {
            Some(lookup) => Action::Lookup(lookup),
            None => self.next_attempt(id, now_ms),
        }
    }

    /// Where the answer to an AI request is cached, and whether the client
    /// asked to refresh it (skip the lookup); `None` when the cache is
    /// bypassed. The key's model is the one the first node of the chain
    /// would be asked for.
    #[allow(clippy::too_many_arguments)]
    fn cache_fill(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
        headers: &[HeaderRef<'_>],
        facts: &RequestFacts,
        chain: &[(usize, ModelChoice)],
        rule_ttl: Option<crate::config::DurationSpec>,
        tenant: &str,
    ) -> Option<(CacheFill, bool)> {
        use edge_cache::ai::{AiDecision, AiPolicy, Partition, ai_decision, ai_key};
        let cfg = &self.config.cache;
        let (first, choice) = chain.first()?;
        if !cfg.enabled {
            return None;
        }
        let policy = AiPolicy {
            rule_ttl_s: rule_ttl.map(|t| t.0.as_secs()),
            node_ttl_s: self.config.nodes[*first].cache_ttl.map(|t| t.0.as_secs()),
            default_ttl_s: cfg.default_ttl.0.as_secs(),
            cache_sampled: cfg.cache_sampled,
            client_ttl: cfg.client_ttl,
        };
        let cache_control = named(headers, "cache-control").filter_map(|v| std::str::from_utf8(v).ok());
        let AiDecision::Use { refresh, ttl_s } =
            ai_decision(facts.samples, cache_control, header_str(headers, "x-edge-cache-ttl"), &policy)
        else {
            return None;
        };
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let model = match choice {
            ModelChoice::Rewrite(m) => self.config.nodes[*first].models[*m].as_str(),
            _ => facts.model.as_deref().unwrap_or_default(),
        };
        let partition = if cfg.shared { Partition::Shared } else { Partition::Tenant(tenant) };
        let key = ai_key(method, target, model, &value, partition);
        Some((CacheFill { key, ttl_s, estimated_tokens: facts.estimated_tokens, http: false }, refresh))
    }

    fn facts(
        &self,
        endpoint: Endpoint,
        body: &[u8],
        parsed: Option<BodyFacts>,
        headers: &[HeaderRef<'_>],
        country: Option<Country>,
        principal: Principal,
    ) -> Result<RequestFacts, RouterError> {
        let parsed = match parsed {
            Some(parsed) => parsed,
            None => parse_body(body).map_err(RouterError::BadRequest)?,
        };
        if parsed.model.as_deref().is_none_or(str::is_empty) {
            return Err(RouterError::BadRequest("the request body needs a `model` (or `auto`)".into()));
        }
        let type_header = header_str(headers, "x-request-type");
        request_facts(endpoint, parsed, type_header, country, principal, &self.config.requests)
            .map_err(RouterError::BadRequest)
    }

    /// Picks the rule (or default strategy) and orders its nodes. A rule's
    /// canary goes first for its share of requests and is left out of the rest.
    #[allow(clippy::type_complexity)]
    fn plan(
        &self,
        facts: &RequestFacts,
        random: u64,
    ) -> (RuleRef, Vec<(usize, ModelChoice)>, Option<crate::config::DurationSpec>) {
        let cfg = &self.config;
        let index = cfg.rules.iter().position(|r| r.matcher.matches(facts));
        let rule = index.map(|i| &cfg.rules[i]);
        let (label, mut candidates, fallback, strategy, primary) = match index.zip(rule) {
            // A config has far fewer than 2^32 rules.
            Some((i, rule)) => (
                RuleRef::Rule(u32::try_from(i).unwrap_or(u32::MAX)),
                rule.candidates.clone(),
                rule.fallback.as_slice(),
                rule.strategy,
                Reached::RuleTarget,
            ),
            None => {
                let serving: Vec<usize> =
                    (0..cfg.nodes.len()).filter(|&i| serves(&cfg.nodes[i], facts.model.as_deref())).collect();
                (RuleRef::Default, serving, &[][..], cfg.default_strategy, Reached::Default)
            }
        };
        let canary = rule.and_then(|r| r.canary);
        if let Some((node, _)) = canary {
            candidates.retain(|&n| n != node);
        }
        let first = canary.filter(|&(_, percent)| canary_draw(random, percent)).map(|(node, _)| node);
        let ordered = self.order(strategy, &candidates, random);
        let chain = first
            .into_iter()
            .chain(ordered)
            .map(|n| (n, primary))
            .chain(fallback.iter().filter(|&&n| Some(n) != canary.map(|c| c.0)).map(|&n| (n, Reached::RuleFallback)))
            .map(|(n, reached)| (n, choose_model(&cfg.nodes[n], facts, &cfg.model_routing, reached)))
            .filter(|(_, m)| *m != ModelChoice::Unsuitable)
            .collect();
        (label, chain, rule.and_then(|r| r.cache_ttl))
    }

    fn order(&self, strategy: Strategy, nodes: &[usize], random: u64) -> Vec<usize> {
        let candidates: Vec<Candidate> = nodes
            .iter()
            .map(|&i| {
                let n = &self.config.nodes[i];
                Candidate {
                    node: i,
                    priority: n.priority,
                    weight: self.nodes[i].weight,
                    cost_per_1k_tokens: n.cost_per_1k_tokens,
                    latency_us: self.latency.latency_us(i),
                }
            })
            .collect();
        order_candidates(strategy, &candidates, random)
    }

    /// Removes every node the request's jurisdiction forbids; refuses if none is left.
    fn residency_filter(
        &self,
        chain: Vec<(usize, ModelChoice)>,
        jurisdiction: Option<JurisdictionId>,
    ) -> Result<Vec<(usize, ModelChoice)>, RouterError> {
        let had_any = !chain.is_empty();
        let kept: Vec<_> =
            chain.into_iter().filter(|(n, _)| permits(jurisdiction, self.config.nodes[*n].residency)).collect();
        match (kept.is_empty(), jurisdiction) {
            (false, _) => Ok(kept),
            (true, Some(j)) if had_any => {
                Err(RouterError::ResidencyUnavailable { jurisdiction: self.config.residency.name(j).to_string() })
            }
            (true, _) => Err(RouterError::NoNode("no configured node serves the requested model".into())),
        }
    }

    /// Forwards to the next node in the chain that can take the request, or
    /// answers with the reason none is left.
    fn next_attempt(&mut self, id: u64, now_ms: u64) -> Action {
        let Some(ex) = self.exchanges.get_mut(&id) else {
            return Action::Done;
        };
        let day = self.config.budget_day.of(now_ms);
        while ex.next < ex.chain.len() {
            // Entries before `next` are never read again: the model choice is taken, not copied.
            let (node, ref mut entry) = ex.chain[ex.next];
            let choice = std::mem::replace(entry, ModelChoice::Keep);
            ex.next += 1;
            let n = &self.config.nodes[node];
            let cost = cost_of(ex.estimated_tokens, n.cost_per_1k_tokens);
            if let Some(why) = unavailable(&self.nodes, &self.config, node, cost, now_ms) {
                ex.passed_over.push((node, why));
                continue;
            }
            if ex.attempts > 0 && !self.retries.try_withdraw(now_ms) {
                ex.retry_denied = true;
                break;
            }
            let state = &mut self.nodes[node];
            if state.breaker.acquire(id, now_ms).flatten().is_some() {
                self.notices.push(Notice::Probing { node: n.id.clone() });
            }
            state.in_flight += 1;
            state.spend.reserve(day, cost);
            ex.reserved = cost;
            ex.status = None;
            ex.holding = Some(node);
            ex.attempts += 1;
            ex.sent_ms = now_ms;
            ex.last_activity_ms = now_ms;
            ex.rewritten_model = match choice {
                ModelChoice::Rewrite(model) => Some(model),
                _ => None,
            };
            let body =
                ex.rewritten_model.map_or(ForwardBody::Original, |m| ForwardBody::RewriteModel(n.models[m].clone()));
            return Action::Forward(Forward {
                node: u32::try_from(node).unwrap_or(u32::MAX),
                attempt: ex.attempts,
                remove_headers: ex.unforwardable.clone(),
                body,
                connect_timeout_ms: n.timeouts.connect.as_millis(),
                first_byte_timeout_ms: n.timeouts.first_byte.as_millis(),
                idle_timeout_ms: n.timeouts.idle.as_millis(),
                total_timeout_ms: n.timeouts.total.as_millis(),
                // A fallback status only matters while the chain has nodes left.
                fallback: ex.next < ex.chain.len(),
                meter: n.cost_per_1k_tokens > 0.0,
                fill: ex.fill.clone(),
                rule: ex.rule,
                cache: ex.cache,
            });
        }
        let Some(ex) = self.exchanges.remove(&id) else {
            return Action::Done;
        };
        let error = self.exhausted(&ex, now_ms);
        let (status, mut headers, body) = error.to_response(Vec::new());
        headers.extend(explain(&self.config, &ex));
        Action::Respond { status, headers, body }
    }

    fn exhausted(&self, ex: &Exchange, now_ms: u64) -> RouterError {
        let id = |n: &usize| self.config.nodes[*n].id.as_str();
        if ex.attempts == 0 {
            return self.none_available(&ex.passed_over, now_ms);
        }
        let mut parts: Vec<String> = ex.failures.iter().map(|(n, f)| format!("{}: {}", id(n), f.describe())).collect();
        parts.extend(ex.skipped_statuses.iter().map(|(n, s)| format!("{}: answered {s}", id(n))));
        parts.extend(ex.passed_over.iter().map(|(n, why)| {
            let why = match why {
                PassedOver::Full => "at capacity",
                PassedOver::Unhealthy { .. } => "unhealthy",
                PassedOver::Resting { .. } => "rate limited",
                PassedOver::OverBudget { .. } => "daily budget spent",
                PassedOver::Draining => "draining",
            };
            format!("{}: {why}", id(n))
        }));
        if ex.retry_denied {
            parts.push("no further node tried: too many requests are failing over (retry budget spent)".into());
        }
        let summary = parts.join("; ");
        match ex.failures.last() {
            Some((_, Failure::Timeout)) => RouterError::UpstreamTimeout(summary),
            _ => RouterError::UpstreamFailed(summary),
        }
    }

    /// The answer when no node of the chain could take even a first attempt:
    /// the most hopeful reason wins (a full node frees up soonest, then a
    /// pause ends, then a probe, then a budget day), with the time to retry.
    fn none_available(&self, passed_over: &[(usize, PassedOver)], now_ms: u64) -> RouterError {
        let ids = |keep: fn(&PassedOver) -> Option<u64>| {
            let mut ids = Vec::new();
            let mut soonest = u64::MAX;
            for (n, why) in passed_over {
                if let Some(at) = keep(why) {
                    ids.push(self.config.nodes[*n].id.as_str());
                    soonest = soonest.min(at.saturating_sub(now_ms).div_ceil(1000).max(1));
                }
            }
            (!ids.is_empty()).then(|| (ids.join(", "), soonest))
        };
        if passed_over.iter().any(|(_, why)| *why == PassedOver::Full) || passed_over.is_empty() {
            return RouterError::AtCapacity;
        }
        if let Some((nodes, retry_after_s)) =
            ids(|w| if let PassedOver::Resting { until_ms, .. } = w { Some(*until_ms) } else { None })
        {
            let limited = passed_over.iter().any(|(_, w)| matches!(w, PassedOver::Resting { status: 429, .. }));
            return RouterError::Paused { nodes, retry_after_s, status: if limited { 429 } else { 503 } };
        }
        if let Some((nodes, retry_after_s)) =
            ids(|w| if let PassedOver::Unhealthy { probe_at_ms } = w { Some(*probe_at_ms) } else { None })
        {
            return RouterError::Unhealthy { nodes, retry_after_s };
        }
        if let Some((nodes, retry_after_s)) =
            ids(|w| if let PassedOver::OverBudget { until_ms } = w { Some(*until_ms) } else { None })
        {
            return RouterError::BudgetSpent { nodes, retry_after_s };
        }
        let draining = ids(|w| (*w == PassedOver::Draining).then_some(0)).map(|(nodes, _)| nodes);
        RouterError::Draining(draining.unwrap_or_default())
    }

    fn on_response_head(
        &mut self,
        id: u64,
        status: u16,
        retry_after_s: Option<u32>,
        now_ms: u64,
        answer: bool,
    ) -> Action {
        let Some(ex) = self.exchanges.get_mut(&id) else {
            return Action::Done;
        };
        ex.last_activity_ms = now_ms;
        let Some(node) = ex.holding else {
            return Action::Done;
        };
        ex.status = Some(status);
        let latency_us = saturating_mul_by(now_ms.saturating_sub(ex.sent_ms), 1000);
        if status < 500 {
            self.latency.observe(node, latency_us);
        }
        let failed = counts_as_failure(status);
        let state = &mut self.nodes[node];
        state.traffic.answered(now_ms, latency_us, failed);
        if let Some(pause) = retry_after_s.filter(|_| matches!(status, 429 | 503)) {
            let pause_ms = u64::from(pause).min(MAX_RETRY_AFTER_S) * 1000;
            state.resting_until_ms = state.resting_until_ms.max(now_ms + pause_ms);
            state.resting_status = status;
        }
        // Whether another node may be tried, asked only of a status that allows it.
        let more = || {
            self.retries.allows(now_ms)
                && ex.chain[ex.next..].iter().any(|&(n, _)| {
                    let cost = cost_of(ex.estimated_tokens, self.config.nodes[n].cost_per_1k_tokens);
                    unavailable(&self.nodes, &self.config, n, cost, now_ms).is_none()
                })
        };
        let deliver = !FALLBACK_STATUSES.contains(&status) || !more();
        // The explanation is only built for a caller who reads it.
        let explain = (deliver && answer).then(|| delivery_explain(&self.config, ex, Some(node)));
        if failed {
            self.charge_failure(node, id, now_ms, || format!("it answered {status}"));
        }
        let breaker = &mut self.nodes[node].breaker;
        let probing = matches!(breaker.state(), BreakerState::HalfOpen { probe, .. } if probe == id);
        if status == 429 {
            // A rate limit says nothing of health; a probe it answered is handed on.
            breaker.on_abandoned(id, now_ms);
        } else if !failed && (probing || !deliver) {
            // A good head closes a probing breaker at once, so a recovered
            // node is not kept out for as long as the probe's stream runs;
            // a body that then breaks off counts as a failure as usual.
            let transition = breaker.on_success(id);
            self.note(node, transition, String::new);
        }
        if deliver {
            // Otherwise a delivered answer's success is judged when its body
            // has gone through (see `close`).
            self.nodes[node].traffic.served(now_ms);
            return explain.map_or(Action::Done, Action::Deliver);
        }
        if let Some(ex) = self.exchanges.get_mut(&id) {
            ex.skipped_statuses.push((node, status));
            ex.holding = None;
            let reserved = std::mem::take(&mut ex.reserved);
            self.release(id, node, reserved, 0.0, now_ms);
        }
        self.next_attempt(id, now_ms)
    }

    /// Randomness for a breaker's jitter: the last request's `random`, mixed
    /// with `salt`, so it stays a function of the events.
    fn jitter(&self, salt: u64) -> u64 {
        mix64(self.entropy ^ salt.wrapping_mul(GOLDEN_GAMMA))
    }

    /// Charges `node` with a failure of exchange `id` (`why` says what, for
    /// the notice if the breaker opens).
    fn charge_failure(&mut self, node: usize, id: u64, now_ms: u64, why: impl FnOnce() -> String) {
        let jitter = self.jitter(id);
        let transition = self.nodes[node].breaker.on_failure(id, now_ms, jitter);
        self.note(node, transition, why);
    }

    fn on_origin_failed(&mut self, id: u64, failure: Failure, now_ms: u64) -> Action {
        let Some(ex) = self.exchanges.get_mut(&id) else {
            return Action::Done;
        };
        ex.last_activity_ms = now_ms;
        if let Some(node) = ex.holding.take() {
            ex.failures.push((node, failure));
            let reserved = std::mem::take(&mut ex.reserved);
            self.nodes[node].traffic.failed(now_ms);
            self.charge_failure(node, id, now_ms, || failure.describe().to_string());
            self.release(id, node, reserved, 0.0, now_ms);
        }
        self.next_attempt(id, now_ms)
    }

    /// An exchange is over: its capacity slot is free, what it cost is
    /// settled, an answer whose body went through counts as the node's
    /// success, and if its node never answered (the client left first), a
    /// probe it carried is handed on.
    ///
    /// The cost is the `usage` the response reported; without one, a 2xx
    /// (or a request whose client left before the head) is charged its
    /// estimate, since the origin may well bill it, and anything else nothing.
    fn close(&mut self, id: u64, ex: &Exchange, usage: Option<Usage>, now_ms: u64) {
        let Some(node) = ex.holding else { return };
        match ex.status {
            None => self.nodes[node].breaker.on_abandoned(id, now_ms),
            Some(status) if !counts_as_failure(status) && status != 429 && !ex.body_failed => {
                let transition = self.nodes[node].breaker.on_success(id);
                self.note(node, transition, String::new);
            }
            Some(_) => {}
        }
        let tokens = match (usage, ex.status) {
            (Some(u), _) => u.total(),
            (None, None) => ex.estimated_tokens,
            (None, Some(s)) if (200..300).contains(&s) => ex.estimated_tokens,
            (None, Some(_)) => 0,
        };
        let cost = cost_of(tokens, self.config.nodes[node].cost_per_1k_tokens);
        let day = self.config.budget_day.of(now_ms);
        for (tallies, key) in [(&mut self.tenants, &*ex.tenant), (&mut self.rules, self.config.rule_label(ex.rule))] {
            match tallies.get_mut(key) {
                Some(t) => t.add(day, tokens, cost),
                None => tallies.entry(key.to_string()).or_default().add(day, tokens, cost),
            }
        }
        self.nodes[node].today.add(day, tokens, cost);
        self.release(id, node, ex.reserved, cost, now_ms);
    }

    /// Frees `node`'s capacity slot and settles its reservation at `cost`.
    fn release(&mut self, id: u64, node: usize, reserved: f64, cost: f64, now_ms: u64) {
        let day = self.config.budget_day.of(now_ms);
        let state = &mut self.nodes[node];
        state.in_flight = state.in_flight.saturating_sub(1);
        state.spend.settle(day, reserved, cost);
        state.spend_changed |= cost > 0.0;
        if self.recording_settlements && self.config.nodes[node].max_cost_per_day.is_some() {
            self.settled.push(Settlement { id, node: self.config.nodes[node].id.clone(), day, cost });
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

/// The price of `tokens` at `per_1k` per thousand.
fn cost_of(tokens: u64, per_1k: f64) -> f64 {
    tokens as f64 * per_1k / 1000.0
}

fn presented_key_of<'a>(headers: &[HeaderRef<'a>]) -> Option<&'a [u8]> {
    presented_key(headers.iter().map(|h| (h.name, h.value)))
}

/// The values of request header `name`, which must be one of
/// [`READ_HEADERS`](crate::wire::READ_HEADERS): a host may send only those.
fn named<'h, 'a>(headers: &'h [HeaderRef<'a>], name: &'static str) -> impl Iterator<Item = &'a [u8]> + 'h {
    debug_assert!(crate::wire::READ_HEADERS.contains(&name), "the router reads `{name}`: add it to READ_HEADERS");
    headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

fn header_str<'a>(headers: &[HeaderRef<'a>], name: &'static str) -> Option<&'a str> {
    named(headers, name).next().and_then(|v| std::str::from_utf8(v).ok())
}

fn explain(config: &RouterConfig, ex: &Exchange) -> Vec<Header> {
    Explain::router(config.rule_label(ex.rule), ex.attempts, country_label(ex.country)).headers()
}

/// Why a node cannot take an attempt costing `cost` now, if it cannot. (A
/// free function over the node's parts, so it can be asked while an
/// exchange is borrowed.)
fn unavailable(nodes: &[NodeState], config: &RouterConfig, index: usize, cost: f64, now_ms: u64) -> Option<PassedOver> {
    let (state, node) = (&nodes[index], &config.nodes[index]);
    if state.draining {
        return Some(PassedOver::Draining);
    }
    if let Some(probe_at_ms) = state.breaker.next_chance_ms(now_ms) {
        return Some(PassedOver::Unhealthy { probe_at_ms });
    }
    if state.resting_until_ms > now_ms {
        return Some(PassedOver::Resting { until_ms: state.resting_until_ms, status: state.resting_status });
    }
    let day = config.budget_day.of(now_ms);
    if !state.spend.admits(day, node.max_cost_per_day, cost) {
        return Some(PassedOver::OverBudget { until_ms: config.budget_day.end_ms(day) });
    }
    let full = node.max_concurrent.is_some_and(|max| state.in_flight >= max);
    full.then_some(PassedOver::Full)
}

/// The explanation added to the response of `node` (its index; `-` before
/// any attempt) for the exchange's current attempt.
fn delivery_explain(config: &RouterConfig, ex: &Exchange, node: Option<usize>) -> Explain {
    let node = node.map(|i| &config.nodes[i]);
    Explain {
        node: node.map_or("-", |n| &n.id).to_string(),
        model: node.zip(ex.rewritten_model).map(|(n, m)| n.models[m].clone()),
        rule: config.rule_label(ex.rule).to_string(),
        attempts: ex.attempts,
        country: country_label(ex.country),
        cache: ex.cache,
    }
}

/// The router's own answer to a request it will not forward.
fn refusal(error: &RouterError, label: &str, country: Option<Country>) -> Action {
    let extra = Explain::router(label, 0, country_label(country)).headers();
    let (status, headers, body) = error.to_response(extra);
    Action::Respond { status, headers, body }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::{Just, Strategy as _, any, prop, prop_assert, prop_oneof, proptest};

    use super::*;

    fn router(yaml: &str) -> Router {
        Router::new(RouterConfig::load("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}")))
    }

    fn request(id: u64, country: &str, model: &str, random: u64) -> Event {
        let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
        Event::Request {
            id,
            method: "POST".into(),
            target: "/v1/chat/completions".into(),
            headers: vec![Header::new("content-type", "application/json")],
            country: Some(country.into()),
            body: crate::wire::RequestBody::Buffered(body.into_bytes()),
            now_ms: 1_000,
            random,
            key_sha256: None,
            body_facts: None,
        }
    }

    /// Handles `event`; the id of the node it is forwarded to, if it is.
    fn forwarded(r: &mut Router, event: Event) -> Option<&str> {
        let action = r.handle(event);
        forward_id(r, &action)
    }

    #[test]
    fn finishing_releases_the_capacity_slot() {
        let mut r = router("nodes:\n  - {id: a, type: local, host: \"http://a\", max_concurrent: 1}\n");
        assert_eq!(forwarded(&mut r, request(1, "US", "m", 0)), Some("a"));
        assert_eq!(r.in_flight(), &[1]);
        let Action::Respond { status, .. } = r.handle(request(2, "US", "m", 0)) else { panic!("expected a refusal") };
        assert_eq!(status, 429);
        assert!(matches!(
            r.handle(Event::ResponseHead { id: 1, status: 200, retry_after_s: None, now_ms: 1_050 }),
            Action::Deliver { .. }
        ));
        r.handle(Event::Finished { id: 1, usage: None, now_ms: 1_100 });
        assert_eq!((r.in_flight(), r.open_exchanges()), (vec![0], 0));
    }

    #[test]
    fn abandoned_exchanges_are_reaped_on_tick() {
        let mut r = router("nodes:\n  - {id: a, type: local, host: \"http://a\"}\n");
        r.handle(request(1, "US", "m", 0));
        r.handle(Event::Tick { now_ms: 1_000 + ABANDONED_AFTER_MS });
        assert_eq!(r.open_exchanges(), 1, "not yet abandoned");
        r.handle(Event::Tick { now_ms: 1_001 + ABANDONED_AFTER_MS });
        assert_eq!((r.open_exchanges(), r.in_flight()), (0, vec![0]));
    }

    #[test]
    fn a_key_digest_from_the_host_stands_in_for_hashing_the_presented_key() {
        let digest = crate::auth::key_digest(b"sk-team-a");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let mut r = router(&format!(
            "nodes:\n  - {{id: a, type: local, host: \"http://a\"}}\nauth:\n  required: true\n  keys:\n    - {{sha256: \"{hex}\", tier: vip, tenant: acme}}\n"
        ));
        let keyed = |id: u64, header: Option<&str>, key_sha256: Option<[u8; 32]>| {
            let Event::Request { method, target, country, body, now_ms, random, .. } = request(id, "US", "m", 0) else {
                unreachable!()
            };
            let headers = header.map(|h| vec![Header::new("authorization", h)]).unwrap_or_default();
            Event::Request { id, method, target, headers, country, body, now_ms, random, key_sha256, body_facts: None }
        };
        // The router hashes the presented key itself...
        assert!(matches!(r.handle(keyed(1, Some("Bearer sk-team-a"), None)), Action::Forward(_)));
        assert!(matches!(r.handle(keyed(2, Some("Bearer sk-team-b"), None)), Action::Respond { status: 401, .. }));
        // ...or takes the host's digest of it.
        assert!(matches!(r.handle(keyed(3, None, Some(digest))), Action::Forward(_)));
        let other = crate::auth::key_digest(b"sk-team-b");
        assert!(matches!(r.handle(keyed(4, None, Some(other))), Action::Respond { status: 401, .. }));
    }

    #[test]
    fn the_router_answers_the_same_when_given_only_the_headers_it_reads() {
        let digest = crate::auth::key_digest(b"sk-team-a");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let config = format!(
            "nodes:\n  - {{id: small, type: edge, host: \"http://s\", models: [tiny, huge]}}\n  - {{id: big, type: cloud, host: \"http://b\", models: [huge]}}\nrouting:\n  rules:\n    - {{name: hard, match: {{type: complex_reasoning}}, target: big}}\n    - {{name: vip, match: {{user_tier: vip}}, target: small}}\ncache:\n  memory: 1MiB\n  client_ttl: true\nauth:\n  keys:\n    - {{sha256: \"{hex}\", tier: vip, tenant: acme}}\n"
        );
        let (mut all, mut only_read) = (router(&config), router(&config));
        let cases: [&[(&str, &str)]; 5] = [
            &[("x-request-type", "complex_reasoning"), ("user-agent", "OpenAI/Python 1.52.0")],
            &[("connection", "keep-alive, x-hop"), ("x-hop", "1"), ("accept", "application/json")],
            &[("cache-control", "no-store"), ("x-stainless-lang", "python")],
            &[("x-edge-cache-ttl", "60"), ("host", "edge.example")],
            &[("authorization", "Bearer sk-team-a"), ("x-trace", "t1")],
        ];
        for (id, headers) in (1..).zip(cases) {
            for hashed in [false, true] {
                let id = id * 2 + u64::from(hashed);
                let with = |keep: &dyn Fn(&str) -> bool| {
                    let Event::Request { method, target, country, body, now_ms, random, .. } =
                        request(id, "DE", "auto", id)
                    else {
                        unreachable!()
                    };
                    // The host hashes the key from all the client's headers.
                    let key = presented_key(headers.iter().map(|(n, v)| (*n, v.as_bytes())));
                    let key_sha256 = if hashed { key.map(crate::auth::key_digest) } else { None };
                    let headers = headers.iter().filter(|(n, _)| keep(n)).map(|(n, v)| Header::new(n, v)).collect();
                    Event::Request {
                        id,
                        method,
                        target,
                        headers,
                        country,
                        body,
                        now_ms,
                        random,
                        key_sha256,
                        body_facts: None,
                    }
                };
                let everything = all.handle(with(&|_| true));
                let read = only_read.handle(with(&|n| crate::wire::router_reads(n, hashed)));
                assert_eq!(everything, read, "headers {headers:?}, key hashed by the host: {hashed}");
                assert!(matches!(everything, Action::Forward(_)), "{everything:?}");
            }
        }
    }

    #[test]
    fn a_forwards_explanation_is_what_the_router_answers_its_head_with() {
        let config = "nodes:\n  - {id: small, type: edge, host: \"http://s\", models: [tiny, less-tiny]}\n  - {id: big, type: cloud, host: \"http://b\", models: [huge]}\nrouting:\n  rules:\n    - {name: short, match: {max_tokens: 100}, target: small, fallback: [big]}\n";
        let mut r = router(config);
        let cases = [
            // Rewritten to a small model, a known country, a fallback left.
            (1, "DE", r#"{"model":"auto","messages":[{"role":"user","content":"hi"}],"max_tokens":10}"#),
            // The client's model kept, the default strategy, an unknown country.
            (2, "", r#"{"model":"huge","messages":[{"role":"user","content":"hi"}],"max_tokens":5000}"#),
        ];
        for (id, country, body) in cases {
            let mut event = request(id, country, "m", 0);
            if let Event::Request { body: b, .. } = &mut event {
                *b = crate::wire::RequestBody::Buffered(body.as_bytes().to_vec());
            }
            let Action::Forward(f) = r.handle(event) else { panic!("expected a forward") };
            assert_eq!(matches!(f.body, ForwardBody::RewriteModel(_)), id == 1, "{body}");
            let head = Event::ResponseHead { id, status: 200, retry_after_s: None, now_ms: 1_100 };
            let Action::Deliver(answered) = r.handle(head) else { panic!("expected a delivery") };
            assert_eq!(f.explain(r.config(), Country::parse(country)), Some(answered), "{body}");
        }
    }

    #[test]
    fn a_batch_answers_its_last_event_after_the_deferred_ones() {
        let mut r = router("nodes:\n  - {id: a, type: local, host: \"http://a\"}\n");
        let encode = |events: &[Event]| -> Vec<u8> {
            events.iter().flat_map(|e| postcard::to_allocvec(e).expect("encodes")).collect()
        };
        let Ok(Some(Action::Forward(f))) = r.handle_batch(&encode(&[request(1, "US", "m", 0)])) else {
            panic!("expected a forward")
        };
        assert_eq!((forward_id(&r, &Action::Forward(f)), r.in_flight()), (Some("a"), vec![1]));
        let deferred = [
            Event::ResponseHead { id: 1, status: 200, retry_after_s: None, now_ms: 1_100 },
            Event::Finished { id: 1, usage: None, now_ms: 1_200 },
        ];
        let batch = encode(&[&deferred[..], &[request(2, "US", "m", 0)]].concat());
        assert!(matches!(r.handle_batch(&batch), Ok(Some(Action::Forward(_)))));
        assert_eq!((r.open_exchanges(), r.in_flight()), (1, vec![1]), "exchange 1 ended, 2 is in flight");
        // The last event is answered, whatever it is.
        let head = Event::ResponseHead { id: 2, status: 200, retry_after_s: None, now_ms: 1_300 };
        assert!(matches!(r.handle_batch(&encode(&[head])), Ok(Some(Action::Deliver(_)))));
        assert_eq!(r.handle_batch(&[]), Ok(None));
        let mut broken = encode(&[Event::Tick { now_ms: 5 }]);
        broken.push(REQUEST_TAG);
        assert!(r.handle_batch(&broken).is_err(), "a request cut short is an error");
    }

    #[test]
    fn an_absorbed_event_changes_the_router_as_a_handled_one_does() {
        let config = "nodes:\n  - {id: a, type: cloud, host: \"http://a\", cost_per_1k_tokens: 1.0, max_cost_per_day: 100}\n  - {id: b, type: local, host: \"http://b\"}\nrouting:\n  rules:\n    - {match: {type: \"*\"}, target: a, fallback: [b]}\n";
        let (mut handled, mut absorbed) = (router(config), router(config));
        let status = |r: &mut Router| match r.handle(Event::Status { now_ms: 9_000 }) {
            Action::Respond { body, .. } => String::from_utf8(body).expect("utf-8"),
            other => panic!("expected a report, got {other:?}"),
        };
        for (id, head) in [(1, 200), (2, 500), (3, 200), (4, 503)] {
            for r in [&mut handled, &mut absorbed] {
                assert!(matches!(r.handle(request(id, "US", "m", id)), Action::Forward(_)));
            }
            let head = Event::ResponseHead { id, status: head, retry_after_s: None, now_ms: 1_100 };
            let end =
                Event::Finished { id, usage: Some(Usage { prompt_tokens: 10, completion_tokens: 90 }), now_ms: 1_200 };
            assert!(matches!(handled.handle(head.clone()), Action::Deliver(_) | Action::Forward(_)));
            handled.handle(end.clone());
            absorbed.absorb(head);
            absorbed.absorb(end);
        }
        assert_eq!(status(&mut handled), status(&mut absorbed));
        assert_eq!((handled.open_exchanges(), handled.in_flight()), (absorbed.open_exchanges(), absorbed.in_flight()));
        assert_eq!(handled.take_spent(), absorbed.take_spent());
    }

    #[test]
    fn body_facts_from_the_host_stand_in_for_parsing_the_body() {
        let config = "nodes:\n  - {id: small, type: edge, host: \"http://s\", models: [tiny]}\n  - {id: big, type: cloud, host: \"http://b\", models: [huge]}\nrouting:\n  rules:\n    - {match: {max_tokens: 100}, target: small}\n";
        let with_facts = |id: u64, text: &str, facts: Option<BodyFacts>| {
            let mut event = request(id, "US", "m", 0);
            if let Event::Request { body, body_facts, .. } = &mut event {
                *body = crate::wire::RequestBody::Buffered(text.as_bytes().to_vec());
                *body_facts = facts;
            }
            event
        };
        let forward = |r: &mut Router, e: Event| match r.handle(e) {
            Action::Forward(f) => (f.node, f.body),
            other => panic!("expected a forward, got {other:?}"),
        };
        // The host's reading of a body and the router's own lead to the same forward.
        for body in [
            r#"{"model":"auto","messages":[{"role":"user","content":"hi"}],"max_tokens":10}"#,
            r#"{"model":"auto","messages":[{"role":"user","content":"hi"}],"max_tokens":5000}"#,
            r#"{"model":"huge","prompt":"once upon a time","stream":true}"#,
        ] {
            let facts = parse_body(body.as_bytes()).expect("parses");
            let own = forward(&mut router(config), with_facts(1, body, None));
            let host = forward(&mut router(config), with_facts(1, body, Some(facts)));
            assert_eq!(own, host, "{body}");
        }
        // The router does not read the body again: the host's facts decide.
        let facts = BodyFacts { model: Some("auto".into()), max_tokens: Some(10), ..BodyFacts::default() };
        let mut r = router(config);
        let (node, _) = forward(&mut r, with_facts(2, "{not json, never parsed", Some(facts)));
        assert_eq!(r.config().node_at(node).map(|n| n.id.as_str()), Some("small"));
        // Without them, the router explains what is wrong with the body.
        let mut r = router(config);
        let Action::Respond { status, body, .. } = r.handle(with_facts(3, "{not json", None)) else {
            panic!("expected a refusal")
        };
        assert_eq!(status, 400);
        assert!(String::from_utf8_lossy(&body).contains("not valid JSON"), "{}", String::from_utf8_lossy(&body));
    }

    #[test]
    fn forwarded_headers_drop_client_keys_and_hop_by_hop_headers() {
        let mut r = router("nodes:\n  - {id: a, type: local, host: \"http://a/base\", api_key_env: A_KEY}\n");
        let mut event = request(1, "US", "m", 0);
        if let Event::Request { headers, .. } = &mut event {
            *headers = vec![
                Header::new("authorization", "Bearer client"),
                Header::new("x-api-key", "client"),
                Header::new("connection", "keep-alive, x-hop"),
                Header::new("x-hop", "for the next hop only"),
                Header::new("api-key", "client"),
                Header::new("x-trace", "t1"),
            ];
        }
        let Action::Forward(f) = r.handle(event) else { panic!("expected a forward") };
        assert_eq!(f.remove_headers, ["x-hop"]);
        for name in ["authorization", "x-api-key", "api-key", "connection", "Host", "content-length"] {
            assert!(never_forwarded(name), "{name} must never be forwarded");
        }
        assert!(!never_forwarded("x-trace"));
        assert_eq!(r.config().nodes[0].url_for("/v1/chat/completions?x=1"), "http://a/base/v1/chat/completions?x=1");
        // Names are matched without regard to case and listed lower-case,
        // sorted and once each, over all `Connection` headers; those the host
        // never forwards anyway are left out.
        let mut connection = |values: &[&str]| {
            let mut event = request(2, "US", "m", 0);
            if let Event::Request { headers, .. } = &mut event {
                *headers = values.iter().map(|v| Header::new("connection", v)).collect();
            }
            match r.handle(event) {
                Action::Forward(f) => f.remove_headers,
                other => panic!("expected a forward, got {other:?}"),
            }
        };
        assert!(connection(&["Keep-Alive", "Upgrade, TE"]).is_empty());
        assert_eq!(connection(&["X-Zeta, keep-alive", "x-alpha , X-ZETA", "Authorization"]), ["x-alpha", "x-zeta"]);
    }

    #[test]
    fn a_fallback_node_is_asked_for_a_model_of_its_own() {
        let config = "nodes:\n  - {id: small, type: edge, host: \"http://s\", models: [tiny, less-tiny], capabilities: [small_models]}\n  - {id: big, type: cloud, host: \"http://b\", models: [huge, huger]}\nrouting:\n  rules:\n    - {name: all, match: {type: \"*\"}, target: small, fallback: [big]}\n";
        let mut r = router(config);
        let model = |f: &Forward| match &f.body {
            ForwardBody::RewriteModel(m) => m.clone(),
            ForwardBody::Original => "(the client's)".into(),
        };
        let Action::Forward(first) = r.handle(request(1, "US", "gpt-4o", 0)) else { panic!("expected a forward") };
        assert_eq!((forward_id(&r, &Action::Forward(first.clone())), model(&first)), (Some("small"), "tiny".into()));
        let Action::Forward(second) = r.handle(Event::OriginFailed { id: 1, failure: Failure::Connect, now_ms: 1_010 })
        else {
            panic!("expected the fallback")
        };
        assert_eq!((forward_id(&r, &Action::Forward(second.clone())), model(&second)), (Some("big"), "huge".into()));
        let head = Event::ResponseHead { id: 1, status: 200, retry_after_s: None, now_ms: 1_020 };
        let Action::Deliver(explain) = r.handle(head) else { panic!("expected a delivery") };
        assert_eq!(
            (explain.node.as_str(), explain.model.as_deref(), explain.rule.as_str()),
            ("big", Some("huge"), "all")
        );
        assert_eq!(second.explain(r.config(), Country::parse("US")), Some(explain));
    }

    const RESIDENCIES: [&str; 4] = ["EU", "US", "global", ""];
    const COUNTRIES: [&str; 5] = ["DE", "FR", "US", "JP", "BR"];

    /// Node residencies, rules as (target, fallbacks), client country, attempt outcomes, random.
    type Scenario = (Vec<usize>, Vec<(usize, Vec<usize>)>, usize, Vec<u8>, u64);

    /// A fleet, rules over it, and what each attempt meets.
    fn scenario() -> impl proptest::strategy::Strategy<Value = Scenario> {
        (1usize..7).prop_flat_map(|n| {
            (
                prop::collection::vec(0..RESIDENCIES.len(), n),
                prop::collection::vec((0..n, prop::collection::vec(0..n, 0..4)), 0..3),
                0..COUNTRIES.len(),
                // 0: refused, 1: timeout, 2: 503, 3: 200
                prop::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(3)], 8),
                any::<u64>(),
            )
        })
    }

    proptest! {
        #[test]
        fn no_attempt_ever_leaves_the_requests_jurisdiction(
            (residencies, rules, country, outcomes, random) in scenario()
        ) {
            let mut yaml = String::from("residency:\n  jurisdictions: {EU: [\"@EU\"], US: [US]}\nnodes:\n");
            for (i, r) in residencies.iter().enumerate() {
                let res = RESIDENCIES[*r];
                let field = if res.is_empty() { String::new() } else { format!(", data_residency: {res}") };
                yaml += &format!("  - {{id: n{i}, type: cloud, host: \"http://n{i}\", weight: {}{field}}}\n", i + 1);
            }
            yaml += if rules.is_empty() { "routing:\n  default: weighted\n  rules: []\n" } else { "routing:\n  default: weighted\n  rules:\n" };
            for (target, fallback) in &rules {
                let fb: Vec<String> = fallback.iter().map(|f| format!("n{f}")).collect();
                yaml += &format!("    - {{match: {{}}, target: n{target}, fallback: [{}]}}\n", fb.join(", "));
            }
            let mut r = router(&yaml);
            let country = COUNTRIES[country];
            let jurisdiction = match country { "DE" | "FR" => Some("EU"), "US" => Some("US"), _ => None };
            let allowed = |node: &str| {
                let i: usize = node[1..].parse().unwrap_or(usize::MAX);
                let res = RESIDENCIES[residencies[i]];
                jurisdiction.is_none_or(|j| res == j || res == "global")
            };
            let mut action = r.handle(request(7, country, "m", random));
            for outcome in outcomes {
                let Some(node) = forward_id(&r, &action) else { break };
                prop_assert!(allowed(node), "{country} request sent to {node}\n{yaml}");
                action = match outcome {
                    0 => r.handle(Event::OriginFailed { id: 7, failure: Failure::Connect, now_ms: 2_000 }),
                    1 => r.handle(Event::OriginFailed { id: 7, failure: Failure::Timeout, now_ms: 2_000 }),
                    2 => r.handle(Event::ResponseHead { id: 7, status: 503, retry_after_s: None, now_ms: 2_000 }),
                    _ => r.handle(Event::ResponseHead { id: 7, status: 200, retry_after_s: None, now_ms: 2_000 }),
                };
            }
            if let Action::Respond { status, .. } = &action {
                prop_assert!([502, 503, 504].contains(status), "unexpected status {status}");
            }
            r.handle(Event::Finished { id: 7, usage: None, now_ms: 3_000 });
            prop_assert!(r.in_flight().iter().all(|&c| c == 0), "slots leaked: {:?}", r.in_flight());
        }
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
        body: crate::wire::RequestBody::Buffered(body.as_bytes().to_vec()),
        now_ms,
        random,
        key_sha256: None,
        body_facts: None,
    }
}

#[cfg(test)]
mod health_tests {
    use super::*;

    const FLEET: &str = "
nodes:
  - {id: primary, type: local, host: \"http://primary\"}
  - {id: backup, type: cloud, host: \"http://backup\"}
routing:
  rules:
    - {name: main, match: {type: \"*\"}, target: primary, fallback: [backup]}
health_check: {unhealthy_threshold: 2, cool_down: 1s, max_cool_down: 4s}
";

    fn request(id: u64, now_ms: u64) -> Event {
        chat_event(id, now_ms, id, r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
    }

    /// Handles `event`, which must be forwarded: to which node id, and the attempt's number.
    fn forward_to(r: &mut Router, event: Event) -> (&str, u32) {
        let action = r.handle(event);
        match (forward_id(r, &action), &action) {
            (Some(node), Action::Forward(f)) => (node, f.attempt),
            _ => panic!("expected a forward, got {action:?}"),
        }
    }

    /// A request whose first node refuses the connection and whose fallback answers 200.
    fn failing_over(r: &mut Router, id: u64, now_ms: u64) {
        assert_eq!(forward_to(r, request(id, now_ms)), ("primary", 1));
        assert_eq!(forward_to(r, Event::OriginFailed { id, failure: Failure::Connect, now_ms }), ("backup", 2));
        assert!(matches!(
            r.handle(Event::ResponseHead { id, status: 200, retry_after_s: None, now_ms }),
            Action::Deliver(_)
        ));
        r.handle(Event::Finished { id, usage: None, now_ms });
    }

    #[test]
    fn failures_open_the_breaker_and_a_probe_after_the_cool_down_closes_it() {
        let mut r = Router::new(RouterConfig::load("t.yaml", FLEET).unwrap_or_else(|e| panic!("{e}")));
        failing_over(&mut r, 1, 1_000);
        assert!(r.take_notices().is_empty(), "one failure is below the threshold");
        failing_over(&mut r, 2, 1_100);
        let notices = r.take_notices();
        assert!(
            matches!(&notices[..], [Notice::Unhealthy { node, probe_in_ms, .. }] if node == "primary" && (500..=1_000).contains(probe_in_ms)),
            "{notices:?}"
        );

        // While open, the primary is skipped: the backup serves at the first attempt.
        assert_eq!(forward_to(&mut r, request(3, 1_200)), ("backup", 1));
        r.handle(Event::ResponseHead { id: 3, status: 200, retry_after_s: None, now_ms: 1_210 });
        r.handle(Event::Finished { id: 3, usage: None, now_ms: 1_220 });
        assert!(r.take_notices().is_empty(), "a state change is told once, not per request");

        // After the cool-down one request probes; a concurrent one goes to the backup.
        assert_eq!(forward_to(&mut r, request(4, 2_200)), ("primary", 1));
        assert_eq!(r.take_notices(), [Notice::Probing { node: "primary".into() }]);
        assert_eq!(forward_to(&mut r, request(5, 2_200)), ("backup", 1));
        assert!(matches!(
            r.handle(Event::ResponseHead { id: 4, status: 200, retry_after_s: None, now_ms: 2_250 }),
            Action::Deliver(_)
        ));
        // The probe's good head closes the breaker at once, so the node is
        // back while the probe's body is still streaming.
        assert_eq!(r.take_notices(), [Notice::Healthy { node: "primary".into() }]);
        assert_eq!(forward_to(&mut r, request(6, 2_300)), ("primary", 1));
    }

    #[test]
    fn bodies_that_break_off_after_a_good_head_open_the_breaker() {
        let mut r = Router::new(RouterConfig::load("t.yaml", FLEET).unwrap_or_else(|e| panic!("{e}")));
        for id in [1, 2] {
            assert_eq!(forward_to(&mut r, request(id, 1_000)), ("primary", 1));
            r.handle(Event::ResponseHead { id, status: 200, retry_after_s: None, now_ms: 1_000 });
            r.handle(Event::BodyFailed { id, failure: Failure::Reset, now_ms: 1_010 });
            r.handle(Event::Finished { id, usage: None, now_ms: 1_010 });
        }
        assert!(matches!(r.health()[0], BreakerState::Open { .. }), "{:?}", r.health());
        assert_eq!(forward_to(&mut r, request(3, 1_020)), ("backup", 1));
    }

    #[test]
    fn client_errors_and_501_do_not_count_but_other_5xx_do() {
        let mut r = Router::new(RouterConfig::load("t.yaml", FLEET).unwrap_or_else(|e| panic!("{e}")));
        for (id, status) in [(1, 404), (2, 429), (3, 501), (4, 400)] {
            forward_to(&mut r, request(id, 1_000));
            r.handle(Event::ResponseHead { id, status, retry_after_s: None, now_ms: 1_000 });
            r.handle(Event::Finished { id, usage: None, now_ms: 1_000 });
        }
        assert_eq!(r.health()[0], BreakerState::Closed { failures: 0 });
        for id in [5, 6] {
            forward_to(&mut r, request(id, 1_000));
            // The backup is free, so a 503 moves on; it still counts against the primary.
            assert_eq!(
                forward_to(&mut r, Event::ResponseHead { id, status: 503, retry_after_s: None, now_ms: 1_000 }),
                ("backup", 2)
            );
            r.handle(Event::ResponseHead { id, status: 200, retry_after_s: None, now_ms: 1_000 });
            r.handle(Event::Finished { id, usage: None, now_ms: 1_000 });
        }
        assert!(matches!(r.health()[0], BreakerState::Open { .. }));
        assert_eq!(r.health()[1], BreakerState::Closed { failures: 0 });
    }

    #[test]
    fn with_every_candidate_unhealthy_the_answer_is_503_with_retry_after() {
        let config = FLEET.replace("fallback: [backup]", "fallback: []");
        let mut r = Router::new(RouterConfig::load("t.yaml", &config).unwrap_or_else(|e| panic!("{e}")));
        for id in [1, 2] {
            forward_to(&mut r, request(id, 1_000));
            let failed = r.handle(Event::OriginFailed { id, failure: Failure::Timeout, now_ms: 1_000 });
            assert!(matches!(failed, Action::Respond { status: 504, .. }), "{failed:?}");
        }
        let Action::Respond { status, headers, body } = r.handle(request(3, 1_100)) else {
            panic!("expected a refusal")
        };
        assert_eq!(status, 503);
        let retry =
            headers.iter().find(|h| h.name == "retry-after").map(|h| String::from_utf8_lossy(&h.value).into_owned());
        assert!(retry.is_some_and(|s| s == "1"), "{headers:?}");
        assert!(String::from_utf8_lossy(&body).contains("unhealthy (primary)"));
    }

    #[test]
    fn a_probe_whose_client_left_hands_the_probe_to_the_next_request() {
        let mut r = Router::new(RouterConfig::load("t.yaml", FLEET).unwrap_or_else(|e| panic!("{e}")));
        failing_over(&mut r, 1, 1_000);
        failing_over(&mut r, 2, 1_000);
        assert_eq!(forward_to(&mut r, request(3, 5_000)), ("primary", 1));
        r.handle(Event::Finished { id: 3, usage: None, now_ms: 5_010 });
        assert_eq!(forward_to(&mut r, request(4, 5_020)), ("primary", 1), "the next request probes");
    }

    #[test]
    fn failed_active_probes_open_the_breaker_without_a_failed_request() {
        let mut r = Router::new(RouterConfig::load("t.yaml", FLEET).unwrap_or_else(|e| panic!("{e}")));
        let probe = |ok, now_ms| Event::Probed { node: "primary".into(), ok, now_ms };
        r.handle(Event::Probed { node: "nonexistent".into(), ok: false, now_ms: 0 });
        r.handle(probe(false, 0));
        assert_eq!(r.health()[0], BreakerState::Closed { failures: 1 });
        r.handle(probe(false, 10));
        assert!(matches!(r.take_notices()[..], [Notice::Unhealthy { .. }]));
        assert_eq!(forward_to(&mut r, request(1, 20)), ("backup", 1));
        r.handle(probe(true, 2_000));
        assert_eq!(r.take_notices(), [Notice::Healthy { node: "primary".into() }]);
        assert_eq!(forward_to(&mut r, request(2, 2_010)), ("primary", 1));
    }

    #[test]
    fn the_retry_budget_stops_failing_over_when_most_requests_fail() {
        let config = FLEET
            .replace("fallback: [backup]}", "fallback: [backup]}\n  retry_budget: {ratio: 0, min_per_second: 1}")
            .replace("unhealthy_threshold: 2", "unhealthy_threshold: 1000");
        let mut r = Router::new(RouterConfig::load("t.yaml", &config).unwrap_or_else(|e| panic!("{e}\n{config}")));
        // One retry per second over ten seconds: ten requests fail over.
        for id in 0..10 {
            failing_over(&mut r, id, 1_000);
        }
        assert_eq!(forward_to(&mut r, request(10, 1_000)), ("primary", 1));
        let Action::Respond { status, body, .. } =
            r.handle(Event::OriginFailed { id: 10, failure: Failure::Connect, now_ms: 1_000 })
        else {
            panic!("the budget is spent: no fallback")
        };
        assert_eq!(status, 502);
        assert!(String::from_utf8_lossy(&body).contains("retry budget spent"));
        // A 503 is then passed on as it is instead of being retried.
        forward_to(&mut r, request(11, 1_000));
        assert!(matches!(
            r.handle(Event::ResponseHead { id: 11, status: 503, retry_after_s: None, now_ms: 1_000 }),
            Action::Deliver(_)
        ));
        // Ten seconds on, the window has moved and failing over works again.
        failing_over(&mut r, 12, 11_000);
    }
}
