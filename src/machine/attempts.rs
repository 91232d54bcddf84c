//! Attempts: the next node of a request's chain that can take it, or the
//! answer that says why none can.

use origin_fallback::{NoRetry, RetryBudget};

use super::{Exchange, NodeState, PassedOver, Router, cost_of};
use crate::config::RouterConfig;
use crate::error::RouterError;
use crate::geo::country_label;
use crate::model::ModelChoice;
use crate::wire::{Action, Explain, Failure, Forward, ForwardBody, Header, Notice};

impl Router {
    /// Forwards to the next node in the chain that can take the request, or
    /// answers with the reason none is left. When every node the request
    /// could use is unhealthy (see [`Router::panic_pick`]), it goes to one of
    /// them rather than be refused.
    pub(super) fn next_attempt(&mut self, id: u64, now_ms: u64) -> Action {
        let Some(ex) = self.exchanges.get_mut(&id) else {
            return Action::Done;
        };
        while ex.next < ex.chain.len() {
            let at = ex.next;
            ex.next += 1;
            let node = ex.chain[at].0;
            let cost = cost_of(ex.estimated_tokens, self.config.nodes[node].cost_per_1k_tokens);
            if let Some(why) = unavailable(&self.nodes, &self.config, node, cost, now_ms, true) {
                ex.passed_over.push((node, why));
                continue;
            }
            if !retry_granted(&mut self.retries, ex, now_ms) {
                break;
            }
            return self.attempt(id, at, None, now_ms);
        }
        if let Some((at, counts)) = self.panic_pick(id, now_ms) {
            return self.attempt(id, at, Some(counts), now_ms);
        }
        let Some(ex) = self.exchanges.remove(&id) else {
            return Action::Done;
        };
        // No node answered: no tokens were used.
        self.settle_limits(&ex, 0, now_ms);
        let error = self.exhausted(&ex, now_ms);
        let (status, mut headers, body) = error.to_response(id, Vec::new());
        headers.extend(explain(&self.config, &ex));
        Action::Respond { status, headers, body }
    }

    /// Sends exchange `id` to the node at `at` in its chain. `panic`: its
    /// breaker is open and [`Router::panic_pick`] chose it anyway, with how
    /// many of the request's nodes were healthy, of how many.
    fn attempt(&mut self, id: u64, at: usize, panic: Option<(u32, u32)>, now_ms: u64) -> Action {
        let Some(ex) = self.exchanges.get_mut(&id) else {
            return Action::Done;
        };
        // Entries of the chain are tried once: the model choice is taken, not copied.
        let (node, ref mut entry) = ex.chain[at];
        let choice = std::mem::replace(entry, ModelChoice::Keep);
        let n = &self.config.nodes[node];
        let cost = cost_of(ex.estimated_tokens, n.cost_per_1k_tokens);
        let day = self.config.budget_day.of(now_ms);
        let state = &mut self.nodes[node];
        if let Some((healthy, candidates)) = panic {
            // Told once per opening of the breaker (`note` clears it).
            if !state.panic_told {
                state.panic_told = true;
                self.notices.push(Notice::Panic { node: n.id.clone(), healthy, candidates });
            }
        } else if state.breaker.acquire(id, now_ms).flatten().is_some() {
            self.notices.push(Notice::Probing { node: n.id.clone() });
        }
        state.in_flight += 1;
        state.spend.reserve(day, cost);
        ex.reserved = cost;
        if self.recording_settlements
            && let Some(limit) = n.max_cost_per_day
        {
            self.claim = Some(super::BudgetClaim { node: n.id.clone(), day, amount: cost, limit });
        }
        ex.status = None;
        ex.holding = Some(node);
        ex.panic = panic.is_some();
        ex.attempts += 1;
        ex.sent_ms = now_ms;
        ex.last_activity_ms = now_ms;
        ex.rewritten_model = choice.rewrite();
        ex.sized = matches!(choice, ModelChoice::Sized(_));
        let body = ex.rewritten_model.map_or(ForwardBody::Original, |m| ForwardBody::RewriteModel(n.models[m].clone()));
        Action::Forward(Forward {
            node: u32::try_from(node).unwrap_or(u32::MAX),
            attempt: ex.attempts,
            remove_headers: ex.unforwardable.clone(),
            body,
            connect_timeout_ms: n.timeouts.connect.as_millis(),
            first_byte_timeout_ms: n.timeouts.first_byte.as_millis(),
            idle_timeout_ms: n.timeouts.idle.as_millis(),
            total_timeout_ms: n.timeouts.total.as_millis(),
            // A fallback status only matters while the chain has nodes left.
            fallback: ex.next < ex.chain.len(),
            meter: n.cost_per_1k_tokens > 0.0 || ex.token_limited,
            fill: ex
                .fill
                .clone()
                .filter(|f| answers_for_key(&self.config, ex.fill_for, (node, ex.rewritten_model), f.http)),
            rule: ex.rule,
            cache: ex.cache,
            panic: panic.is_some(),
            ratelimit: ex.ratelimit,
            difficulty: ex.difficulty.filter(|_| ex.sized),
        })
    }

