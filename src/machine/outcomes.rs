//! Outcomes: what an origin's response head or failure does to its node
//! (health, latency, pauses) and to the request (deliver, or fall back).

use origin_fallback::{
    BreakerState, GOLDEN_GAMMA, RetryType, Transition, counts_as_failure, may_retry, mix64, saturating_mul_by,
};

use super::{MAX_RETRY_AFTER_S, Router, cost_of, delivery_explain, unavailable};
use crate::wire::{Action, FALLBACK_STATUSES, Failure, Notice};

impl Router {
    pub(super) fn on_response_head(
        &mut self,
        id: u64,
        status: u16,
        retry_after_s: Option<u32>,
        now_ms: u64,
        answer: bool,
    ) -> Action {
        let Some(ex) = self.exchanges.get_mut(&id) else {
            return Action::Done;
        };
        ex.last_activity_ms = now_ms;
        let Some(node) = ex.holding else {
            return Action::Done;
        };
        ex.status = Some(status);
        let panic = ex.panic;
        let latency_us = saturating_mul_by(now_ms.saturating_sub(ex.sent_ms), 1000);
        if status < 500 {
            self.latency.observe(node, latency_us);
        }
        let failed = counts_as_failure(status);
        let state = &mut self.nodes[node];
        state.traffic.answered(now_ms, latency_us, failed);
        if let Some(pause) = retry_after_s.filter(|_| matches!(status, 429 | 503)) {
            let pause_ms = u64::from(pause).min(MAX_RETRY_AFTER_S) * 1000;
            state.resting_until_ms = state.resting_until_ms.max(now_ms + pause_ms);
            state.resting_status = status;
        }
        // Whether another node may be tried, asked only of a status that allows it.
        let more = || {
            self.retries.allows(now_ms)
                && ex.chain[ex.next..].iter().any(|&(n, _)| {
                    let cost = cost_of(ex.estimated_tokens, self.config.nodes[n].cost_per_1k_tokens);
                    unavailable(&self.nodes, &self.config, n, cost, now_ms, true).is_none()
                })
        };
        let deliver = !FALLBACK_STATUSES.contains(&status) || !more();
        // The explanation is only built for a caller who reads it.
        let explain = (deliver && answer).then(|| delivery_explain(&self.config, ex, Some(node)));
        if failed {
            self.charge_failure(node, id, now_ms, || format!("it answered {status}"));
        }
        let breaker = &mut self.nodes[node].breaker;
        let probing = matches!(breaker.state(), BreakerState::HalfOpen { probe, .. } if probe == id);
        if panic {
            // Sent while its breaker was open: a good answer shows the node
            // serves, and closes it; a bad one leaves it to its probe.
            let transition = breaker.on_panic_answer(!failed && status != 429);
            self.note(node, transition, String::new);
        } else if status == 429 {
            // A rate limit says nothing of health; a probe it answered is handed on.
            breaker.on_abandoned(id, now_ms);
        } else if !failed && (probing || !deliver) {
            // A good head closes a probing breaker at once, so a recovered
            // node is not kept out for as long as the probe's stream runs;
            // a body that then breaks off counts as a failure as usual.
            let transition = breaker.on_success(id);
            self.note(node, transition, String::new);
        }
        if deliver {
            // Otherwise a delivered answer's success is judged when its body
            // has gone through (see `close`).
            self.nodes[node].traffic.served(now_ms);
            return explain.map_or(Action::Done, Action::Deliver);
        }
        if let Some(ex) = self.exchanges.get_mut(&id) {
            ex.skipped_statuses.push((node, status));
            ex.holding = None;
            let reserved = std::mem::take(&mut ex.reserved);
            self.release(id, node, reserved, 0.0, now_ms);
        }
        self.next_attempt(id, now_ms)
    }

    /// Randomness for a breaker's jitter: the last request's `random`, mixed
    /// with `salt`, so it stays a function of the events.
    pub(super) fn jitter(&self, salt: u64) -> u64 {
        mix64(self.entropy ^ salt.wrapping_mul(GOLDEN_GAMMA))
    }

    /// Charges `node` with a failure of exchange `id` (`why` says what, for
    /// the notice if the breaker opens).
    pub(super) fn charge_failure(&mut self, node: usize, id: u64, now_ms: u64, why: impl FnOnce() -> String) {
        let jitter = self.jitter(id);
        let transition = self.nodes[node].breaker.on_failure(id, now_ms, jitter);
        self.note(node, transition, why);
    }

    pub(super) fn on_origin_failed(&mut self, id: u64, failure: Failure, retry: RetryType, now_ms: u64) -> Action {
        let Some(ex) = self.exchanges.get_mut(&id) else {
            return Action::Done;
        };
        ex.last_activity_ms = now_ms;
        if let Some(node) = ex.holding.take() {
            ex.failures.push((node, failure));
            if let Err(why) = may_retry(retry, ex.body_kept, ex.repeatable) {
                // The rest of the chain is not tried.
                ex.no_retry = Some((node, why));
                ex.next = ex.chain.len();
            }
            let reserved = std::mem::take(&mut ex.reserved);
            self.nodes[node].traffic.failed(now_ms);
            self.charge_failure(node, id, now_ms, || failure.describe().to_string());
            self.release(id, node, reserved, 0.0, now_ms);
        }
        self.next_attempt(id, now_ms)
    }

    /// Records a breaker transition of `node` for the host; `why` is only
    /// asked for when the breaker opened.
    pub(super) fn note(&mut self, node: usize, transition: Option<Transition>, why: impl FnOnce() -> String) {
        let Some(t) = transition else { return };
        // A new opening (or the end of one) is told anew if a panic uses it.
        self.nodes[node].panic_told = false;
        let node = self.config.nodes[node].id.clone();
        self.notices.push(match t {
            Transition::Opened { for_ms } => Notice::Unhealthy { node, reason: why(), probe_in_ms: for_ms },
            Transition::Probing => Notice::Probing { node },
            Transition::Closed => Notice::Healthy { node },
        });
    }
}
