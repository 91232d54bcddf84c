//! The action loop: the router's actions carried out until the client has
//! an answer. Each forward sends the request the exchange builds; each
//! answer's head goes to the router (now, if it may lead to a fallback, or
//! with the next call otherwise) and the exchange's plan says what the
//! client gets.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::fleet::Budget;
use bytes::Bytes;
use edge_router::config::Api;
use edge_router::error::request_id_text;
use edge_router::facts::Endpoint;
use edge_router::geo::Country;
use edge_router::wire::{Action, CacheStatus, Event, Explain, Failure, Forward, Restore, Spend};
use exchange::action::{Step, step};
use exchange::answer::host_error;
use exchange::head::{Attempt, Plan, Stale, decide, head_event, strip_hop_by_hop};
use exchange::intake::{Capped, Upload, path_and_query};
use exchange::provider::{adapt_head, signature};
use exchange::upstream::{Shielded, outbound, upstream_headers};
use http::{Request, Response};
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use origin_fallback::RetryType;

use super::body::{FinishOnDrop, Stream, deliver};
use super::call::Decided;
use super::ingress::own;
use super::lookup::serve;
use super::{Generation, Shared, now_ms};
use crate::cache::{Cached, FillGuard};
use crate::origins::{Lease, ProxyBody};

/// A body of bytes already in memory.
pub(super) fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// A request on its way to an origin.
pub(super) struct Pending {
    pub(super) shared: Arc<Shared>,
    /// The config the request runs under (a reload's, once the router
    /// answers it under that one).
    pub(super) generation: Arc<Generation>,
    pub(super) worker: usize,
    /// Passes an origin's interim (1xx) responses on, when the client may get them.
    pub(super) interim: Option<interim::Interim>,
    pub(super) id: u64,
    pub(super) guard: FinishOnDrop,
    pub(super) parts: http::request::Parts,
    /// The buffered body, kept for fallbacks and model rewrites.
    pub(super) original: Bytes,
    /// The body still in the connection (passthrough paths).
    pub(super) stream: Option<Incoming>,
    pub(super) country: Option<Country>,
    pub(super) endpoint: Endpoint,
    /// The model the client asked for (for `model_routing.restore_requested_model`).
    pub(super) requested_model: Option<String>,
    /// Held while this request fills its cache key; dropped when that ends.
    pub(super) filling: Option<FillGuard>,
    /// The cached entry this request revalidates, if it does.
    pub(super) stale: Option<Stale<Arc<Cached>>>,
    /// How the streamed body's upload to the origin stands (see
    /// `exchange::intake::Capped`).
    pub(super) upload: Option<Upload>,
    /// What the last attempt's node policy (`pii`) found and did, and the
    /// placeholders to restore in its answer.
    pub(super) pii: Option<Shielded>,
    /// What the last attempt's node policy blocks: the request must not go.
    pub(super) blocked: Option<Shielded>,
}

