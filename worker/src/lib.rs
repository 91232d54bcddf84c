//! edge-router on Cloudflare Workers (built by worker-build from
//! `wrangler.toml`): a host that converts the platform's types to `http`
//! ones, does the I/O with Workers APIs (`fetch`, the Cache API, KV, a
//! Durable Object), and drives the same router and exchange the edge box
//! runs. It decides nothing itself.
//!
//! What differs from the edge box, and why, is in `docs/workers.md`:
//! - the client's country is `request.cf.country`, the only trusted source,
//!   and its address `CF-Connecting-IP` (Cloudflare overwrites a client's own);
//! - origin API keys are Worker secrets, named per node by `api_key_env`;
//! - the config is bundled at build time (the file `EDGE_ROUTER_CONFIG` in
//!   `wrangler.toml` names), and a config in the KV namespace `CONFIG` under
//!   the key `config` overrides it without a redeploy;
//! - health, breakers, capacity and latencies are per isolate; daily budgets
//!   are global, kept by the `BudgetLedger` Durable Object, and so are rate
//!   limits, kept by the `RateLimiter` Durable Object.
//!
//! - [`state`]: the isolate's router and where its config comes from.
//! - [`origin`]: the action loop: forwards with `fetch`, and the answers' plans.
//! - [`body`]: a streamed answer through the exchange's watchdog.
//! - [`cache`]: the edge cache on the Cache API.
//! - [`budget`]: daily budgets across every edge location.
//! - [`later`]: work after the response, and the end of an exchange.
//! - [`record`]: each request's access log line, written when its response is over.
//! - [`convert`]: `http` types to the platform's and back.
//! - [`stream`]: a JavaScript stream read from Rust.
#![cfg(target_arch = "wasm32")]
// A host: it reads the clock, calls fetch and uses the platform's bindings.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod body;
mod budget;
mod cache;
mod convert;
mod later;
mod origin;
mod ratelimit;
mod record;
mod state;
mod stream;

use bytes::Bytes;
use edge_router::error::{RouterError, request_id_text};
use edge_router::facts::Endpoint;
use edge_router::geo::Country;
use edge_router::wire::{Action, BodyRef, Event, RequestRef};
use exchange::answer::host_error;
use exchange::head::Stale;
use exchange::intake::{
    HostReads, Intake, body_limits, declared_length, host_reads, limited_request, path_and_query, read_limited,
    take_in, unreadable,
};
use worker::worker_sys::ext::RequestExt;
use worker::{Context, Delay, Env, event};

use cache::Looked;
use convert::{Answer, Body, fixed};
use futures_util::StreamExt;

pub use budget::BudgetLedger;
pub use ratelimit::RateLimiter;

/// Milliseconds since the Unix epoch (Workers advance it on I/O only).
fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// A uniformly random `u64` for the router's weighted choices (which need
/// spread, not secrecy): `Math.random` gives 53 bits, two of them fill it.
fn random() -> u64 {
    let half = || (worker::js_sys::Math::random() * 4_294_967_296.0) as u64;
    (half() << 32) | half()
}

/// The Worker's entry point. It takes the platform's request rather than an
/// `http` one: the head is converted here (`convert::request_head`), and the
/// body stays a JavaScript stream, read once or passed to `fetch` as it came
/// (an `http` request would wrap it in a Rust stream, and passing it on would
/// wrap that in a JavaScript one again, a crossing per chunk each way).
#[event(fetch)]
async fn fetch(req: worker::web_sys::Request, env: Env, ctx: Context) -> worker::Result<worker::web_sys::Response> {
    console_error_panic_hook::set_once();
    let country = req.cf().map(worker::Cf::from).and_then(|cf| cf.country()).as_deref().and_then(Country::parse);
    let mut recording = None;
    let answer = serve(req, &env, &ctx, country, &mut recording).await;
    let id = recording.as_ref().map_or(0, |r| r.begun.id);
    let answer = convert::whole_if_small(record::recorded(answer, recording)).await;
    convert::to_platform(answer).or_else(|e| {
        // The platform would not take the body (a stream it cannot read): logged, answered as ours.
        let detail = format!("the response could not be passed on: {e}");
        worker::console_error!("edge-router: request {}: {detail}", request_id_text(id));
        convert::to_platform(fixed(host_error(&RouterError::Internal(detail), country, id)))
    })
}

/// Reads a request body whole: at once when its length is declared (which
/// `check_declared` held to the limit: one read in JavaScript rather than
/// one per chunk), else chunk by chunk, refused as soon as it passes `limit`.
async fn read_body(req: &worker::web_sys::Request, declared: bool, limit: u64) -> Result<Bytes, RouterError> {
    let Some(stream) = req.body() else { return Ok(Bytes::new()) };
    if !declared {
        return read_limited(stream::JsBody::new(&stream), limit).await;
    }
    let read = worker::wasm_bindgen_futures::JsFuture::from(req.array_buffer().map_err(|_| unreadable())?);
    let buffer = read.await.map_err(|_| unreadable())?;
    Ok(Bytes::from(worker::js_sys::Uint8Array::new(&buffer).to_vec()))
}