    /// The node an exchange with no node left goes to anyway, as Envoy's
    /// panic threshold and ejection cap would have it: when fewer than
    /// `health_check.panic_threshold` of the nodes it may use (its chain, which
    /// residency already filtered, without drained nodes) are healthy, the
    /// unhealthy ones are its last resort, the one whose cool-down ends first
    /// leading. Only a node that is unavailable for its health alone (not at
    /// capacity, paused or over budget), and that this exchange has not tried
    /// yet; never past the retry budget or a failure that may not be retried.
    /// The chain index of the node, if there is one, and how many of the
    /// request's nodes were healthy, of how many.
    pub(super) fn panic_pick(&mut self, id: u64, now_ms: u64) -> Option<(usize, (u32, u32))> {
        let threshold = self.config.health_check.panic_threshold;
        let ex = self.exchanges.get(&id)?;
        if threshold.get() == 0 || ex.retry_denied || ex.no_retry.is_some() {
            return None;
        }
        let mut candidates: Vec<usize> =
            ex.chain.iter().map(|(n, _)| *n).filter(|&n| !self.nodes[n].draining).collect();
        crate::order::sort(&mut candidates);
        candidates.dedup();
        let healthy = candidates.iter().filter(|&&n| self.nodes[n].breaker.admits(now_ms)).count();
        if candidates.is_empty() || !threshold.exceeds(healthy, candidates.len()) {
            return None;
        }
        let tried =
            |n: usize| ex.failures.iter().any(|(f, _)| *f == n) || ex.skipped_statuses.iter().any(|(s, _)| *s == n);
        let pick = ex
            .chain
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| !tried(*n))
            .filter_map(|(at, &(n, _))| {
                let open_until = self.nodes[n].breaker.next_chance_ms(now_ms)?;
                let cost = cost_of(ex.estimated_tokens, self.config.nodes[n].cost_per_1k_tokens);
                unavailable(&self.nodes, &self.config, n, cost, now_ms, false).is_none().then_some((open_until, at))
            })
            .min()
            .map(|(_, at)| at)?;
        let ex = self.exchanges.get_mut(&id)?;
        if !retry_granted(&mut self.retries, ex, now_ms) {
            return None;
        }
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Some((pick, (count(healthy), count(candidates.len()))))
    }

    pub(super) fn exhausted(&self, ex: &Exchange, now_ms: u64) -> RouterError {
        let id = |n: &usize| self.config.nodes[*n].id.as_str();
        if ex.attempts == 0 {
            return self.none_available(&ex.passed_over, now_ms);
        }
        let mut parts: Vec<String> = ex.failures.iter().map(|(n, f)| format!("{}: {}", id(n), f.describe())).collect();
        parts.extend(ex.skipped_statuses.iter().map(|(n, s)| format!("{}: answered {s}", id(n))));
        parts.extend(ex.passed_over.iter().map(|(n, why)| {
            let why = match why {
                PassedOver::Full => "at capacity",
                PassedOver::Unhealthy { .. } => "unhealthy",
                PassedOver::Resting { .. } => "rate limited",
                PassedOver::OverBudget { .. } => "daily budget spent",
                PassedOver::Draining => "draining",
            };
            format!("{}: {why}", id(n))
        }));
        if ex.retry_denied {
            parts.push("no further node tried: too many requests are failing over (retry budget spent)".into());
        }
        if let Some((node, why)) = ex.no_retry {
            parts.push(match why {
                NoRetry::BodyGone => "not sent to another node: its body was streamed through and is gone".into(),
                NoRetry::NotRepeatable => format!(
                    "not sent to another node: {} may have acted on it, and its method is not idempotent",
                    id(&node)
                ),
            });
        }
        let summary = parts.join("; ");
        match ex.failures.last() {
            Some((_, Failure::Timeout)) => RouterError::UpstreamTimeout(summary),
            _ => RouterError::UpstreamFailed(summary),
        }
    }

    /// The answer when no node of the chain could take even a first attempt:
    /// the most hopeful reason wins (a full node frees up soonest, then a
    /// pause ends, then a probe, then a budget day), with the time to retry.
    pub(super) fn none_available(&self, passed_over: &[(usize, PassedOver)], now_ms: u64) -> RouterError {
        let ids = |keep: fn(&PassedOver) -> Option<u64>| {
            let mut ids = Vec::new();
            let mut soonest = u64::MAX;
            for (n, why) in passed_over {
                if let Some(at) = keep(why) {
                    ids.push(self.config.nodes[*n].id.as_str());
                    soonest = soonest.min(at.saturating_sub(now_ms).div_ceil(1000).max(1));
                }
            }
            (!ids.is_empty()).then(|| (ids.join(", "), soonest))
        };
        if passed_over.iter().any(|(_, why)| *why == PassedOver::Full) || passed_over.is_empty() {
            return RouterError::AtCapacity;
        }
        if let Some((nodes, retry_after_s)) =
            ids(|w| if let PassedOver::Resting { until_ms, .. } = w { Some(*until_ms) } else { None })
        {
            let limited = passed_over.iter().any(|(_, w)| matches!(w, PassedOver::Resting { status: 429, .. }));
            return RouterError::Paused { nodes, retry_after_s, status: if limited { 429 } else { 503 } };
        }
        if let Some((nodes, retry_after_s)) =
            ids(|w| if let PassedOver::Unhealthy { probe_at_ms } = w { Some(*probe_at_ms) } else { None })
        {
            return RouterError::Unhealthy { nodes, retry_after_s };
        }
        if let Some((nodes, retry_after_s)) =
            ids(|w| if let PassedOver::OverBudget { until_ms } = w { Some(*until_ms) } else { None })
        {
            return RouterError::BudgetSpent { nodes, retry_after_s };
        }
        let draining = ids(|w| (*w == PassedOver::Draining).then_some(0)).map(|(nodes, _)| nodes);
        RouterError::Draining(draining.unwrap_or_default())
    }
}

