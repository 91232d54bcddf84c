//! Daily budgets across all edge locations: the `BudgetLedger` Durable
//! Object, one per node (named by the node id), holds the node's spending
//! (`origin_fallback::Ledger`).
//!
//! Before a request goes to a node with a `max_cost_per_day`, the isolate
//! reserves the router's estimate at the node's ledger; a refusal passes the
//! node over (`Event::BudgetRefused`) as if the local budget were spent.
//! When the attempt ends, its reservation is settled at the real cost. An
//! isolate's own router still enforces its local view of the budget, which
//! the ledger's answers keep up to date. If the ledger cannot be reached the
//! request goes on under the local view (and the error is logged): budgets
//! then hold per isolate until it answers again.

use std::cell::RefCell;
use std::collections::HashMap;

use origin_fallback::{Ledger, Reserved};
use serde::{Deserialize, Serialize};
use worker::js_sys::{Array, Object, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{DurableObject, Env, Request, Response, State, Storage, durable_object};

use crate::later::Later;
use crate::now_ms;
use crate::state::Generation;
use edge_router::wire::{Action, Event, Forward, Restore, Spend};

/// The Durable Object binding in `wrangler.toml`.
const BINDING: &str = "BUDGETS";
/// How long a reservation holds when its settlement never comes.
const RESERVATION_TTL_MS: u64 = 15 * 60 * 1000;

/// A request to a ledger: `{"op":"reserve","day":…,"amount":…,"limit":…}`
/// or `{"op":"settle","token":…,"day":…,"cost":…}` ([`Op::read`]).
#[derive(Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Reserve { day: u32, amount: f64, limit: f64 },
    Settle { token: u64, day: u32, cost: f64 },
}

impl Op {
    /// Reads an operation from its JSON text with JavaScript's parser, so
    /// that its amounts are exactly the numbers sent (serde_json's default
    /// float reading can land one step off, and each settlement would add
    /// the error to the ledger).
    fn read(text: &str) -> Result<Self, String> {
        let value = worker::js_sys::JSON::parse(text).map_err(|_| "not JSON".to_string())?;
        let (number, whole, day) = (|key| number(&value, key), |key| whole(&value, key), |key| day(&value, key));
        let kind = Reflect::get(&value, &"op".into()).ok().and_then(|v| v.as_string());
        match kind.as_deref() {
            Some("reserve") => Ok(Op::Reserve { day: day("day")?, amount: number("amount")?, limit: number("limit")? }),
            Some("settle") => Ok(Op::Settle { token: whole("token")?, day: day("day")?, cost: number("cost")? }),
            _ => Err("`op` is neither `reserve` nor `settle`".into()),
        }
    }
}

/// `of[key]`, a JavaScript number (an array's index as a key too).
fn number(of: &JsValue, key: &str) -> Result<f64, String> {
    Reflect::get(of, &key.into()).ok().and_then(|v| v.as_f64()).ok_or(format!("`{key}` is not a number"))
}

/// `of[key]`, a whole number a float holds exactly: days, tokens, times.
fn whole(of: &JsValue, key: &str) -> Result<u64, String> {
    number(of, key).and_then(|n| {
        (n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0)
            .then_some(n as u64)
            .ok_or(format!("`{key}` is not a whole number"))
    })
}

/// `of[key]`, a day number.
fn day(of: &JsValue, key: &str) -> Result<u32, String> {
    whole(of, key).and_then(|d| u32::try_from(d).map_err(|_| format!("`{key}` is too large")))
}

#[derive(Serialize, Deserialize)]
struct Answer {
    /// The reservation's token; `None` when refused (or for a settlement).
    token: Option<u64>,
    /// The node's settled spending today, across all isolates.
    spent: f64,
}

/// The ledger as stored ([`load`], [`save`]).
#[derive(Default)]
struct Stored {
    day: u32,
    spent: f64,
    open: Vec<(u64, f64, u64)>,
    last_token: u64,
}

/// The key the ledger is stored under.
const LEDGER: &str = "ledger";

/// The stored ledger, or an empty one. It is stored as an object,
/// `{day, spent, open: [[token, amount, expires_ms]…], last_token}`, and its
/// numbers are read and written as JavaScript numbers, exactly (worker's
/// `get` and `put` would bring serde_wasm_bindgen, and JSON text read by
/// serde_json may land a float one step off, or turn an infinite one into
/// `null`).
async fn load(storage: &Storage) -> worker::Result<Stored> {
    let found = storage.get_multiple(vec![LEDGER]).await?.get(&LEDGER.into());
    if found.is_undefined() {
        return Ok(Stored::default());
    }
    let stored = || -> Result<Stored, String> {
        let entries: Array =
            Reflect::get(&found, &"open".into()).ok().and_then(|v| v.dyn_into().ok()).ok_or("`open` is not a list")?;
        let mut open = Vec::new();
        for entry in entries.iter() {
            open.push((whole(&entry, "0")?, number(&entry, "1")?, whole(&entry, "2")?));
        }
        Ok(Stored {
            day: day(&found, "day")?,
            spent: number(&found, "spent")?,
            open,
            last_token: whole(&found, "last_token")?,
        })
    };
    stored().map_err(|e| worker::Error::RustError(format!("the stored ledger: {e}")))
}

/// Stores `stored` as [`load`] reads it.
async fn save(storage: &Storage, stored: &Stored) -> worker::Result<()> {
    let object = Object::new();
    let set = |key: &str, value: f64| Reflect::set(&object, &key.into(), &value.into()).map(|_| ());
    set("day", stored.day.into())?;
    set("spent", stored.spent)?;
    set("last_token", stored.last_token as f64)?;
    let open: Array = stored
        .open
        .iter()
        .map(|&(token, amount, expires_ms)| {
            Array::of3(&(token as f64).into(), &amount.into(), &(expires_ms as f64).into())
        })
        .collect();
    Reflect::set(&object, &"open".into(), &open)?;
    storage.put_raw(LEDGER, object).await
}