/// A test hook: with the variable `EDGE_ROUTER_PANIC_PATH` set (never in a
/// deployment), a request for that path panics, so the tests can check a
/// panic is reported and answered with a JSON 500 (by `worker/entry.mjs`).
fn panic_hook_requested(env: &Env, path: &str) -> bool {
    state::vars(env).panic_path.as_deref() == Some(path)
}

/// A client request up to its answer; `recording` is the request's record
/// from when the router knows what the request is (unless the access log
/// is off, or does not sample it).
async fn serve(
    req: worker::web_sys::Request,
    env: &Env,
    ctx: &Context,
    country: Option<Country>,
    recording: &mut Option<record::Recording>,
) -> Answer {
    let id = state::next_id();
    let generation = match state::current(env).await {
        Ok(g) => g,
        Err(refused) => {
            // The details go to the log, not to clients.
            worker::console_error!("edge-router: request {}: no config is in force:\n{refused}", request_id_text(id));
            let e = RouterError::Internal("the Worker's config was refused".into());
            return fixed(host_error(&e, country, id));
        }
    };
    let Some(parts) = convert::request_head(&req) else {
        let e = RouterError::BadRequest("the request's method or URL is not HTTP".into());
        return fixed(host_error(&e, country, id));
    };
    if panic_hook_requested(env, parts.uri.path()) {
        panic!("edge-router: panic requested by EDGE_ROUTER_PANIC_PATH");
    }
    let target = path_and_query(&parts.uri);
    let endpoint = Endpoint::classify(parts.method.as_str(), target);
    *recording = record::Recording::start(&generation, id, &parts.method, target, endpoint);
    let limits = body_limits(generation.router.borrow().config());
    let declared = declared_length(&parts.headers).is_some();
    let read = |req, limit| read_body(req, declared, limit);
    let timer = |within| Delay::from(within);
    let (original, stream) = match take_in(endpoint, &parts.headers, limits, &req, read, timer).await {
        Ok(Intake::Whole(bytes)) => (Some(bytes), None),
        Ok(Intake::Streams(req)) => (None, req.body()),
        Err(e) => return fixed(host_error(&e, country, id)),
    };
    let HostReads { headers, key_sha256, body_facts, requested_model } =
        host_reads(generation.router.borrow().config(), &parts.headers, country, endpoint, original.as_deref(), None);
    if let Some(r) = recording.as_mut() {
        r.begun.read(generation.router.borrow().config(), endpoint, key_sha256.as_ref(), None, body_facts.as_ref());
    }
    // Rate limits are the tenant's limiter's, across every edge location.
    let (claim, timeout) = {
        let router = generation.router.borrow();
        let config = router.config();
        (limited_request(config, key_sha256.as_ref(), None, endpoint, body_facts.as_ref()), config.state.timeout.0)
    };
    let fleet = match claim {
        Some(claim) => Some(ratelimit::reserve(env, id, claim, timeout).await),
        None => None,
    };
    let action = generation.request(RequestRef {
        id,
        method: parts.method.as_str(),
        target,
        headers,
        country: country.as_ref().map(Country::as_str),
        // Cloudflare sets it, and overwrites a client's own.
        client: parts.headers.get("cf-connecting-ip").and_then(|v| v.to_str().ok()),
        body: original.as_deref().map_or(BodyRef::Streamed, BodyRef::Buffered),
        now_ms: now_ms(),
        random: random(),
        key_sha256,
        body_facts,
        token: None,
        fleet,
    });
    let later = later::Later::open(ctx);
    if fleet.is_some() {
        ratelimit::decided(env, &later, id, matches!(action, Action::Forward(_) | Action::Lookup(_)));
    }
    let mut exchange = origin::Exchange {
        generation: generation.clone(),
        env: env.clone(),
        later: later.clone(),
        id,
        parts,
        endpoint,
        original: original.unwrap_or_else(Bytes::new),
        stream,
        country,
        requested_model,
        finish: Some(later::Finish::new(
            later::Told { generation: generation.clone(), later: later.clone(), env: env.clone() },
            id,
        )),
        stale: None,
        sent_key: false,
        usage_wanted: recording.is_some() && endpoint.is_api(),
        pii: None,
    };
    let miss = || generation.handle(Event::CacheMiss { id, now_ms: now_ms() });
    let action = match action {
        Action::Lookup(lookup) => match cache::look_up(&lookup, &exchange.parts).await {
            Looked::Hit(hit) => {
                exchange.cache_hit();
                return hit;
            }
            Looked::Stale { response, stored } => {
                // stale-while-revalidate: the client gets the stale answer
                // now, and the same exchange revalidates it after.
                exchange.stale = Some(Stale { entry: stored, if_error: true });
                let action = miss();
                later.run(async move {
                    // Read to its end, so that the answer is stored.
                    if let Body::Watched(mut chunks) = exchange.route(action).await.into_body() {
                        while chunks.next().await.is_some() {}
                    }
                });
                return response;
            }
            Looked::Revalidate { stored, if_error } => {
                exchange.stale = Some(Stale { entry: stored, if_error });
                miss()
            }
            Looked::Miss => miss(),
        },
        other => other,
    };
    exchange.route(action).await
}
