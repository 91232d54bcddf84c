//! Rate limits across all edge locations: the `RateLimiter` Durable Object,
//! one per tenant (named by the tenant), holds the buckets of the tenant and
//! of its keys (`edge_router::limits::Limiter`, the router's own).
//!
//! Before the router decides, the isolate asks the tenant's limiter to take
//! the request's share, and tells the router what it said
//! (`wire::Fleet`); the router then counts nothing itself. A request the
//! router refuses for something else gets its share back; a finished one
//! settles its tokens at the `usage` reported. If the limiter cannot be
//! reached within `state.timeout`, the router counts alone, on
//! `state.local_share` of each limit, the error is logged, and the isolate
//! leaves the limiters alone for a second. Unlike the edge box, what an
//! isolate counted alone is not added to the limiter afterwards. The buckets live in the object's memory: if
//! the platform evicts an idle limiter, its buckets start full again.

use std::cell::RefCell;
use std::collections::HashMap;

use edge_router::limits::{Limited, Limiter, Rates, Scope};
use edge_router::wire::{Event, Fleet};
use exchange::intake::LimitedRequest;
use futures_util::future::{Either, select};
use serde::{Deserialize, Serialize};
use worker::{Delay, DurableObject, Env, Request, Response, State, durable_object};

use crate::budget::from_json;
use crate::later::Later;
use crate::now_ms;

/// The Durable Object binding in `wrangler.toml`.
const BINDING: &str = "RATE_LIMITS";

/// One limited scope of a request, as the limiter is told of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Bucket {
    /// `key:<sha256>` or `tenant:<name>`.
    scope: String,
    rpm: Option<u64>,
    tpm: Option<u64>,
}

/// A request to a limiter: `{"op":"reserve","scopes":[…],"tokens":…}`,
/// `{"op":"settle","scopes":[…],"reserved":…,"used":…}` or
/// `{"op":"refund","scopes":[…],"tokens":…}`, read through [`Wire`].
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", try_from = "Wire")]
enum Op {
    Reserve { scopes: Vec<Bucket>, tokens: u64 },
    Settle { scopes: Vec<Bucket>, reserved: u64, used: u64 },
    Refund { scopes: Vec<Bucket>, tokens: u64 },
}

/// An [`Op`] as read: its kind, and the fields of every kind. Deriving the
/// reading of the tagged enum would buffer each value in serde's `Content`
/// first, code that cost the upload about 9 KiB.
#[derive(Deserialize)]
struct Wire {
    op: Kind,
    scopes: Vec<Bucket>,
    tokens: Option<u64>,
    reserved: Option<u64>,
    used: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Reserve,
    Settle,
    Refund,
}

impl TryFrom<Wire> for Op {
    type Error = &'static str;

    fn try_from(w: Wire) -> Result<Self, Self::Error> {
        let scopes = w.scopes;
        Ok(match w.op {
            Kind::Reserve => Op::Reserve { scopes, tokens: w.tokens.ok_or("`tokens` missing")? },
            Kind::Settle => Op::Settle {
                scopes,
                reserved: w.reserved.ok_or("`reserved` missing")?,
                used: w.used.ok_or("`used` missing")?,
            },
            Kind::Refund => Op::Refund { scopes, tokens: w.tokens.ok_or("`tokens` missing")? },
        })
    }
}

/// The limits of one tenant and its keys, across every edge location.
#[durable_object(fetch)]
pub struct RateLimiter {
    limiter: RefCell<Limiter>,
}

/// The limiter's view of `scopes`: each its own scope, labelled by its place.
fn limited_of(scopes: &[Bucket]) -> Vec<Limited> {
    scopes
        .iter()
        .enumerate()
        .map(|(i, b)| Limited {
            scope: Scope::Tenant(b.scope.as_str().into()),
            rates: Rates { requests_per_minute: b.rpm, tokens_per_minute: b.tpm },
            label: i.to_string().into(),
        })
        .collect()
}

