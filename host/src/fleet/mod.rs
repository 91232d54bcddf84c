//! Rate limits held across a fleet of edge boxes (`state.redis`): every box
//! takes from the same buckets in Valkey or Redis, with atomic scripts
//! (never a read then a write), so N boxes together stay within a limit.
//!
//! A box asks the store before the router decides, and tells the router
//! what it said (`wire::Fleet`). The buckets there are the router's own
//! (`edge_router::limits`: a minute's allowance refilling continuously),
//! kept as `level` and `at` per bucket; a request takes from all of its
//! buckets or from none. The settlement of tokens at the `usage` reported
//! follows when the exchange ends, as does the refund of a request the
//! router then refused for something else.
//!
//! When the store cannot be reached within `state.timeout`, the box says
//! so (log and status) and the router counts alone, on `state.local_share`
//! of each limit; the store is tried again a second later. What the box
//! counted alone is added to the store's buckets when it is back.
//!
//! - `budget`: daily budgets held the same way;
//! - `resp`: the store's protocol;
//! - `scripts`: the Lua the store runs.

mod budget;
mod resp;
mod scripts;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use budget::Budget;
use edge_router::config::{StateConfig, StoreAddress};
use edge_router::limits::{Limited, tightest, wait_ms, window_of};
use edge_router::wire::{Event, Fleet};
use resp::{Connection, Reply};
use scripts::{BUDGET_RESERVE, BUDGET_SETTLE, RESERVE, TAKE};

use crate::lock;

/// How long the store is left alone after it could not be reached.
const RETRY_AFTER_MS: u64 = 1_000;

/// One bucket of a request: its key in the store, whether it counts
/// requests, its limit, and what the request takes from it.
#[derive(Debug, Clone)]
struct Take {
    key: String,
    requests: bool,
    limit: u64,
    amount: f64,
}

/// What a request took, and where: to settle when it ends.
struct Held {
    takes: Vec<Take>,
    tokens: u64,
    /// Taken at the store (else the box counted it alone).
    shared: bool,
}

/// Whether the store answers, as `status` shows it.
#[derive(Debug, Clone, Default)]
struct Health {
    reachable: bool,
    /// Since when (milliseconds since the epoch); 0: not asked yet.
    since_ms: u64,
    /// Why it was not, last.
    error: Option<String>,
    /// What was counted alone and is not in the store yet, by bucket key.
    backlog: HashMap<String, Take>,
    /// Requests counted alone since the store was last reachable.
    counted_alone: u64,
    /// Costs settled while the store was away, by node and day, not in the store yet.
    spent_alone: HashMap<(String, u32), f64>,
    /// What the box reserved and spent alone, by node and day: held to its
    /// share of what was left of the budget.
    budget_alone: HashMap<(String, u32), f64>,
}

/// The store of a fleet, and what this box holds in it.
pub struct FleetStore {
    address: StoreAddress,
    password: Option<String>,
    prefix: String,
    timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    /// Until when (ms) the store is not asked, after a failure.
    resting_until: AtomicU64,
    health: Mutex<Health>,
    held: Mutex<HashMap<u64, Held>>,
    reserve_sha: String,
    take_sha: String,
    budget_sha: String,
    settle_sha: String,
    /// Budget reservations of attempts in flight, by request and node:
    /// the store's token (`None`: granted by the box alone) and the amount.
    budgets: Mutex<HashMap<(u64, String), BudgetHeld>>,
    /// Per node: the day and the fleet's spending as the store last told it.
    fleet_spent: Mutex<HashMap<String, (u32, f64)>>,
    /// The share of a budget a box spends alone, in percent.
    local_share: u8,
}

/// A budget reservation an attempt holds: the store's token (`None`:
/// granted by the box alone) and the amount.
type BudgetHeld = (Option<String>, f64);

/// The scripts the store runs.
#[derive(Clone, Copy)]
enum Script {
    Reserve,
    Take,
    BudgetReserve,
    BudgetSettle,
}

