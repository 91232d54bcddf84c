//! The action loop on the Worker: forwarding to origins with `fetch`, and
//! what the client gets of their answers, as the exchange plans it.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use edge_router::config::Api;
use edge_router::error::{RouterError, request_id_text};
use edge_router::facts::Endpoint;
use edge_router::geo::Country;
use edge_router::wire::{Action, CacheStatus, Event, Explain, Failure, Forward};
use exchange::action::{Step, step};
use exchange::answer::host_error;
use exchange::entry::Cached;
use exchange::head::{Attempt, Plan, Stale, decide, head_event};
use exchange::intake::path_and_query;
use exchange::provider::bedrock::AwsCredentials;
use exchange::provider::{adapt_head, credential as credential_for, signature};
use exchange::upstream::{Shielded, outbound, upstream_headers};
use futures_util::future::{Either, select};
use origin_fallback::RetryType;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Delay, Env};

use crate::body::stream;
use crate::cache::{self, MAX_ENTRY};
use crate::convert::{Answer, fixed, http_response, js_headers};
use crate::later::{Finish, Later};
use crate::now_ms;
use crate::state::Generation;
use crate::stream::JsBody;

/// What became of a request sent to a node.
enum Sent {
    Answered(http::Response<JsBody>),
    Failed(Failure, RetryType),
    /// `fetch` refused the request itself.
    Unsendable(String),
    /// The node's `pii` policy blocks what the request holds.
    Blocked(Shielded),
}

/// A request on its way to origins.
pub struct Exchange {
    pub generation: Rc<Generation>,
    pub env: Env,
    pub later: Later,
    pub id: u64,
    pub parts: http::request::Parts,
    pub endpoint: Endpoint,
    /// The buffered body, kept for fallbacks and model rewrites.
    pub original: Bytes,
    /// The body still in the connection (passthrough paths).
    pub stream: Option<worker::web_sys::ReadableStream>,
    pub country: Option<Country>,
    /// The model the client asked for (for `model_routing.restore_requested_model`).
    pub requested_model: Option<String>,
    pub finish: Option<Finish>,
    pub stale: Option<Stale<Cached>>,
    /// Whether the last request sent carried the node's key (what RFC 9111
    /// storability asks of a shared cache, as on the edge box).
    pub sent_key: bool,
    /// Look for `usage` in every API answer, for the access log.
    pub usage_wanted: bool,
    /// What the last attempt's node policy (`pii`) found and replaced.
    pub pii: Option<Shielded>,
}

impl Exchange {
    /// The cache answered: the exchange is over.
    pub fn cache_hit(mut self) {
        if let Some(finish) = self.finish.take() {
            finish.disarm();
        }
        let hit = Event::CacheHit { id: self.id, now_ms: now_ms() };
        crate::ratelimit::ended(&self.env, &self.later, &hit);
        self.generation.handle(hit);
    }

    /// Carries out the router's actions until there is a response.
    pub async fn route(mut self, mut action: Action) -> Answer {
        let id = self.id;
        loop {
            let forward = match step(action, &mut self.stale, self.country, id) {
                Step::Answer(response) => return fixed(response),
                Step::ServeStale { entry, explain } => return self.serve_stale(&entry, &explain),
                Step::Forward(forward) => forward,
                Step::Fault { response, detail } => {
                    worker::console_error!("edge-router: request {}: {detail}", request_id_text(id));
                    return fixed(response);
                }
            };
            // Reservations released so far are settled before a new one is made.
            crate::budget::settle(&self.generation, &self.env, &self.later);
            if let Some(refused) = crate::budget::reserve(&self.generation, &self.env, id, &forward).await {
                action = refused;
                continue;
            }
            let sent_ms = now_ms();
            action = match self.send(&forward).await {
                Sent::Blocked(found) => {
                    // Refused for what it holds; the router hears that the exchange ended.
                    return fixed(found.refused(self.country, id));
                }
                Sent::Unsendable(why) => {
                    // The platform's words go to the log, not to the client.
                    worker::console_warn!("edge-router: request {}: fetch refused it: {why}", request_id_text(id));
                    let e = RouterError::BadRequest(
                        "the request cannot be forwarded from a Worker: fetch does not send it (a GET or HEAD \
                         with a body, or a method such as TRACE)"
                            .into(),
                    );
                    return fixed(host_error(&e, self.country, id));
                }
                Sent::Answered(mut resp) => {
                    let api =
                        self.generation.router.borrow().config().node_at(forward.node).map_or(Api::OpenAi, |n| n.api);
                    adapt_head(api, &mut resp);
                    let head = head_event(id, resp.status(), resp.headers(), now_ms());
                    match self.generation.handle(head) {
                        Action::Deliver(explain) => return self.answer(resp, &forward, explain, sent_ms),
                        other => other,
                    }
                }
                Sent::Failed(failure, retry) => {
                    self.generation.handle(Event::OriginFailed { id, failure, retry, now_ms: now_ms() })
                }
            };
        }
    }

