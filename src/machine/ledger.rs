//! The shared ledger: reservations a host makes at a ledger shared by many
//! routers (the Workers build's `BudgetLedger` Durable Object) before it
//! forwards to a node with a daily budget, and their settlements.

use super::{PassedOver, Router};
use crate::wire::Action;

/// What a request's reservation at a node with a daily budget is, for a
/// ledger shared by many routers (the Workers build's Durable Object): the
/// host reserves `amount` there before forwarding, and settles it at the
/// cost the router reports in a [`Settlement`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BudgetClaim {
    /// Node id.
    pub node: String,
    /// Budget day number.
    pub day: u32,
    /// The estimated cost reserved.
    pub amount: f64,
    /// The node's `max_cost_per_day`.
    pub limit: f64,
}

/// A released reservation at a node with a daily budget: what the attempt
/// of exchange `id` cost (zero when it failed or was passed over).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Settlement {
    /// Exchange id.
    pub id: u64,
    /// Node id.
    pub node: String,
    /// Budget day number.
    pub day: u32,
    /// What it cost.
    pub cost: f64,
}

impl Router {
    /// Makes the router keep a [`Settlement`] for every released
    /// reservation at a budgeted node, for a host that reserves at a shared
    /// ledger too (the Workers build). Such a host must drain them with
    /// `take_settled`; others never call this, and nothing is kept.
    pub fn record_settlements(&mut self) {
        self.recording_settlements = true;
    }

    /// The reservation the current attempt of exchange `id` holds, if its
    /// node has a daily budget.
    pub fn reservation(&self, id: u64) -> Option<BudgetClaim> {
        let ex = self.exchanges.get(&id)?;
        let node = ex.holding?;
        let limit = self.config.nodes[node].max_cost_per_day?;
        let day = self.nodes[node].spend.day();
        Some(BudgetClaim { node: self.config.nodes[node].id.clone(), day, amount: ex.reserved, limit })
    }

    /// Reservations at budgeted nodes released since the last call.
    pub fn take_settled(&mut self) -> Vec<Settlement> {
        std::mem::take(&mut self.settled)
    }

    /// The reservation of the last attempt made at a budgeted node, since
    /// the last call, for a host that reserves at a shared ledger (the edge
    /// box with `state.redis`): the module hands it out with its reply.
    pub fn take_claim(&mut self) -> Option<BudgetClaim> {
        self.claim.take()
    }

    /// A shared ledger refused the current attempt's reservation: the node
    /// is over its budget across all routers (`spent` so far today). The
    /// attempt never went out, so it is not counted, and the chain goes on.
    pub(super) fn on_budget_refused(&mut self, id: u64, spent: f64, now_ms: u64) -> Action {
        let Some(ex) = self.exchanges.get_mut(&id) else {
            return Action::Done;
        };
        if let Some(node) = ex.holding.take() {
            let day = self.config.budget_day.of(now_ms);
            ex.passed_over.push((node, PassedOver::OverBudget { until_ms: self.config.budget_day.end_ms(day) }));
            ex.attempts = ex.attempts.saturating_sub(1);
            let reserved = std::mem::take(&mut ex.reserved);
            self.nodes[node].breaker.on_abandoned(id, now_ms);
            self.nodes[node].spend.restore(day, spent);
            self.release(id, node, reserved, 0.0, now_ms);
        }
        self.next_attempt(id, now_ms)
    }
}