impl Pending {
    /// Carries out the router's actions until there is a response.
    pub(super) async fn route(mut self, mut decided: Decided) -> Response<ProxyBody> {
        let shared = self.shared.clone();
        let id = self.id;
        loop {
            // A reload came since the request's last step: the module now
            // names nodes by the new config's places.
            if decided.generation != self.generation.number && decided.generation != u64::MAX {
                self.generation = shared.generation();
            }
            let in_step = decided.generation == self.generation.number;
            let claim = decided.claim.take();
            let forward = match step(decided.action, &mut self.stale, self.country, id) {
                Step::Answer(response) => return own(response),
                Step::ServeStale { entry, explain } => return self.serve_stale(&entry, explain),
                Step::Forward(forward) => forward,
                Step::Fault { response, detail } => {
                    tracing::error!("request {}: {detail}", request_id_text(id));
                    return own(response);
                }
            };
            let found = self.generation.node_ids.get(forward.node as usize).cloned().filter(|_| in_step);
            let (Some(node), Some(explained)) = (found, forward.explain(&self.generation.config, self.country)) else {
                // A node this host does not know: not expected, since a module
                // that reads the config otherwise is refused at start and at
                // reload, and the host takes up a reloaded config with the
                // module. (Two reloads between a module call and the next
                // line could do it.) Treated as the node being unreachable.
                tracing::error!(
                    "the router module named node #{}, which this host's config does not have",
                    forward.node
                );
                let failed =
                    Event::OriginFailed { id, failure: Failure::Connect, retry: RetryType::NotSent, now_ms: now_ms() };
                decided = shared.decide(&failed);
                continue;
            };
            // A budgeted node's share of its daily budget is reserved across the fleet first.
            if let (Some(fleet), Some(claim)) = (&shared.fleet, claim.filter(|_| in_step)) {
                match fleet.reserve_budget(id, &claim, now_ms()).await {
                    Budget::Refused(spent) => {
                        decided = shared.decide(&Event::BudgetRefused { id, spent, now_ms: now_ms() });
                        continue;
                    }
                    Budget::Granted(Some(spent)) => {
                        let spent = vec![Spend { node: claim.node, day: claim.day, spent }];
                        shared.defer(&Event::Restore(Restore { spent, ..Restore::default() }));
                    }
                    Budget::Granted(None) => {}
                }
            }
            let sent_ms = now_ms();
            let sent = self.send(&forward).await;
            if let Some(found) = self.blocked.take() {
                // Refused for what it holds; the router hears that the exchange ended.
                return own(found.refused(self.country, id));
            }
            let (mut resp, lease) = match sent {
                Ok(answered) => answered,
                Err((failure, retry)) => {
                    // The client's fault, not the node's (its streamed body
                    // went over the limit, broke off, or stopped coming): the
                    // router hears only that the exchange ended (the guard's
                    // `Finished`).
                    let limit = self.generation.config.server.max_body_bytes;
                    let within = Duration::from_millis(forward.first_byte_timeout_ms);
                    let timed_out = matches!(failure, Failure::Timeout);
                    if let Some(fault) = self.upload.as_ref().and_then(|u| u.fault(limit, timed_out, within)) {
                        return own(host_error(&fault, self.country, id));
                    }
                    tracing::debug!(node = %node, attempt = forward.attempt, "origin failed: {}", failure.describe());
                    decided = shared.decide(&Event::OriginFailed { id, failure, retry, now_ms: now_ms() });
                    continue;
                }
            };
            let api = self.generation.config.node_at(forward.node).map_or(Api::OpenAi, |n| n.api);
            adapt_head(api, &mut resp);
            // A response without a body (HEAD, 204, 304, length 0) frees its connection now.
            let lease = if resp.body().is_end_stream() {
                lease.release();
                None
            } else {
                Some(lease)
            };
            let head = head_event(id, resp.status(), resp.headers(), now_ms());
            let explain = if forward.asks_about(resp.status().as_u16()) {
                match shared.decide(&head) {
                    Decided { action: Action::Deliver(explain), .. } => explain,
                    other => {
                        decided = other;
                        continue;
                    }
                }
            } else {
                // The router's answer is known: deliver now, tell it later.
                shared.defer(&head);
                explained
            };
            return self.answer(resp, lease, &forward, explain, node, sent_ms);
        }
    }

    /// What the client gets once a node answered and the router said to
    /// deliver: the answer (kept for the cache if it may be), or a stale
    /// entry the answer revalidated or failed to replace.
    fn answer(
        mut self,
        resp: Response<Incoming>,
        lease: Option<Lease>,
        forward: &Forward,
        explain: Explain,
        node: Arc<str>,
        sent_ms: u64,
    ) -> Response<ProxyBody> {
        let shared = self.shared.clone();
        let generation = &self.generation;
        let now = now_ms();
        // Only here: looking the node's pool up for every response would be wasted.
        let node_has_key = forward.fill.as_ref().is_some_and(|f| f.http)
            && generation.origins.pool(self.worker, forward.node).is_some_and(|p| p.has_key());
        let attempt = Attempt {
            request: &self.parts,
            endpoint: self.endpoint,
            api: generation.config.node_at(forward.node).map_or(Api::OpenAi, |n| n.api),
            node_has_key,
            sent_ms,
            restore_model: self.requested_model.as_deref(),
            max_entry: shared.cache.max_entry(),
            restore_pii: self.pii.as_ref().and_then(|p| p.vault.clone()),
        };
        let found = self.pii.as_ref().map(Shielded::record);
        let stale = self.stale.take();
        let decision = decide(&attempt, forward, stale, &explain, resp.status(), resp.headers(), now);
        for key in decision.invalidate {
            shared.cache.remove(&key);
        }
        let mut response = match decision.plan {
            Plan::Revalidated { fresh, stale, keep } => {
                let cached = Arc::new(Cached { entry: fresh, body: stale.body.clone() });
                let age = cached.entry.age_s(now);
                let response = serve(&cached, &explain, CacheStatus::Revalidated, age, &self.parts);
                // Kept again, or, when the 304 forbids keeping it, dropped.
                match (keep, &forward.fill) {
                    (true, Some(fill)) => shared.cache.put_shared(fill.key.clone(), cached),
                    (false, Some(fill)) => shared.cache.remove(&fill.key),
                    (_, None) => {}
                }
                response
            }
            Plan::ServeStale(stale) => self.serve_stale(&stale, explain),
            Plan::Deliver(delivery) => deliver(
                resp,
                Stream {
                    explain: &explain,
                    forward,
                    delivery,
                    node,
                    sent_ms,
                    cut_off: generation.cut_off(forward.node),
                    lease,
                    filling: self.filling.take(),
                    cache: shared.cache.clone(),
                    usage_wanted: self.endpoint.is_api() && shared.signals.wanted(),
                },
                self.guard,
            ),
        };
        if let Some(found) = found {
            response.extensions_mut().insert(found);
        }
        response
    }

