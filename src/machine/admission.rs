//! Admission: what a client request is refused for (geofence, auth, bad
//! input, no route, residency), or the chain of nodes it may go to, with
//! the model each is asked for, and where its answer is cached.

use origin_fallback::{Candidate, Strategy, canary_draw, idempotent, order_candidates};

use super::{Exchange, Router, delivery_explain};
use std::net::IpAddr;

use crate::auth::{KeyRefusal, Principal, key_digest, presented_key};
use crate::error::RouterError;
use crate::facts::{
    BodyFacts, Endpoint, RequestFacts, parse_body, percent_decoded, request_facts, response_id_of_path,
    untag_response_id,
};
use crate::geo::{Country, JurisdictionId, country_label, permits};
use crate::hop::{for_each_connection_token, never_forwarded};
use crate::limits::{Limited, Refusal};
use crate::model::{ModelChoice, Reached, Size, choose_model, serves, size_unscored};
use crate::wire::Header;
use crate::wire::{
    Action, BearerTokenRef, BodyRef, CacheFill, CacheLookup, CacheStatus, Explain, Fleet, HeaderRef, Notice, RateLimit,
    RequestRef, RuleRef,
};

/// Salts the request's `random` for placing a difficulty score among equal ones.
const TIE_SALT: u64 = 0x7469_6573_2d61_7574;