impl DurableObject for RateLimiter {
    fn new(_state: State, _env: Env) -> Self {
        Self { limiter: RefCell::new(Limiter::default()) }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let op: Op = match from_json(req.bytes().await) {
            Ok(op) => op,
            Err(e) => return Response::error(format!("not a limiter operation: {e}"), 400),
        };
        let now = now_ms();
        let mut limiter = self.limiter.borrow_mut();
        match op {
            Op::Reserve { scopes, tokens } => {
                let (verdict, ratelimit) = limiter.admit(&limited_of(&scopes), tokens, now);
                let fleet = match verdict {
                    Ok(()) => Fleet::Admitted(ratelimit),
                    Err(r) => Fleet::Refused {
                        scope: r.label.parse().unwrap_or(0),
                        requests: r.requests,
                        limit: r.limit,
                        requested: r.requested,
                        retry_after_ms: r.retry_after_ms,
                        ratelimit,
                    },
                };
                Response::from_json(&fleet)
            }
            Op::Settle { scopes, reserved, used } => {
                limiter.settle(&limited_of(&scopes), reserved, used, now);
                Response::from_json(&true)
            }
            Op::Refund { scopes, tokens } => {
                limiter.refund(&limited_of(&scopes), tokens, now);
                Response::from_json(&true)
            }
        }
    }
}

/// What a request took at its tenant's limiter.
struct Held {
    tenant: String,
    scopes: Vec<Bucket>,
    tokens: u64,
}

thread_local! {
    /// Each exchange's share at its tenant's limiter.
    static HELD: RefCell<HashMap<u64, Held>> = RefCell::new(HashMap::new());
}

async fn call(env: &Env, tenant: &str, op: &Op) -> worker::Result<Response> {
    crate::budget::ask_object(env, BINDING, tenant, op).await
}

thread_local! {
    /// Until when (ms) this isolate does not ask the limiters, after one failed.
    static RESTING_UNTIL: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How long an isolate leaves the limiters alone after one failed or was slow.
const RETRY_AFTER_MS: u64 = 1_000;

/// Asks the tenant's limiter to take request `id`'s share of `claim`,
/// waiting at most `timeout`.
pub async fn reserve(env: &Env, id: u64, claim: LimitedRequest, timeout: std::time::Duration) -> Fleet {
    if now_ms() < RESTING_UNTIL.get() {
        return Fleet::Unreachable;
    }
    let scopes: Vec<Bucket> = claim
        .limited
        .iter()
        .map(|l| Bucket { scope: l.scope.name(), rpm: l.rates.requests_per_minute, tpm: l.rates.tokens_per_minute })
        .collect();
    let op = Op::Reserve { scopes: scopes.clone(), tokens: claim.tokens };
    let asked = async {
        match call(env, &claim.tenant, &op).await {
            Ok(mut response) => from_json::<Fleet>(response.bytes().await),
            Err(e) => Err(e),
        }
    };
    let answer = match select(Box::pin(asked), Delay::from(timeout)).await {
        Either::Left((answer, _)) => answer,
        Either::Right(_) => Err(worker::Error::RustError(format!("no answer within {} ms", timeout.as_millis()))),
    };
    match answer {
        Ok(fleet) => {
            if matches!(fleet, Fleet::Admitted(_)) {
                let held = Held { tenant: claim.tenant.to_string(), scopes, tokens: claim.tokens };
                HELD.with_borrow_mut(|h| h.insert(id, held));
            }
            fleet
        }
        Err(e) => {
            RESTING_UNTIL.set(now_ms() + RETRY_AFTER_MS);
            worker::console_error!(
                "edge-router: the rate limiter of tenant {} failed, counting on this isolate's share: {e}",
                claim.tenant
            );
            Fleet::Unreachable
        }
    }
}

/// The router answered request `id`: one it refused gets its share back.
pub fn decided(env: &Env, later: &Later, id: u64, admitted: bool) {
    if !admitted {
        end(env, later, id, |scopes, tokens| Op::Refund { scopes, tokens });
    }
}

/// An event on its way to the router: the end of an exchange settles its tokens.
pub fn ended(env: &Env, later: &Later, event: &Event) {
    let Some((id, used, _)) = exchange::intake::tokens_used(event) else { return };
    end(env, later, id, |scopes, reserved| Op::Settle { scopes, reserved, used: used.unwrap_or(reserved) });
}

fn end(env: &Env, later: &Later, id: u64, op: impl FnOnce(Vec<Bucket>, u64) -> Op) {
    let Some(held) = HELD.with_borrow_mut(|h| h.remove(&id)) else { return };
    let op = op(held.scopes, held.tokens);
    if let Op::Settle { reserved, used, .. } = &op
        && reserved == used
    {
        return;
    }
    let env = env.clone();
    later.run(async move {
        if let Err(e) = call(&env, &held.tenant, &op).await {
            worker::console_error!("edge-router: settling at the rate limiter of {} failed: {e}", held.tenant);
        }
    });
}