    /// Answers with the stale entry (`stale-if-error`).
    fn serve_stale(self, cached: &Cached, explain: Explain) -> Response<ProxyBody> {
        let age = cached.entry.age_s(now_ms());
        serve(cached, &explain, CacheStatus::Stale, age, &self.parts)
    }

    /// Sends the request for `forward` and waits for the answer's head, within
    /// the node's `first_byte` limit.
    async fn send(&mut self, forward: &Forward) -> Result<(Response<Incoming>, Lease), (Failure, RetryType)> {
        // A new attempt: what an earlier one found was for its own node.
        self.pii = None;
        let generation = &self.generation;
        let unsent = (Failure::Connect, RetryType::NotSent);
        let Some(pool) = generation.origins.pool(self.worker, forward.node) else {
            return Err(unsent);
        };
        let node = generation.config.node_at(forward.node).ok_or(unsent)?;
        let out = outbound(
            forward,
            node,
            path_and_query(&self.parts.uri),
            &self.original,
            self.stream.is_some(),
            &generation.config.pii,
        );
        let out = match out {
            Ok(mut out) => {
                self.pii = out.pii.take();
                out
            }
            Err(found) => {
                self.blocked = Some(found);
                return Err(unsent);
            }
        };
        let target = match &out.target {
            Cow::Borrowed(_) => pool.target(&self.parts.uri),
            Cow::Owned(path) => path.parse::<http::Uri>().map_err(http::Error::from).and_then(|u| pool.target(&u)),
        }
        .map_err(|_| unsent)?;
        let conditional = self.stale.as_ref().map(|s| edge_cache::http::conditional_headers(&s.entry.entry.headers));
        let mut headers = upstream_headers(
            &self.parts.headers,
            forward,
            generation.config.server.country_header.as_deref(),
            conditional.as_deref().unwrap_or_default(),
        );
        for (name, value) in out.headers {
            headers.insert(name, value);
        }
        // A Bedrock node's request is signed over what is sent: the URL and body.
        let signed = signature(
            node,
            generation.origins.aws(&node.id),
            &out.target,
            out.body.as_deref().unwrap_or_default(),
            now_ms(),
        );
        match signed {
            Ok(fields) => {
                for (name, value) in fields {
                    headers.insert(name, value);
                }
            }
            Err(why) => {
                tracing::warn!(node = %node.id, "{why}");
                return Err(unsent);
            }
        }
        // The client's streamed body can be taken only once.
        let body: ProxyBody = match out.body {
            Some(bytes) => full(bytes),
            None => match self.stream.take() {
                Some(incoming) => {
                    let capped = Capped::new(incoming, generation.config.server.max_body_bytes);
                    self.upload = Some(capped.upload());
                    capped.boxed()
                }
                None => full(Bytes::new()),
            },
        };
        let mut req =
            Request::builder().method(self.parts.method.clone()).uri(target).body(body).map_err(|_| unsent)?;
        *req.headers_mut() = headers;
        if let Some(interim) = &self.interim {
            interim.arm();
            let to_client = interim.clone();
            hyper::ext::on_informational(&mut req, move |res| {
                let mut headers = res.headers().clone();
                strip_hop_by_hop(&mut headers);
                to_client.send(res.status(), &headers);
            });
        }
        // A timeout: the request went out (or was going), and no head came.
        let sent = tokio::time::timeout(Duration::from_millis(forward.first_byte_timeout_ms), pool.send(req))
            .await
            .unwrap_or(Err((Failure::Timeout, RetryType::Sent)));
        if let Some(interim) = &self.interim {
            interim.disarm();
        }
        sent
    }
}
