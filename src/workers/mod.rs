//! The Cloudflare Workers flavour (`--features workers`, built by
//! worker-build from `wrangler.toml`): a thin async driver that feeds the
//! same [`Router`] the edge box runs and carries out its actions with
//! Workers APIs (`fetch`, the Cache API, KV, a Durable Object).
//!
//! What differs from the edge box, and why, is in `docs/workers.md`:
//! - the client's country is `request.cf.country`, the only trusted source;
//! - origin API keys are Worker secrets, named per node by `api_key_env`;
//! - the config is bundled at build time (the file `EDGE_ROUTER_CONFIG` in
//!   `wrangler.toml` names), and a config in the KV namespace `CONFIG` under
//!   the key `config` overrides it without a redeploy;
//! - health, breakers, capacity and latencies are per isolate; daily budgets
//!   are global, kept by the `BudgetLedger` Durable Object.

mod budget;
mod cache;
mod origin;
mod state;

use std::rc::Rc;

use worker::{Context, Env, Request, Response, event};

use crate::error::{Explanation, RouterError};
use crate::facts::Endpoint;
use crate::geo::{Country, country_label};
use crate::wire::{Action, Event, Header, RequestBody};
use cache::Looked;

pub use budget::BudgetLedger;

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

/// The Worker's entry point.
#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    console_error_panic_hook::set_once();
    let country = req.cf().and_then(|cf| cf.country()).as_deref().and_then(Country::parse);
    match serve(req, &env, &ctx, country).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            worker::console_error!("edge-router: {e}");
            Ok(router_error(&RouterError::Internal("the Worker failed to handle the request".into()), country))
        }
    }
}

/// A test hook: with the variable `EDGE_ROUTER_PANIC_PATH` set (never in a
/// deployment), a request for that path panics, so the tests can check a
/// panic is reported and answered with a JSON 500 (by `worker/entry.mjs`).
fn panic_hook_requested(env: &Env, path: &str) -> bool {
    env.var("EDGE_ROUTER_PANIC_PATH").is_ok_and(|v| !v.to_string().is_empty() && v.to_string() == path)
}

async fn serve(mut req: Request, env: &Env, ctx: &Context, country: Option<Country>) -> worker::Result<Response> {
    let generation = match state::current(env).await {
        Ok(g) => g,
        Err(refused) => {
            // The details go to the log, not to clients.
            worker::console_error!("edge-router: the bundled config was refused:\n{refused}");
            let e = RouterError::Internal("the Worker's config was refused; its log says why".into());
            return Ok(router_error(&e, country));
        }
    };
    let url = req.url()?;
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    if panic_hook_requested(env, url.path()) {
        panic!("edge-router: panic requested by EDGE_ROUTER_PANIC_PATH");
    }
    // Not `req.method()`: worker's Method turns methods it does not know into GET.
    let method = req.inner().method();
    let endpoint = Endpoint::classify(&method, &target);
    let limit = generation.router.borrow().config().server.max_body_bytes;
    let declared = req.headers().get("content-length")?.and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Ok(router_error(&RouterError::PayloadTooLarge { limit }, country));
    }
    let headers: Vec<Header> =
        req.headers().entries().map(|(name, value)| Header { name, value: value.into_bytes() }).collect();
    let has_body = declared.is_some_and(|n| n > 0) || req.headers().has("transfer-encoding")?;
    let (body, original, stream) = if endpoint == Endpoint::Other && has_body {
        (RequestBody::Streamed, Rc::<[u8]>::from(Vec::new()), req.inner().body())
    } else {
        let bytes = match req.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => {
                let e = RouterError::BadRequest(format!("the request body could not be read: {e}"));
                return Ok(router_error(&e, country));
            }
        };
        if bytes.len() as u64 > limit {
            return Ok(router_error(&RouterError::PayloadTooLarge { limit }, country));
        }
        (RequestBody::Buffered(bytes.clone()), Rc::from(bytes), None)
    };
    let id = state::next_id();
    let action = generation.handle(Event::Request {
        id,
        method: method.clone(),
        target: target.clone(),
        headers: headers.clone(),
        country: country.map(|c| c.to_string()),
        body,
        now_ms: now_ms(),
        random: random(),
        // No SHA-256 in hardware here: the router hashes the key itself.
        key_sha256: None,
        // Nor a native parser: the router reads the body itself.
        body_facts: None,
    });
    let later = origin::Later::open(ctx);
    let mut exchange = origin::Exchange {
        generation: generation.clone(),
        env: env.clone(),
        later: later.clone(),
        id,
        method: method.clone(),
        target,
        headers,
        original,
        stream,
        country,
        finish: Some(origin::Finish::new(generation.clone(), id, later.clone(), env.clone())),
        stale: None,
    };
    let miss = || generation.handle(Event::CacheMiss { id, now_ms: now_ms() });
    let action = match action {
        Action::Lookup(lookup) => match cache::look_up(&lookup, &exchange.headers, method == "HEAD").await {
            Looked::Hit(hit) => {
                exchange.cache_hit();
                return Ok(hit);
            }
            Looked::Stale { response, entry } => {
                // stale-while-revalidate: the client gets the stale answer
                // now, and the same exchange revalidates it after.
                exchange.stale = Some(origin::Stale { entry, if_error: true });
                let action = miss();
                later.run(async move {
                    if let Ok(mut refreshed) = exchange.route(action).await {
                        let _ = refreshed.bytes().await;
                    }
                });
                return Ok(response);
            }
            Looked::Revalidate { entry, if_error } => {
                exchange.stale = Some(origin::Stale { entry, if_error });
                miss()
            }
            Looked::Miss => miss(),
        },
        other => other,
    };
    exchange.route(action).await
}

/// An answer the Worker gives itself, with the explanation headers.
fn router_error(error: &RouterError, country: Option<Country>) -> Response {
    let country = country_label(country);
    let extra = Explanation { node: "-", rule: "-", attempts: 0, country: &country }.headers();
    let (status, headers, body) = error.to_response(extra);
    respond(status, &headers, body)
}

/// A complete response.
fn respond(status: u16, headers: &[Header], body: Vec<u8>) -> Response {
    let out = worker::Headers::new();
    for h in headers {
        if let Ok(value) = std::str::from_utf8(&h.value) {
            let _ = out.set(&h.name, value);
        }
    }
    Response::builder().with_status(status).with_headers(out).fixed(body)
}
