//! Daily budgets (`max_cost_per_day`) held across the fleet: each attempt
//! at a budgeted node reserves its estimate in the store's ledger for the
//! node, and the reservations the router releases are settled there. While
//! the store is away, a box spends alone up to its `local_share` of what the
//! fleet had left.

use std::sync::Arc;

use edge_router::machine::{BudgetClaim, Settlement};

use super::resp::Reply;
use super::{FleetStore, Script};
use crate::lock;

/// How long a budget reservation holds when its settlement never comes.
const BUDGET_RESERVATION_MS: u64 = 15 * 60 * 1000;

/// What the store said of a budget reservation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Reserved; the fleet has spent this much of the day (unknown when
    /// the box granted it alone).
    Granted(Option<f64>),
    /// It would take the node past its budget; the fleet's spending today.
    Refused(f64),
}

impl FleetStore {
    pub(super) fn budget_key(&self, node: &str) -> String {
        format!("{}:budget:{node}", self.prefix)
    }

    /// Reserves attempt `id`'s claim on its node's daily budget at the
    /// store. While the store is away, the box grants alone up to its
    /// `local_share` of what the fleet had left of the day's budget when it
    /// last heard.
    pub async fn reserve_budget(&self, id: u64, claim: &BudgetClaim, now_ms: u64) -> Budget {
        let args = vec![
            claim.day.to_string(),
            claim.amount.to_string(),
            claim.limit.to_string(),
            now_ms.to_string(),
            (now_ms + BUDGET_RESERVATION_MS).to_string(),
        ];
        let held = (id, claim.node.clone());
        if let Ok(reply) = self.run(Script::BudgetReserve, vec![self.budget_key(&claim.node)], args, now_ms).await {
            let number = |r: &Reply| r.text().and_then(|t| t.parse::<f64>().ok());
            if let Reply::Array(Some(items)) = &reply
                && let [granted, token, spent] = items.as_slice()
                && let (Some(granted), Some(token), Some(spent)) = (number(granted), token.text(), number(spent))
            {
                lock(&self.fleet_spent).insert(claim.node.clone(), (claim.day, spent));
                if granted != 1.0 {
                    return Budget::Refused(spent);
                }
                lock(&self.budgets).insert(held, (Some(token), claim.amount));
                return Budget::Granted(Some(spent));
            }
            tracing::warn!("the shared store's reply to a budget reservation was not understood: {reply:?}");
        }
        let known = lock(&self.fleet_spent).get(&claim.node).filter(|(d, _)| *d == claim.day).map_or(0.0, |(_, s)| *s);
        let allowance = (claim.limit - known).max(0.0) * f64::from(self.local_share) / 100.0;
        let mut health = lock(&self.health);
        let alone = health.budget_alone.entry((claim.node.clone(), claim.day)).or_insert(0.0);
        if *alone + claim.amount > allowance {
            // What the box knows was spent: not the limit, which would keep
            // the node from the router for the rest of the day, store or not.
            return Budget::Refused(known + *alone);
        }
        *alone += claim.amount;
        lock(&self.budgets).insert(held, (None, claim.amount));
        Budget::Granted(None)
    }

    /// Settles the reservations the router released at their costs.
    pub fn settle_budgets(self: &Arc<Self>, settled: Vec<Settlement>, now_ms: u64) {
        for s in settled {
            let Some((token, amount)) = lock(&self.budgets).remove(&(s.id, s.node.clone())) else { continue };
            let Some(token) = token else {
                // Granted alone: the cost counts against the box's share,
                // and reaches the store when it is back.
                let mut health = lock(&self.health);
                if let Some(alone) = health.budget_alone.get_mut(&(s.node.clone(), s.day)) {
                    *alone += s.cost - amount;
                }
                *health.spent_alone.entry((s.node, s.day)).or_insert(0.0) += s.cost;
                continue;
            };
            let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
            let store = self.clone();
            runtime.spawn(async move {
                let args = vec![token, s.day.to_string(), s.cost.to_string(), now_ms.to_string()];
                if store.run(Script::BudgetSettle, vec![store.budget_key(&s.node)], args, now_ms).await.is_err() {
                    // The reservation lapses in the store; the cost is added when it is back.
                    *lock(&store.health).spent_alone.entry((s.node, s.day)).or_insert(0.0) += s.cost;
                }
            });
        }
    }
}