/// One node's spending across every edge location.
#[durable_object(fetch)]
pub struct BudgetLedger {
    state: State,
    ledger: RefCell<Option<Ledger>>,
}

impl DurableObject for BudgetLedger {
    fn new(state: State, _env: Env) -> Self {
        Self { state, ledger: RefCell::new(None) }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let op = match Op::read(&req.text().await?) {
            Ok(op) => op,
            Err(e) => return Response::error(format!("not a ledger operation: {e}"), 400),
        };
        if self.ledger.borrow().is_none() {
            let stored = load(&self.state.storage()).await?;
            let loaded =
                Ledger { day: stored.day, spent: stored.spent, open: stored.open, last_token: stored.last_token };
            self.ledger.borrow_mut().get_or_insert(loaded);
        }
        let now = now_ms();
        let (answer, stored) = {
            let mut slot = self.ledger.borrow_mut();
            let Some(ledger) = slot.as_mut() else { return Response::error("ledger not loaded", 500) };
            let answer = match op {
                Op::Reserve { day, amount, limit } => {
                    match ledger.reserve(day, amount, limit, now, now + RESERVATION_TTL_MS) {
                        Reserved::Granted { token, spent } => Answer { token: Some(token), spent },
                        Reserved::Refused { spent } => Answer { token: None, spent },
                    }
                }
                Op::Settle { token, day, cost } => Answer { token: None, spent: ledger.settle(token, day, cost, now) },
            };
            let stored = Stored {
                day: ledger.day,
                spent: ledger.spent,
                open: ledger.open.clone(),
                last_token: ledger.last_token,
            };
            (answer, stored)
        };
        // Durable Objects hold the answer until the write is durable (output gate).
        save(&self.state.storage(), &stored).await?;
        Response::from_json(&answer)
    }
}

thread_local! {
    /// Each exchange's reservation token at its node's ledger.
    static TOKENS: RefCell<HashMap<u64, u64>> = RefCell::new(HashMap::new());
}

async fn call(env: &Env, node: &str, op: &Op) -> worker::Result<Answer> {
    from_json(ask_object(env, BINDING, node, op).await?.bytes().await)
}

/// A JSON body, read by serde_json from its bytes. worker's own `json()`
/// reads a request through JavaScript's parser and serde_wasm_bindgen, and a
/// response through a `str` reader: each a second copy of serde's code for
/// what the exchange and the config already read from bytes.
pub fn from_json<T: serde::de::DeserializeOwned>(body: worker::Result<Vec<u8>>) -> worker::Result<T> {
    Ok(serde_json::from_slice(&body?)?)
}

/// Sends `op` (as JSON) to the Durable Object of `binding` named `name`;
/// its answer, if it is a 200.
pub async fn ask_object(env: &Env, binding: &str, name: &str, op: &impl Serialize) -> worker::Result<Response> {
    let stub = env.durable_object(binding)?.id_from_name(name)?.get_stub()?;
    // web_sys's request, converted: worker's `RequestInit` sets every
    // property it has, code the upload would carry for this one call.
    let init = worker::web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&serde_json::to_string(op)?.into());
    let request = worker::web_sys::Request::new_with_str_and_init("https://object.invalid/", &init)?;
    let mut response = stub.fetch_with_request(Request::from(request)).await?;
    if response.status_code() != 200 {
        let text = String::from_utf8_lossy(&response.bytes().await.unwrap_or_default()).into_owned();
        return Err(worker::Error::RustError(format!("{binding} answered {}: {text}", response.status_code())));
    }
    Ok(response)
}

/// Reserves the attempt's estimate at its node's ledger. `Some` is the
/// router's next action when the ledger refused.
pub async fn reserve(generation: &Generation, env: &Env, id: u64, forward: &Forward) -> Option<Action> {
    let claim = generation.router.borrow().reservation(id)?;
    debug_assert_eq!(
        generation.router.borrow().config().node_at(forward.node).map(|n| n.id.as_str()),
        Some(claim.node.as_str())
    );
    let op = Op::Reserve { day: claim.day, amount: claim.amount, limit: claim.limit };
    match call(env, &claim.node, &op).await {
        Ok(Answer { token: Some(token), spent }) => {
            TOKENS.with_borrow_mut(|t| t.insert(id, token));
            let spent = vec![Spend { node: claim.node, day: claim.day, spent }];
            generation.handle(Event::Restore(Restore { spent, ..Restore::default() }));
            None
        }
        Ok(Answer { token: None, spent }) => {
            Some(generation.handle(Event::BudgetRefused { id, spent, now_ms: now_ms() }))
        }
        Err(e) => {
            worker::console_error!(
                "edge-router: the budget ledger of {} failed, using this isolate's view: {e}",
                claim.node
            );
            None
        }
    }
}

/// Settles, after the response, the reservations the router released.
pub fn settle(generation: &Generation, env: &Env, later: &Later) {
    let settled = generation.router.borrow_mut().take_settled();
    for s in settled {
        let Some(token) = TOKENS.with_borrow_mut(|t| t.remove(&s.id)) else { continue };
        let env = env.clone();
        later.run(async move {
            let op = Op::Settle { token, day: s.day, cost: s.cost };
            if let Err(e) = call(&env, &s.node, &op).await {
                worker::console_error!("edge-router: settling at the budget ledger of {} failed: {e}", s.node);
            }
        });
    }
}
