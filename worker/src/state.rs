//! The isolate's router and where its config comes from.
//!
//! The config bundled at build time is in force until the KV namespace
//! `CONFIG` holds another one, written as JSON, under the key `config`. The
//! isolate looks at that key at most every `CONFIG_REFRESH_SECONDS` (30 by
//! default). A config from KV that does not load is refused with its errors
//! logged, and the last good one stays in force; deleting the key brings the
//! bundled one back. A new isolate that finds a text in KV that is not JSON
//! (a YAML config from before) serves nothing until KV holds JSON.
//!
//! Each accepted config makes a new [`Generation`]: a router of its own.
//! Requests hold the generation they started with, so an exchange in flight
//! finishes on the router that knows it, and the settled spending is handed
//! to the next generation (`Event::Restore`) so a config change does not
//! reset local budgets.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use worker::Env;

use edge_router::wire::{Action, Event, RequestRef, Restore, Spend};
use edge_router::{Router, RouterConfig};
use exchange::notices::{Level, describe, tick_due};

/// The config compiled into the Worker: the file `wrangler.toml` names,
/// checked by `build.rs` and written as compact JSON.
const BUNDLED: &str = include_str!(env!("EDGE_ROUTER_BUNDLED_CONFIG"));
/// Its file name as `wrangler.toml` gives it, for error messages.
const BUNDLED_NAME: &str = env!("EDGE_ROUTER_BUNDLED_NAME");
/// The KV binding and key of the override.
const KV_BINDING: &str = "CONFIG";
const KV_KEY: &str = "config";

/// One router and the requests it has seen.
pub struct Generation {
    pub router: RefCell<Router>,
    last_tick_ms: Cell<u64>,
}

impl Generation {
    fn new(config: RouterConfig, kept: &BTreeMap<String, Spend>) -> Rc<Self> {
        let mut router = Router::new(config);
        router.record_settlements();
        if !kept.is_empty() {
            router.handle(Event::Restore(Restore { spent: kept.values().cloned().collect(), ..Restore::default() }));
        }
        Rc::new(Self { router: RefCell::new(router), last_tick_ms: Cell::new(0) })
    }

    /// Feeds the router one event.
    pub fn handle(&self, event: Event) -> Action {
        self.with_router(|router| router.handle(event))
    }

    /// Feeds the router a client request (an `Event::Request`, borrowed).
    pub fn request(&self, request: RequestRef<'_>) -> Action {
        self.with_router(|router| router.request(request))
    }

    /// Calls the router, after a `Tick` if one is due; logs the health
    /// changes it reports and keeps the spending it settled.
    fn with_router(&self, call: impl FnOnce(&mut Router) -> Action) -> Action {
        let mut router = self.router.borrow_mut();
        let now = super::now_ms();
        let mut last = self.last_tick_ms.get();
        if tick_due(&mut last, now) {
            self.last_tick_ms.set(last);
            router.handle(Event::Tick { now_ms: now });
        }
        let action = call(&mut router);
        for notice in router.take_notices() {
            match describe(&notice) {
                (Level::Error, about, message) => worker::console_error!("edge-router: {about}: {message}"),
                (Level::Warn, node, message) => {
                    worker::console_warn!("edge-router: {node}: {message} (in this isolate)")
                }
                (Level::Info, node, message) => worker::console_log!("edge-router: {node}: {message}"),
            }
        }
        let spent = router.take_spent();
        if !spent.is_empty() {
            ISOLATE.with_borrow_mut(|isolate| {
                if let Some(isolate) = isolate {
                    for s in spent {
                        let newer = isolate.kept.get(&s.node).is_none_or(|k| k.superseded_by(s.day, s.spent));
                        if newer {
                            isolate.kept.insert(s.node.clone(), s);
                        }
                    }
                }
            });
        }
        action
    }
}

struct Isolate {
    current: Rc<Generation>,
    /// The text of the config in force.
    text: String,
    /// A KV text that was refused, so it is not loaded again on every check.
    refused: Option<String>,
    checked_ms: u64,
    /// The latest settled spending of each node, for the next generation.
    kept: BTreeMap<String, Spend>,
}

thread_local! {
    static ISOLATE: RefCell<Option<Isolate>> = const { RefCell::new(None) };
    /// The counter request ids are mixed from; 0 until the first request seeds it.
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
}

/// A new request's id: no other request of this isolate has it, whichever
/// router it goes to (a bijective mix of a counter), and unlike any other
/// isolate's (the counter starts from a random seed), so that logs and
/// `x-request-id` name one request.
pub fn next_id() -> u64 {
    NEXT_ID.with(|n| {
        if n.get() == 0 {
            n.set(crate::random() | 1);
        }
        let counter = n.get();
        n.set(counter.wrapping_add(1));
        origin_fallback::mix64(counter).max(1)
    })
}

