//! The floor of a Rust Worker, for `bench/worker.sh`: the least a router
//! built like ours (workers-rs, wasm-bindgen, worker-build's shim, one
//! `#[event(fetch)]` future per request) must do: read the client's country
//! (`request.cf.country`, what a geofence decides on) and forward the
//! request to the origin, its body passed on untouched, and return the
//! origin's response as it came. Whatever the router costs beyond this
//! Worker is its own; what this costs beyond the JavaScript pass-through
//! (`bench/worker/passthrough.mjs`) is the toolchain's and the country's.
#![cfg(target_arch = "wasm32")]
// A host: it calls fetch and reads the platform's bindings.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use wasm_bindgen::JsCast;
use worker::worker_sys::ext::RequestExt;
use worker::{Context, Env, Fetch, Response, Result, event};

#[event(fetch)]
async fn fetch(req: worker::web_sys::Request, env: Env, _ctx: Context) -> Result<Response> {
    let country = req.cf().map(worker::Cf::from).and_then(|cf| cf.country());
    if country.as_deref() == Some("XX") {
        return Response::error("no country", 451);
    }
    let origin = env.var("ORIGIN")?.to_string();
    let url = req.url();
    // The path and query: what follows the authority of `scheme://authority/...`.
    let path = url.split_once("://").and_then(|(_, rest)| rest.find('/').map(|at| &rest[at..])).unwrap_or("/");
    // `new Request(url, request)`, as the JavaScript pass-through's `fetch(url, request)`:
    // the client's request is the init of the forwarded one.
    let init: &worker::web_sys::RequestInit = req.unchecked_ref();
    let forwarded = worker::web_sys::Request::new_with_str_and_init(&format!("{origin}{path}"), init)?;
    Fetch::Request(forwarded.into()).send().await
}