    /// What the client gets once a node answered and the router said to
    /// deliver: the answer (kept for the cache if it may be), or a stale
    /// entry the answer revalidated or failed to replace.
    fn answer(mut self, resp: http::Response<JsBody>, forward: &Forward, explain: Explain, sent_ms: u64) -> Answer {
        let now = now_ms();
        let api = self.generation.router.borrow().config().node_at(forward.node).map_or(Api::OpenAi, |n| n.api);
        let attempt = Attempt {
            request: &self.parts,
            endpoint: self.endpoint,
            api,
            node_has_key: self.sent_key,
            sent_ms,
            restore_model: self.requested_model.as_deref(),
            max_entry: MAX_ENTRY,
            restore_pii: self.pii.as_ref().and_then(|p| p.vault.clone()),
        };
        let found = self.pii.as_ref().map(Shielded::record);
        let stale = self.stale.take();
        let decision = decide(&attempt, forward, stale, &explain, resp.status(), resp.headers(), now);
        if !decision.invalidate.is_empty() {
            self.later.run(cache::remove(decision.invalidate));
        }
        let mut response = match decision.plan {
            Plan::Revalidated { fresh, stale, keep } => {
                let stored = Cached { entry: fresh, body: stale.body };
                let age = stored.entry.age_s(now);
                let response = cache::serve(&stored, &explain, CacheStatus::Revalidated, age, &self.parts);
                // Kept again, or, when the 304 forbids keeping it, dropped.
                match (keep, &forward.fill) {
                    (true, Some(fill)) => self.later.run(cache::put(fill.key.clone(), stored)),
                    (false, Some(fill)) => self.later.run(cache::remove(vec![fill.key.clone()])),
                    (_, None) => {}
                }
                response
            }
            Plan::ServeStale(stale) => self.serve_stale(&stale, &explain),
            Plan::Deliver(delivery) => stream(
                resp,
                &self.parts.method,
                &explain,
                forward,
                delivery,
                sent_ms,
                self.finish.take(),
                &self.later,
                self.usage_wanted,
            ),
        };
        if let Some(found) = found {
            response.extensions_mut().insert(found);
        }
        response
    }

    /// Answers with the stale entry (`stale-if-error`).
    fn serve_stale(&self, stored: &Cached, explain: &Explain) -> Answer {
        cache::serve(stored, explain, CacheStatus::Stale, stored.entry.age_s(now_ms()), &self.parts)
    }