pub(super) fn explain(config: &RouterConfig, ex: &Exchange) -> Vec<Header> {
    Explain::router(config.rule_label(ex.rule), ex.attempts, country_label(ex.country)).headers()
}

/// Why a node cannot take an attempt costing `cost` now, if it cannot
/// (`health`: an open breaker counts; without it, only the other reasons). (A
/// free function over the node's parts, so it can be asked while an
/// exchange is borrowed.)
pub(super) fn unavailable(
    nodes: &[NodeState],
    config: &RouterConfig,
    index: usize,
    cost: f64,
    now_ms: u64,
    health: bool,
) -> Option<PassedOver> {
    let (state, node) = (&nodes[index], &config.nodes[index]);
    if state.draining {
        return Some(PassedOver::Draining);
    }
    if let Some(probe_at_ms) = state.breaker.next_chance_ms(now_ms).filter(|_| health) {
        return Some(PassedOver::Unhealthy { probe_at_ms });
    }
    if state.resting_until_ms > now_ms {
        return Some(PassedOver::Resting { until_ms: state.resting_until_ms, status: state.resting_status });
    }
    let day = config.budget_day.of(now_ms);
    if !state.spend.admits(day, node.max_cost_per_day, cost) {
        return Some(PassedOver::OverBudget { until_ms: config.budget_day.end_ms(day) });
    }
    let full = node.max_concurrent.is_some_and(|max| state.in_flight >= max);
    full.then_some(PassedOver::Full)
}

/// The explanation added to the response of `node` (its index; `-` before
/// any attempt) for the exchange's current attempt.
pub(super) fn delivery_explain(config: &RouterConfig, ex: &Exchange, node: Option<usize>) -> Explain {
    let node = node.map(|i| &config.nodes[i]);
    Explain {
        node: node.map_or("-", |n| &n.id).to_string(),
        model: node.zip(ex.rewritten_model).map(|(n, m)| n.models[m].clone()),
        difficulty: ex.difficulty.filter(|_| ex.sized),
        rule: config.rule_label(ex.rule).to_string(),
        attempts: ex.attempts,
        country: country_label(ex.country),
        cache: ex.cache,
        panic: ex.panic,
        ratelimit: ex.ratelimit,
    }
}

/// Whether exchange `ex` may make its next attempt: the first always may; a
/// retry only while the retry budget lasts (which it then draws on). A
/// refusal is noted in the exchange, for its answer.
fn retry_granted(retries: &mut RetryBudget, ex: &mut Exchange, now_ms: u64) -> bool {
    if ex.attempts > 0 && !retries.try_withdraw(now_ms) {
        ex.retry_denied = true;
        return false;
    }
    true
}

/// Whether an attempt at `node`, asking for its model `model` (or the
/// client's when `None`), answers what the cache key made for `key` stands
/// for: the same model (any node serving it answers alike), or for a
/// passthrough `GET` (`http`), whose key names its node, the same node.
fn answers_for_key(
    config: &RouterConfig,
    key: (usize, Option<usize>),
    (node, model): (usize, Option<usize>),
    http: bool,
) -> bool {
    if http {
        return node == key.0;
    }
    let name = |node: usize, m: usize| config.nodes.get(node).and_then(|n| n.models.get(m));
    match (key.1, model) {
        (None, None) => true,
        (Some(k), Some(m)) => name(key.0, k).is_some_and(|k| name(node, m) == Some(k)),
        _ => false,
    }
}