/// The router requests should use now: the bundled config's on the first
/// request, replaced when the KV override changed. `Err` when nothing is
/// in force: the bundled config does not load, or a new isolate finds an
/// override in KV that is not JSON (see `adopt`).
pub async fn current(env: &Env) -> Result<Rc<Generation>, String> {
    let now = super::now_ms();
    let due = ISOLATE.with_borrow(|isolate| match isolate {
        None => true,
        Some(i) => now.saturating_sub(i.checked_ms) >= vars(env).refresh_ms,
    });
    if due {
        match read_override(env).await {
            Ok(override_text) => ISOLATE.with_borrow_mut(|isolate| adopt(isolate, override_text, now))?,
            // Keep what is in force; with nothing in force yet, start from the bundled config.
            Err(()) => ISOLATE.with_borrow_mut(|isolate| match isolate.as_mut() {
                Some(i) => {
                    i.checked_ms = now;
                    Ok(())
                }
                None => adopt(isolate, None, now),
            })?,
        }
    }
    ISOLATE.with_borrow(|isolate| isolate.as_ref().map(|i| i.current.clone())).ok_or_else(|| "no config".to_string())
}

/// The Worker's variables that requests read, read once per isolate: they
/// are fixed when it is deployed, and each read is a crossing into
/// JavaScript and a string's conversion.
pub struct Vars {
    /// `CONFIG_REFRESH_SECONDS` (30 by default), in milliseconds.
    pub refresh_ms: u64,
    /// `EDGE_ROUTER_PANIC_PATH`, the tests' panic hook (never set in a deployment).
    pub panic_path: Option<String>,
}

thread_local! {
    static VARS: std::cell::OnceCell<Rc<Vars>> = const { std::cell::OnceCell::new() };
}

/// This isolate's [`Vars`].
pub fn vars(env: &Env) -> Rc<Vars> {
    VARS.with(|vars| {
        vars.get_or_init(|| {
            let var = |name: &str| env.var(name).ok().map(|v| v.to_string());
            Rc::new(Vars {
                refresh_ms: var("CONFIG_REFRESH_SECONDS")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(30)
                    .saturating_mul(1000),
                panic_path: var("EDGE_ROUTER_PANIC_PATH").filter(|p| !p.is_empty()),
            })
        })
        .clone()
    })
}

/// The override's text: `None` when there is no KV binding or no key,
/// `Err` when it could not be read.
async fn read_override(env: &Env) -> Result<Option<String>, ()> {
    let Ok(kv) = env.kv(KV_BINDING) else { return Ok(None) };
    kv.get(KV_KEY).text().await.map_err(|e| {
        worker::console_error!("edge-router: reading the config from KV failed, keeping the one in force: {e}");
    })
}

/// Loads a config's text: JSON only (`RouterConfig::load_json`, which also
/// refuses what this build cannot honour in full), as the bundled one is
/// written by `build.rs`. A text that is not JSON at all is most likely
/// YAML, which this build does not read: the errors say how to convert it.
fn load(file: &str, text: &str) -> Result<RouterConfig, String> {
    // A byte order mark, which some editors write, is no part of the JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    RouterConfig::load_json(file, text).map_err(|e| {
        if looks_like_json(text) {
            e.to_string()
        } else {
            format!(
                "{e}\n{file}: the Workers build reads a config in KV as JSON; write it as JSON, or convert a YAML \
                 one with `edge-router check --json FILE` (see docs/workers.md)"
            )
        }
    })
}

/// Whether a config's text is JSON at a glance (an object), rather than
/// YAML: what a KV override from before this build read KV as JSON is.
fn looks_like_json(text: &str) -> bool {
    text.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}').starts_with('{')
}

/// Puts the config that should be in force in place, given the override's text.
fn adopt(isolate: &mut Option<Isolate>, override_text: Option<String>, now: u64) -> Result<(), String> {
    let (text, from_kv) = match override_text {
        Some(text) => (text, true),
        None => (BUNDLED.to_string(), false),
    };
    if let Some(i) = isolate.as_mut() {
        i.checked_ms = now;
        if i.text == text || i.refused.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
    }
    let file = if from_kv { format!("kv:{KV_BINDING}/{KV_KEY}") } else { BUNDLED_NAME.to_string() };
    match load(&file, &text) {
        Ok(config) => {
            let (nodes, rules) = (config.nodes.len(), config.rules.len());
            let kept = isolate.take().map(|i| i.kept).unwrap_or_default();
            worker::console_log!("edge-router: config {file} in force ({nodes} nodes, {rules} rules)");
            for w in &config.warnings {
                worker::console_warn!("edge-router: config: {}", w.in_file(&file));
            }
            *isolate =
                Some(Isolate { current: Generation::new(config, &kept), text, refused: None, checked_ms: now, kept });
            Ok(())
        }
        Err(errors) => {
            worker::console_error!("edge-router: config {file} refused, the one in force stays:\n{errors}");
            match isolate.as_mut() {
                Some(i) => {
                    i.refused = Some(text);
                    Ok(())
                }
                // An override that is not JSON with nothing in force yet (a new isolate) is
                // most likely a YAML config from before this build read KV as JSON: the
                // bundled config in its place could drop the override's keys and geofence,
                // so the isolate serves nothing until KV holds JSON (or nothing).
                None if from_kv && !looks_like_json(&text) => Err(errors),
                // Another refused override with nothing in force yet: fall back to the bundled config.
                None if from_kv => adopt(isolate, None, now).inspect(|()| {
                    if let Some(i) = isolate.as_mut() {
                        i.refused = Some(text);
                    }
                }),
                None => Err(errors),
            }
        }
    }
}
