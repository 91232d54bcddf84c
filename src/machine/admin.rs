//! What operators see and change: the status report, run-time weights,
//! draining, and the state a fresh module instance takes over.

use origin_fallback::BreakerState;
use serde_json::{Value, json};

use super::{Router, Tally};
use crate::error::{RouterError, headers};
use crate::wire::{Action, Control, Header, Restore};

impl Router {
    /// Carries out an operator's change; the answer is JSON.
    pub(super) fn control(&mut self, command: Control, now_ms: u64) -> Action {
        let node = match &command {
            Control::SetWeight { node, .. } | Control::Drain { node } | Control::Undrain { node } => node,
        };
        let Some(i) = self.config.node_index(node) else {
            let known: Vec<&str> = self.config.nodes.iter().map(|n| n.id.as_str()).collect();
            let message = format!("no node has the id `{node}` (nodes: {})", known.join(", "));
            return admin_error(&RouterError::NotFound(message));
        };
        let state = &mut self.nodes[i];
        match command {
            Control::SetWeight { weight, .. } => {
                if !(weight.is_finite() && weight >= 0.0) {
                    let message = format!("a weight must be a number of zero or more, not {weight}");
                    return admin_error(&RouterError::BadRequest(message));
                }
                state.weight = weight;
                state.weight_set = true;
            }
            Control::Drain { .. } => state.draining = true,
            Control::Undrain { .. } => state.draining = false,
        }
        json_answer(200, &self.node_status(i, now_ms, None))
    }

    /// Takes over what a previous instance reported to the host.
    pub(super) fn restore(&mut self, state: Restore) {
        for s in state.spent {
            if let Some(i) = self.config.node_index(&s.node) {
                self.nodes[i].spend.restore(s.day, s.spent);
            }
        }
        for (node, weight) in state.weights {
            if let Some(i) = self.config.node_index(&node) {
                self.nodes[i].weight = weight;
                self.nodes[i].weight_set = true;
            }
        }
        for node in state.draining {
            if let Some(i) = self.config.node_index(&node) {
                self.nodes[i].draining = true;
            }
        }
    }

    /// The status report (see `docs/admin.md` for its fields).
    pub(super) fn status(&self, now_ms: u64) -> Action {
        let day = self.config.budget_day.of(now_ms);
        let served: u64 = self.nodes.iter().map(|n| n.traffic.summary(now_ms).served).sum();
        let nodes: Vec<Value> = (0..self.nodes.len()).map(|i| self.node_status(i, now_ms, Some(served))).collect();
        let tally = |map: &std::collections::BTreeMap<String, Tally>| -> Value {
            map.iter()
                .map(|(k, t)| {
                    let t = t.on(day);
                    (k.clone(), json!({"requests": t.requests, "tokens": t.tokens, "cost": t.cost}))
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let report = json!({
            "name": self.config.name,
            "version": self.config.version,
            "now_ms": now_ms,
            "budget_day_resets_in_s": self.config.budget_day.end_ms(day).saturating_sub(now_ms).div_ceil(1000),
            "requests_in_flight": self.exchanges.len(),
            "cache_hits": self.cache_hits,
            "nodes": nodes,
            "tenants_today": tally(&self.tenants),
            "rules_today": tally(&self.rules),
        });
        json_answer(200, &report)
    }

    /// Node `i`'s entry of the report; `served_by_all` is the last hour's
    /// requests served by every node (asked for when absent).
    fn node_status(&self, i: usize, now_ms: u64, served_by_all: Option<u64>) -> Value {
        let (node, state) = (&self.config.nodes[i], &self.nodes[i]);
        let day = self.config.budget_day.of(now_ms);
        let traffic = state.traffic.summary(now_ms);
        let served_by_all =
            served_by_all.unwrap_or_else(|| self.nodes.iter().map(|n| n.traffic.summary(now_ms).served).sum());
        let breaker = match state.breaker.state() {
            BreakerState::Closed { failures } => json!({"state": "closed", "failures": failures}),
            BreakerState::Open { until_ms, .. } => {
                json!({"state": "open", "probe_in_ms": until_ms.saturating_sub(now_ms)})
            }
            BreakerState::HalfOpen { .. } => json!({"state": "half_open"}),
        };
        let health = match state.breaker.state() {
            BreakerState::Closed { .. } => "healthy",
            BreakerState::Open { .. } => "unhealthy",
            BreakerState::HalfOpen { .. } => "probing",
        };
        let ms = |us: Option<u64>| us.map(|us| us as f64 / 1000.0);
        let share = |part: u64, whole: u64| if whole == 0 { 0.0 } else { part as f64 / whole as f64 };
        let today = state.today.on(day);
        json!({
            "id": node.id,
            "type": node.node_type.as_str(),
            "provider": node.provider,
            "api": node.api.as_str(),
            "region": node.region,
            "location": node.location,
            "health": health,
            "breaker": breaker,
            "draining": state.draining,
            "rate_limited_for_ms": state.resting_until_ms.saturating_sub(now_ms),
            "in_flight": state.in_flight,
            "max_concurrent": node.max_concurrent,
            "weight": state.weight,
            "last_hour": {
                "attempts": traffic.attempts,
                "failures": traffic.failures,
                "error_rate": share(traffic.failures, traffic.attempts),
                "served": traffic.served,
                "share_of_traffic": share(traffic.served, served_by_all),
                "p50_ms": ms(traffic.p50_us),
                "p95_ms": ms(traffic.p95_us),
                "p99_ms": ms(traffic.p99_us),
                "served_per_5min": traffic.served_per_slot,
            },
            "today": {
                "requests": today.requests,
                "tokens": today.tokens,
                "cost": state.spend.spent(day),
                "reserved": state.spend.reserved(),
                "max_cost_per_day": node.max_cost_per_day,
            },
        })
    }
}

/// An operator's request refused (`Control` carries no request id: the
/// admin API's own id is on its response).
fn admin_error(error: &RouterError) -> Action {
    let (status, headers, body) = error.to_response(0, Vec::new());
    Action::Respond { status, headers, body }
}

fn json_answer(status: u16, body: &Value) -> Action {
    Action::Respond {
        status,
        headers: vec![Header::new("content-type", "application/json"), Header::new(headers::NODE, "-")],
        body: serde_json::to_vec_pretty(body).unwrap_or_default(),
    }
}