/// The lower-case names of the client headers an origin must not see beyond
/// those it never sees ([`never_forwarded`]): the ones the client's
/// `Connection` header names. Usually none (a bare `keep-alive` names only a
/// hop-by-hop header), and then nothing is allocated.
pub(super) fn unforwardable(headers: &[HeaderRef<'_>]) -> Vec<String> {
    let mut names = Vec::new();
    for_each_connection_token(named(headers, "connection"), |t| {
        if !never_forwarded(t) {
            names.push(t.to_ascii_lowercase());
        }
    });
    if names.len() > 1 {
        crate::order::sort(&mut names);
        names.dedup();
    }
    names
}

impl Router {
    pub(super) fn on_request(&mut self, request: RequestRef<'_>) -> Action {
        let RequestRef {
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
        } = request;
        let country = country.and_then(Country::parse);
        let refuse = |e: RouterError, label: &str| refusal(&e, label, country, id);
        if let Err(geo) = self.config.geofence.check(country) {
            return refuse(RouterError::Geofenced(geo.to_string()), "geofence");
        }
        let auth = &self.config.auth;
        let address = || client.and_then(|c| c.parse::<IpAddr>().ok());
        // A JWT the host read stands in for a key.
        let key = match token {
            Some(_) => None,
            None => {
                key_sha256.or_else(|| presented_key_of(&headers).map(key_digest)).and_then(|d| auth.identify_digest(&d))
            }
        };
        let principal = match (token, key) {
            (Some(BearerTokenRef::Refused(why)), _) => {
                return refuse(RouterError::KeyRefused(format!("the bearer token was refused: {why}")), "auth");
            }
            (Some(BearerTokenRef::Valid { tenant, tier }), _) => {
                let tier = tier.or_else(|| auth.tenants.get(tenant)?.tier.as_deref()).unwrap_or("default");
                let principal = Principal::new(tier, tenant);
                if !auth.tenant_admits(&principal.tenant, address()) {
                    let why = "this tenant's requests are not accepted from the address this request comes from";
                    return refuse(RouterError::Forbidden(why.into()), "auth");
                }
                principal
            }
            (None, Some(k)) => match auth.admits(k, address(), now_ms) {
                Ok(()) => k.principal.clone(),
                Err(KeyRefusal::Expired(_)) => {
                    let why = "this API key has expired (its `not_after` has passed): use the key that replaces it";
                    return refuse(RouterError::KeyRefused(why.into()), "auth");
                }
                Err(KeyRefusal::AddressNotAllowed) => {
                    let why = "this API key is not accepted from the address this request comes from";
                    return refuse(RouterError::Forbidden(why.into()), "auth");
                }
            },
            (None, None) if auth.required => return refuse(RouterError::Unauthorized, "auth"),
            (None, None) => Principal::anonymous(),
        };
        let limited = auth.limited(key, &principal.tenant);
        let tenant = principal.tenant.clone();
        let jurisdiction = self.config.residency.jurisdiction_of(country);
        let endpoint = Endpoint::classify(method, target);
        if endpoint == Endpoint::Models {
            return self.models(target, country, id);
        }

        let mut placement = None;
        let (rule, chain, estimated_tokens, fill) = if endpoint == Endpoint::ResponseById {
            // The response object lives on the node that made it: only there.
            let held = response_id_of_path(target).ok_or_else(|| self.unheld(None));
            let node = match held.and_then(|tagged| self.holder(tagged)) {
                Ok(node) => node,
                Err(e) => return refuse(e, "affinity"),
            };
            match self.residency_filter(vec![(node, ModelChoice::Keep)], jurisdiction) {
                Ok(chain) => (RuleRef::Affinity, chain, 0, None),
                Err(e) => return refuse(e, "affinity"),
            }
        } else if !endpoint.is_api() {
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
                let detail = "the host did not buffer an API request body".to_string();
                self.notices.push(Notice::Fault { id, detail: detail.clone() });
                return refuse(RouterError::Internal(detail), "-");
            };
            let facts = match self.facts(endpoint, bytes, body_facts, &headers, country, principal) {
                Ok(f) => f,
                Err(e) => return refuse(e, "-"),
            };
            // A continuation goes to the node holding what it continues; an
            // id without the router's tag was not handed out here, and is
            // routed like any request.
            let held = facts
                .previous_response_id
                .as_deref()
                .filter(|p| endpoint == Endpoint::Responses && untag_response_id(p).is_some());
            let (rule, chain, rule_ttl) = match held.map(|tagged| self.holder(tagged)) {
                Some(Ok(n)) => {
                    let node = &self.config.nodes[n];
                    let model = match choose_model(node, &facts, Reached::Default) {
                        ModelChoice::Unsuitable => ModelChoice::Keep,
                        m => m,
                    };
                    (RuleRef::Affinity, vec![(n, model)], None)
                }
                Some(Err(e)) => return refuse(e, "affinity"),
                None => self.plan(&facts, random),
            };
            let mut chain = match self.residency_filter(chain, jurisdiction) {
                Ok(c) => c,
                Err(e) => return refuse(e, self.config.rule_label(rule)),
            };
            placement = self.size_chain(&mut chain, &facts, bytes, random);
            // A response object is state on its node (`store`), and its id
            // is the client's handle on it: an answer from the cache would
            // hand out one made for another request.
            let fill = if endpoint == Endpoint::Responses {
                None
            } else {
                self.cache_fill(method, target, bytes, &headers, &facts, &chain, rule_ttl, &tenant)
            };
            (rule, chain, facts.estimated_tokens, fill)
        };

        // Limits are reserved last: a request refused for anything else
        // takes nothing from them.
        let token_limited = limited.iter().any(|l| l.rates.tokens_per_minute.is_some());
        let (limited, ratelimit) = match self.limit(limited, fleet, estimated_tokens, now_ms) {
            Ok(admitted) => admitted,
            Err((why, headers)) => {
                let label = self.config.rule_label(rule);
                let extra = Explain { ratelimit: headers, ..Explain::router(label, 0, country_label(country)) };
                let (status, headers, body) = RouterError::RateLimited(why).to_response(id, extra.headers());
                return Action::Respond { status, headers, body };
            }
        };
        // Counted only now: a request refused on the way shapes nobody's share.
        if let (Some((p, true)), Some(calibrator)) = (placement, self.calibrator.as_mut()) {
            calibrator.count(p.score);
        }
        let fill_for = chain.first().map_or((usize::MAX, None), |&(node, ref choice)| (node, choice.rewrite()));
        let exchange = Exchange {
            unforwardable: unforwardable(&headers),
            chain,
            next: 0,
            holding: None,
            rewritten_model: None,
            difficulty: placement.map(|(p, _)| crate::wire::Difficulty::from(p)),
            sized: false,
            attempts: 0,
            rule,
            country,
            tenant,
            estimated_tokens,
            limited,
            ratelimit,
            token_limited,
            reserved: 0.0,
            sent_ms: now_ms,
            last_activity_ms: now_ms,
            failures: Vec::new(),
            skipped_statuses: Vec::new(),
            passed_over: Vec::new(),
            status: None,
            body_failed: false,
            retry_denied: false,
            body_kept: matches!(body, BodyRef::Buffered(_)),
            repeatable: endpoint.is_api() || idempotent(method),
            no_retry: None,
            panic: false,
            cache: if fill.is_some() { CacheStatus::Miss } else { CacheStatus::Bypass },
            fill: fill.as_ref().map(|(fill, _)| fill.clone()),
            fill_for,
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

    /// The rate limits of a caller with `limited` scopes and a request of
    /// `tokens`: what the fleet's store said (`fleet`), or the router's own
    /// count, alone (no store) or on its share of each limit (the store is
    /// unreachable). Admitted: the scopes to settle locally, and the
    /// headers; refused: why, and the headers.
    #[allow(clippy::type_complexity)]
    fn limit(
        &mut self,
        limited: Vec<Limited>,
        fleet: Option<Fleet>,
        tokens: u64,
        now_ms: u64,
    ) -> Result<(Vec<Limited>, RateLimit), (Refusal, RateLimit)> {
        if limited.is_empty() {
            return Ok((limited, RateLimit::default()));
        }
        let limited = match fleet {
            // The store counted it: nothing is settled here.
            Some(Fleet::Admitted(headers)) => return Ok((Vec::new(), headers)),
            Some(Fleet::Refused { scope, requests, limit, requested, retry_after_ms, ratelimit }) => {
                let label = limited.get(usize::from(scope)).map_or_else(|| "caller".into(), |l| l.label.clone());
                return Err((Refusal { label, requests, limit, requested, retry_after_ms }, ratelimit));
            }
            Some(Fleet::Unreachable) => {
                let share = self.config.state.local_share.get();
                limited.into_iter().map(|l| Limited { rates: l.rates.share(share), ..l }).collect()
            }
            None => limited,
        };
        let (verdict, headers) = self.limiter.admit(&limited, tokens, now_ms);
        verdict.map(|()| (limited, headers)).map_err(|why| (why, headers))
    }

    /// The node a tagged response id names, or why there is none.
    fn holder(&self, tagged: &str) -> Result<usize, RouterError> {
        let (node, _) = untag_response_id(tagged).ok_or_else(|| self.unheld(Some(tagged)))?;
        let Some(n) = self.config.node_index(node) else {
            let why = format!("the response `{tagged}` was made by node `{node}`, which this router no longer has");
            return Err(RouterError::NotFound(why));
        };
        // Only a node that serves response objects holds one.
        if !self.config.nodes[n].api.serves(Endpoint::Responses) {
            let api = self.config.nodes[n].api.as_str();
            let why = format!("node `{node}` speaks the `{api}` API, which holds no response objects");
            return Err(RouterError::NotFound(why));
        }
        Ok(n)
    }

    fn unheld(&self, id: Option<&str>) -> RouterError {
        let id = id.map(|i| format!(" `{i}`")).unwrap_or_default();
        RouterError::NotFound(format!(
            "the response{id} is not one this router handed out: its ids end in `~<node>`, naming the node that holds it"
        ))
    }

    /// `GET /v1/models` (the models of every node, and `auto`, in OpenAI's
    /// list shape) and `GET /v1/models/{model}`.
    fn models(&self, target: &str, country: Option<Country>, id: u64) -> Action {
        let label = "models";
        let path = target.split('?').next().unwrap_or_default().trim_end_matches('/');
        let mut owners: Vec<(&str, &str)> = Vec::new();
        for n in &self.config.nodes {
            for m in &n.models {
                if !owners.iter().any(|(known, _)| known == m) {
                    owners.push((m, n.provider.as_deref().unwrap_or(n.id.as_str())));
                }
            }
        }
        owners.push((crate::model::AUTO, "edge-router"));
        let object = |(model, owner): (&str, &str)| serde_json::json!({"id": model, "object": "model", "created": 0, "owned_by": owner});
        let body = match path.strip_prefix("/v1/models/").map(percent_decoded) {
            None => serde_json::json!({"object": "list", "data": owners.into_iter().map(object).collect::<Vec<_>>()}),
            Some(wanted) => match owners.into_iter().find(|(m, _)| *m == wanted) {
                Some(found) => object(found),
                None => {
                    let e = RouterError::NotFound(format!("no node of this router serves the model `{wanted}`"));
                    return refusal(&e, label, country, id);
                }
            },
        };
        let mut headers = vec![
            Header::new("content-type", "application/json"),
            Header::new(crate::error::headers::REQUEST_ID, &crate::error::request_id_text(id)),
        ];
        headers.extend(Explain::router(label, 0, country_label(country)).headers());
        Action::Respond { status: 200, headers, body: serde_json::to_vec(&body).unwrap_or_default() }
    }

    /// Where the answer to an AI request is cached, and whether the client
    /// asked to refresh it (skip the lookup); `None` when the cache is
    /// bypassed. The key's model is the one the first node of the chain
    /// would be asked for.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cache_fill(
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
        let model = match choice.rewrite() {
            Some(m) => self.config.nodes[*first].models[m].as_str(),
            None => facts.model.as_deref().unwrap_or_default(),
        };
        let partition = if cfg.shared { Partition::Shared } else { Partition::Tenant(tenant) };
        let key = ai_key(method, target, model, &value, partition);
        Some((CacheFill { key, ttl_s, estimated_tokens: facts.estimated_tokens, http: false }, refresh))
    }

    pub(super) fn facts(
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

    /// Resolves the chain's [`ModelChoice::BySize`] entries: one size for
    /// the request, decided once, from its tokens or its difficulty score
    /// (`random` places it among equal scores). The score's placement, when
    /// one was needed, and whether it is to be counted among the recent
    /// scores once the request is admitted: the request's own choice
    /// (`auto`, or its first node's), not only its fallbacks'.
    fn size_chain(
        &mut self,
        chain: &mut [(usize, ModelChoice)],
        facts: &RequestFacts,
        body: &[u8],
        random: u64,
    ) -> Option<(crate::difficulty::Placement, bool)> {
        if !chain.iter().any(|(_, m)| *m == ModelChoice::BySize) {
            return None;
        }
        let routing = &self.config.model_routing;
        let mut placed = None;
        let size = match size_unscored(facts, routing) {
            Some(size) => size,
            None => {
                let scorer = crate::difficulty::Scorer::trained();
                // `facts` read the body, so it is JSON; a shape with no text to read gets the small model, unscored.
                match crate::difficulty::prompt_of(body) {
                    None => Size::Small,
                    Some(text) => {
                        let calibrator = self
                            .calibrator
                            .get_or_insert_with(|| crate::difficulty::Calibrator::seeded(scorer.quantiles()));
                        // Salted: canaries and weights draw on `random` too, and ties need not follow them.
                        let placement = calibrator.rank(scorer.score(&text), origin_fallback::mix64(random ^ TIE_SALT));
                        let own = facts.model.as_deref() == Some(crate::model::AUTO)
                            || chain.first().is_some_and(|(_, m)| *m == ModelChoice::BySize);
                        placed = Some((placement, own));
                        let share = routing.large_share.unwrap_or(crate::config::DEFAULT_LARGE_SHARE);
                        if placement.large(share) { Size::Large } else { Size::Small }
                    }
                }
            }
        };
        for (node, choice) in chain.iter_mut() {
            *choice = choice.clone().sized(&self.config.nodes[*node], size);
        }
        placed
    }

    /// Picks the rule (or default strategy) and orders its nodes. A rule's
    /// canary goes first for its share of requests and is left out of the rest.
    #[allow(clippy::type_complexity)]
    pub(super) fn plan(
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
            // A node whose API lacks the endpoint (embeddings at Anthropic) is passed over.
            .filter(|&(n, _)| cfg.nodes[n].api.serves(facts.endpoint))
            .map(|(n, reached)| (n, choose_model(&cfg.nodes[n], facts, reached)))
            .filter(|(_, m)| *m != ModelChoice::Unsuitable)
            .collect();
        (label, chain, rule.and_then(|r| r.cache_ttl))
    }

    pub(super) fn order(&self, strategy: Strategy, nodes: &[usize], random: u64) -> Vec<usize> {
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
    pub(super) fn residency_filter(
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
}

pub(super) fn presented_key_of<'a>(headers: &[HeaderRef<'a>]) -> Option<&'a [u8]> {
    presented_key(headers.iter().map(|h| (h.name, h.value)))
}

/// The values of request header `name`, which must be one of
/// [`READ_HEADERS`](crate::wire::READ_HEADERS): a host may send only those.
pub(super) fn named<'h, 'a>(headers: &'h [HeaderRef<'a>], name: &'static str) -> impl Iterator<Item = &'a [u8]> + 'h {
    debug_assert!(crate::wire::READ_HEADERS.contains(&name), "the router reads `{name}`: add it to READ_HEADERS");
    headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

pub(super) fn header_str<'a>(headers: &[HeaderRef<'a>], name: &'static str) -> Option<&'a str> {
    named(headers, name).next().and_then(|v| std::str::from_utf8(v).ok())
}

/// The router's own answer to a request it will not forward.
pub(super) fn refusal(error: &RouterError, label: &str, country: Option<Country>, id: u64) -> Action {
    let extra = Explain::router(label, 0, country_label(country)).headers();
    let (status, headers, body) = error.to_response(id, extra);
    Action::Respond { status, headers, body }
}