impl FleetStore {
    /// The store `state` names; `None` without one.
    pub fn new(state: &StateConfig) -> anyhow::Result<Option<Self>> {
        let Some(url) = &state.redis else { return Ok(None) };
        let address = StoreAddress::parse(url).map_err(anyhow::Error::msg)?;
        #[allow(clippy::disallowed_methods)] // a secret named by the config, as origin keys are
        let password = match &state.password_env {
            Some(var) => {
                Some(std::env::var(var).map_err(|_| anyhow::anyhow!("state.password_env: `{var}` is not set"))?)
            }
            None => None,
        };
        Ok(Some(Self {
            address,
            password,
            prefix: state.key_prefix.clone(),
            timeout: state.timeout.0,
            idle: Mutex::new(Vec::new()),
            resting_until: AtomicU64::new(0),
            health: Mutex::new(Health::default()),
            held: Mutex::new(HashMap::new()),
            reserve_sha: sha1_hex(RESERVE),
            take_sha: sha1_hex(TAKE),
            budget_sha: sha1_hex(BUDGET_RESERVE),
            settle_sha: sha1_hex(BUDGET_SETTLE),
            budgets: Mutex::new(HashMap::new()),
            fleet_spent: Mutex::new(HashMap::new()),
            local_share: state.local_share.get(),
        }))
    }

    fn takes(&self, limited: &[Limited], tokens: u64) -> Vec<Take> {
        let mut out = Vec::new();
        for l in limited {
            let scope = l.scope.name();
            for (requests, limit, amount) in
                [(true, l.rates.requests_per_minute, 1), (false, l.rates.tokens_per_minute, tokens)]
            {
                if let Some(limit) = limit {
                    let dim = if requests { "rpm" } else { "tpm" };
                    out.push(Take {
                        key: format!("{}:limit:{scope}:{dim}", self.prefix),
                        requests,
                        limit,
                        amount: amount as f64,
                    });
                }
            }
        }
        out
    }

    /// Asks the store to take one request and `tokens` from the buckets of
    /// `limited` for request `id`. `limited` is in the router's order, so a
    /// refusal names its scope as the router does.
    pub async fn reserve(&self, id: u64, limited: &[Limited], tokens: u64, now_ms: u64) -> Fleet {
        let takes = self.takes(limited, tokens);
        if takes.is_empty() {
            return Fleet::Admitted(Default::default());
        }
        let (keys, args) = bucket_args(&takes, now_ms);
        let reply = match self.run(Script::Reserve, keys, args, now_ms).await {
            Ok(reply) => reply,
            Err(()) => {
                lock(&self.held).insert(id, Held { takes, tokens, shared: false });
                return Fleet::Unreachable;
            }
        };
        let Some((admitted, short, left)) = read_reserve(&reply, takes.len()) else {
            tracing::warn!("the shared store's reply to a rate-limit reservation was not understood: {reply:?}");
            self.failed("an unexpected reply".into(), now_ms);
            lock(&self.held).insert(id, Held { takes, tokens, shared: false });
            return Fleet::Unreachable;
        };
        let windows = takes.iter().zip(&left).map(|(t, &a)| (t.requests, window_of(a, t.limit)));
        let ratelimit = tightest(windows);
        if admitted {
            lock(&self.held).insert(id, Held { takes, tokens, shared: true });
            return Fleet::Admitted(ratelimit);
        }
        let t = &takes[short];
        // Which of the caller's scopes: each has its buckets in turn.
        let scope = limited
            .iter()
            .scan(0, |seen, l| {
                *seen += usize::from(l.rates.requests_per_minute.is_some())
                    + usize::from(l.rates.tokens_per_minute.is_some());
                Some(*seen)
            })
            .position(|seen| short < seen)
            .unwrap_or(0);
        Fleet::Refused {
            scope: u8::try_from(scope).unwrap_or(0),
            requests: t.requests,
            limit: t.limit,
            requested: t.amount as u64,
            retry_after_ms: (t.amount <= t.limit as f64).then(|| wait_ms(left[short], t.amount, t.limit)),
            ratelimit,
        }
    }

    /// The router answered request `id`: a request it refused after the
    /// store took its share gets it back; one it admitted on its own count
    /// (the store unreachable) goes into the backlog for the store.
    pub fn decided(self: &Arc<Self>, id: u64, admitted: bool, now_ms: u64) {
        if !admitted {
            self.settle(id, None, now_ms, true);
            return;
        }
        let alone = lock(&self.held).get(&id).filter(|h| !h.shared).map(|h| h.takes.clone());
        if let Some(takes) = alone {
            self.counted_alone(takes, 1);
        }
    }

    /// An event on its way to the router: the end of an exchange settles
    /// what its request took.
    pub fn ended(self: &Arc<Self>, event: &Event) {
        if let Some((id, used, now_ms)) = exchange::intake::tokens_used(event) {
            self.settle(id, used, now_ms, false);
        }
    }