    /// Sends the request for `forward` and waits for the answer's head,
    /// within the node's `first_byte` limit.
    async fn send(&mut self, f: &Forward) -> Sent {
        let streamed = self.stream.is_some();
        let (country_header, node) = {
            let router = self.generation.router.borrow();
            let config = router.config();
            let target = path_and_query(&self.parts.uri);
            // A new attempt: what an earlier one found was for its own node.
            self.pii = None;
            let node = config.node_at(f.node).map(|n| {
                let mut out = match outbound(f, n, target, &self.original, streamed, &config.pii) {
                    Ok(out) => out,
                    Err(found) => return Err(found),
                };
                self.pii = out.pii.take();
                // A Bedrock node's request is signed over what is sent: the URL and body.
                let secret = |name: &str| self.env.secret(name).ok().map(|s| s.to_string());
                let aws = n.aws_credentials_env.as_ref().and_then(|names| AwsCredentials::read(names, secret));
                let body = out.body.as_deref().unwrap_or_default();
                let signed = signature(n, aws.as_ref(), &out.target, body, now_ms());
                Ok((n.id.clone(), n.url_for(&out.target), n.api_key_env.clone(), n.api, out.body, out.headers, signed))
            });
            (config.server.country_header.clone(), node)
        };
        // The router only forwards to nodes of its config.
        let (node, url, credential, api, out_body, out_headers, signed) = match node {
            Some(Ok(sending)) => sending,
            Some(Err(found)) => return Sent::Blocked(found),
            None => return Sent::Failed(Failure::Connect, RetryType::NotSent),
        };
        let signed = match signed {
            Ok(fields) => fields,
            Err(why) => {
                worker::console_error!("edge-router: {why}");
                return Sent::Failed(Failure::Connect, RetryType::NotSent);
            }
        };
        let conditional = self.stale.as_ref().map(|s| edge_cache::http::conditional_headers(&s.entry.entry.headers));
        let mut headers = upstream_headers(
            &self.parts.headers,
            f,
            country_header.as_deref(),
            conditional.as_deref().unwrap_or_default(),
        );
        for (name, value) in out_headers.into_iter().chain(signed) {
            headers.insert(name, value);
        }
        self.sent_key = false;
        if let Some(name) = &credential {
            match self.env.secret(name).ok().and_then(|secret| credential_for(api, &secret.to_string())) {
                Some((header, value)) => {
                    headers.insert(header, value);
                    self.sent_key = true;
                }
                // The name is configuration, never the value.
                None => worker::console_error!("edge-router: node {node} needs the secret {name}, which is not set"),
            }
        }
        let body: Option<JsValue> = match out_body {
            None => self.stream.take().map(Into::into),
            Some(bytes) if bytes.is_empty() && matches!(self.parts.method.as_str(), "GET" | "HEAD") => None,
            Some(bytes) => Some(worker::js_sys::Uint8Array::from(&bytes[..]).into()),
        };
        // web_sys directly: worker's own Method turns methods it does not
        // know into GET, and the edge box forwards any method.
        let init = worker::web_sys::RequestInit::new();
        init.set_method(self.parts.method.as_str());
        init.set_headers(&js_headers(&headers));
        if let Some(body) = &body {
            init.set_body(body);
        }
        init.set_redirect(worker::web_sys::RequestRedirect::Manual);
        let Ok(abort) = worker::web_sys::AbortController::new() else {
            return Sent::Unsendable("no AbortController".into());
        };
        init.set_signal(Some(&abort.signal()));
        let request = match worker::web_sys::Request::new_with_str_and_init(&url, &init) {
            Ok(request) => request,
            // The client's request is one fetch cannot send (a GET with a
            // body, TRACE…): not the node's fault.
            Err(e) => return Sent::Unsendable(format!("{e:?}")),
        };
        // The global fetch with the platform's request and response as they
        // are: `worker::Fetch` would wrap the request in another and read
        // more of the response (its `cf`, its `webSocket`), each a crossing.
        let global: worker::web_sys::WorkerGlobalScope = worker::js_sys::global().unchecked_into();
        let sent = JsFuture::from(global.fetch_with_request(&request));
        let limit = Box::pin(Delay::from(Duration::from_millis(f.first_byte_timeout_ms)));
        match select(sent, limit).await {
            Either::Left((Ok(resp), _)) => match resp.dyn_ref().and_then(http_response) {
                Some(resp) => Sent::Answered(resp),
                None => {
                    worker::console_warn!("edge-router: node {node} sent an answer that is not HTTP");
                    Sent::Failed(Failure::Reset, RetryType::Sent)
                }
            },
            // Workers do not say whether the connection was made, so the
            // request may have gone out: only a request that may be made
            // twice goes to another node.
            Either::Left((Err(e), _)) => {
                let e = worker::Error::from(e);
                worker::console_warn!("edge-router: node {node} failed: {e}");
                Sent::Failed(Failure::Connect, RetryType::Sent)
            }
            Either::Right(((), _)) => {
                abort.abort();
                Sent::Failed(Failure::Timeout, RetryType::Sent)
            }
        }
    }
}