    /// Settles request `id`'s tokens at `used` (`None`: as reserved), or
    /// gives back all it took (`refund`).
    fn settle(self: &Arc<Self>, id: u64, used: Option<u64>, now_ms: u64, refund: bool) {
        let Some(held) = lock(&self.held).remove(&id) else { return };
        let deltas: Vec<Take> = held
            .takes
            .into_iter()
            .filter_map(|mut t| {
                t.amount = match (refund, t.requests) {
                    (true, _) => -t.amount,
                    (false, true) => return None,
                    (false, false) => used? as f64 - held.tokens as f64,
                };
                (t.amount != 0.0).then_some(t)
            })
            .collect();
        if deltas.is_empty() {
            return;
        }
        if !held.shared {
            // The router settles its own count; the store hears of it with
            // the backlog (a refusal took nothing there).
            if !refund {
                self.counted_alone(deltas, 0);
            }
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let store = self.clone();
        runtime.spawn(async move {
            let (keys, args) = bucket_args(&deltas, now_ms);
            if store.run(Script::Take, keys, args, now_ms).await.is_err() {
                tracing::debug!(
                    "a rate-limit settlement did not reach the shared store; its buckets refill on their own"
                );
            }
        });
    }

    fn counted_alone(&self, takes: Vec<Take>, requests: u64) {
        let mut health = lock(&self.health);
        health.counted_alone += requests;
        // A bucket refills within a minute: what the box took alone beyond
        // one whole limit has come back already, so the backlog holds at most that.
        for t in takes {
            let cap = t.limit as f64;
            let b = health.backlog.entry(t.key.clone()).or_insert(Take { amount: 0.0, ..t.clone() });
            b.amount = (b.amount + t.amount).min(cap);
        }
    }

    /// Runs a script on the store, first adding what was counted alone.
    async fn run(&self, script: Script, keys: Vec<String>, args: Vec<String>, now_ms: u64) -> Result<Reply, ()> {
        if now_ms < self.resting_until.load(Ordering::Relaxed) {
            return Err(());
        }
        let (sha, text) = self.script(script);
        let result = tokio::time::timeout(self.timeout, async {
            // A pooled connection the store has since closed is no outage:
            // a new one is tried before the store counts as away.
            let pooled = lock(&self.idle).pop();
            if let Some(mut c) = pooled {
                match self.attempt(&mut c, sha, text, &keys, &args, now_ms).await {
                    Ok(reply) => {
                        lock(&self.idle).push(c);
                        return Ok(reply);
                    }
                    Err(e) => tracing::debug!("a pooled store connection failed ({e}); trying a new one"),
                }
            }
            let mut c = Connection::open(&self.address.authority, self.password.as_deref(), self.address.db).await?;
            let reply = self.attempt(&mut c, sha, text, &keys, &args, now_ms).await?;
            lock(&self.idle).push(c);
            Ok(reply)
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", self.timeout.as_millis())));
        match result {
            Ok(reply) => {
                let mut health = lock(&self.health);
                if !health.reachable {
                    if health.since_ms != 0 {
                        tracing::warn!(
                            "the shared store {} is reachable again: limits and budgets are the fleet's once more",
                            self.address.authority
                        );
                    }
                    health.reachable = true;
                    health.since_ms = now_ms;
                    health.error = None;
                    health.counted_alone = 0;
                    // The store's spending is the fleet's again.
                    health.budget_alone.clear();
                }
                Ok(reply)
            }
            Err(why) => {
                self.failed(why, now_ms);
                Err(())
            }
        }
    }

    /// Runs a script on connection `c`, after what was counted alone.
    async fn attempt(
        &self,
        c: &mut Connection,
        sha: &str,
        text: &str,
        keys: &[String],
        args: &[String],
        now_ms: u64,
    ) -> Result<Reply, String> {
        self.catch_up(c, now_ms).await?;
        eval(c, sha, text, keys, args).await
    }

    /// Adds to the store what the box counted alone: rate-limit takes, and
    /// costs settled while the store was away. They are taken out of the
    /// backlog first, so that two requests cannot both add them, and put
    /// back if the store fails.
    async fn catch_up(&self, c: &mut Connection, now_ms: u64) -> Result<(), String> {
        let (takes, costs) = {
            let mut h = lock(&self.health);
            (std::mem::take(&mut h.backlog), std::mem::take(&mut h.spent_alone))
        };
        if takes.is_empty() && costs.is_empty() {
            return Ok(());
        }
        let sent = async {
            if !takes.is_empty() {
                let list: Vec<Take> = takes.values().cloned().collect();
                let (keys, args) = bucket_args(&list, now_ms);
                eval(c, &self.take_sha, TAKE, &keys, &args).await?;
            }
            for ((node, day), cost) in &costs {
                let args = vec![String::new(), day.to_string(), cost.to_string(), now_ms.to_string()];
                eval(c, &self.settle_sha, BUDGET_SETTLE, &[self.budget_key(node)], &args).await?;
            }
            Ok::<_, String>(())
        }
        .await;
        let mut h = lock(&self.health);
        if let Err(e) = sent {
            for (key, t) in takes {
                let b = h.backlog.entry(key).or_insert(Take { amount: 0.0, ..t.clone() });
                b.amount = (b.amount + t.amount).min(t.limit as f64);
            }
            for (key, cost) in costs {
                *h.spent_alone.entry(key).or_insert(0.0) += cost;
            }
            return Err(e);
        }
        tracing::info!("the shared store now has what this box counted alone ({} requests)", h.counted_alone);
        Ok(())
    }

    fn script(&self, script: Script) -> (&str, &'static str) {
        match script {
            Script::Reserve => (&self.reserve_sha, RESERVE),
            Script::Take => (&self.take_sha, TAKE),
            Script::BudgetReserve => (&self.budget_sha, BUDGET_RESERVE),
            Script::BudgetSettle => (&self.settle_sha, BUDGET_SETTLE),
        }
    }

    fn failed(&self, why: String, now_ms: u64) {
        self.resting_until.store(now_ms + RETRY_AFTER_MS, Ordering::Relaxed);
        let mut health = lock(&self.health);
        if health.reachable || health.since_ms == 0 {
            tracing::warn!(
                "the shared store {} is unreachable ({why}): this box counts rate limits alone, on its local share",
                self.address.authority
            );
            health.reachable = false;
            health.since_ms = now_ms;
        }
        health.error = Some(why);
    }

    /// The store's state for `status`.
    pub fn status(&self) -> serde_json::Value {
        let h = lock(&self.health);
        serde_json::json!({
            "store": format!("redis://{}/{}", self.address.authority, self.address.db),
            "reachable": h.reachable,
            "since_ms": h.since_ms,
            "error": h.error,
            "counted_alone": h.counted_alone,
            "backlog_buckets": h.backlog.len(),
            "budget_costs_alone": h.spent_alone.len(),
        })
    }
}

/// The keys and arguments of a bucket script (`RESERVE`, `TAKE`).
fn bucket_args(takes: &[Take], now_ms: u64) -> (Vec<String>, Vec<String>) {
    let keys = takes.iter().map(|t| t.key.clone()).collect();
    let mut args = vec![now_ms.to_string()];
    for t in takes {
        args.push(t.limit.to_string());
        args.push(t.amount.to_string());
    }
    (keys, args)
}

/// EVALSHA, and EVAL when the store does not have the script yet.
async fn eval(c: &mut Connection, sha: &str, script: &str, keys: &[String], args: &[String]) -> Result<Reply, String> {
    let numkeys = keys.len().to_string();
    let mut all: Vec<&[u8]> = vec![b"EVALSHA", sha.as_bytes(), numkeys.as_bytes()];
    all.extend(keys.iter().map(|k| k.as_bytes()));
    all.extend(args.iter().map(|a| a.as_bytes()));
    match c.call(&all).await? {
        Reply::Error(e) if e.starts_with("NOSCRIPT") => {
            all[0] = b"EVAL";
            all[1] = script.as_bytes();
            match c.call(&all).await? {
                Reply::Error(e) => Err(format!("the store refused the script: {e}")),
                reply => Ok(reply),
            }
        }
        Reply::Error(e) => Err(format!("the store refused the script: {e}")),
        reply => Ok(reply),
    }
}

/// `RESERVE`'s reply: admitted, the index of the short bucket, what each has.
fn read_reserve(reply: &Reply, buckets: usize) -> Option<(bool, usize, Vec<f64>)> {
    let Reply::Array(Some(items)) = reply else { return None };
    if items.len() != buckets + 2 {
        return None;
    }
    let number = |r: &Reply| r.text()?.parse::<f64>().ok();
    let admitted = number(&items[0])? == 1.0;
    let short = (number(&items[1])? as usize).saturating_sub(1);
    let left = items[2..].iter().map(number).collect::<Option<Vec<f64>>>()?;
    Some((admitted, short.min(buckets - 1), left))
}

fn sha1_hex(script: &str) -> String {
    crate::hex(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, script.as_bytes()).as_ref())
}
