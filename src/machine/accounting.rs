//! Accounting: an exchange's end frees its capacity slot, settles its cost
//! against the node's budget, and counts it in the day's tallies.

use origin_fallback::counts_as_failure;

use super::{Exchange, Router, Settlement, Tally, cost_of};
use crate::wire::{Spend, Spent, Usage};

impl Router {
    /// An exchange is over: its capacity slot is free, what it cost is
    /// settled, an answer whose body went through counts as the node's
    /// success, and if its node never answered (the client left first), a
    /// probe it carried is handed on.
    ///
    /// The cost is the `usage` the response reported; without one, a 2xx
    /// (or a request whose client left before the head) is charged its
    /// estimate, since the origin may well bill it, and anything else nothing.
    /// Returns the tokens charged (none if no node held the exchange).
    pub(super) fn close(&mut self, id: u64, ex: &Exchange, usage: Option<Usage>, now_ms: u64) -> u64 {
        let Some(node) = ex.holding else { return 0 };
        match ex.status {
            None => self.nodes[node].breaker.on_abandoned(id, now_ms),
            Some(status) if !counts_as_failure(status) && status != 429 && !ex.body_failed => {
                let transition = self.nodes[node].breaker.on_success(id);
                self.note(node, transition, String::new);
            }
            Some(_) => {}
        }
        let tokens = match (usage, ex.status) {
            (Some(u), _) => u.total(),
            (None, None) => ex.estimated_tokens,
            (None, Some(s)) if (200..300).contains(&s) => ex.estimated_tokens,
            (None, Some(_)) => 0,
        };
        let cost = cost_of(tokens, self.config.nodes[node].cost_per_1k_tokens);
        let day = self.config.budget_day.of(now_ms);
        for (tallies, key) in [(&mut self.tenants, &*ex.tenant), (&mut self.rules, self.config.rule_label(ex.rule))] {
            match tallies.get_mut(key) {
                Some(t) => t.add(day, tokens, cost),
                None => tallies.entry(key.to_string()).or_default().add(day, tokens, cost),
            }
        }
        self.nodes[node].today.add(day, tokens, cost);
        self.release(id, node, ex.reserved, cost, now_ms);
        tokens
    }

    /// Settles the tokens the exchange's rate limits reserved at `used`.
    pub(super) fn settle_limits(&mut self, ex: &Exchange, used: u64, now_ms: u64) {
        if !ex.limited.is_empty() {
            self.limiter.settle(&ex.limited, ex.estimated_tokens, used, now_ms);
        }
    }

    /// Frees `node`'s capacity slot and settles its reservation at `cost`.
    pub(super) fn release(&mut self, id: u64, node: usize, reserved: f64, cost: f64, now_ms: u64) {
        let day = self.config.budget_day.of(now_ms);
        let state = &mut self.nodes[node];
        state.in_flight = state.in_flight.saturating_sub(1);
        state.spend.settle(day, reserved, cost);
        state.spend_changed |= cost > 0.0;
        if self.recording_settlements && self.config.nodes[node].max_cost_per_day.is_some() {
            self.settled.push(Settlement { id, node: self.config.nodes[node].id.clone(), day, cost });
        }
    }

    /// Spending settled since the last call, for the host to keep (and hand
    /// back with `Event::Restore` after a module reload).
    pub fn take_spent(&mut self) -> Vec<Spend> {
        let mut by_index = Vec::new();
        self.take_spent_into(&mut by_index);
        let id = |s: &Spent| self.config.nodes[s.node as usize].id.clone();
        by_index.iter().map(|s| Spend { node: id(s), day: s.day, spent: s.spent }).collect()
    }

    /// [`take_spent`](Self::take_spent) with nodes by index, appended to
    /// `out`: what a module's reply carries.
    pub fn take_spent_into(&mut self, out: &mut Vec<Spent>) {
        for (i, n) in self.nodes.iter_mut().enumerate().filter(|(_, n)| n.spend_changed) {
            n.spend_changed = false;
            let day = n.spend.day();
            out.push(Spent { node: i as u32, day, spent: n.spend.spent(day) });
        }
    }
}

impl Tally {
    pub(super) fn add(&mut self, day: u32, tokens: u64, cost: f64) {
        if day > self.day {
            *self = Self { day, ..Self::default() };
        }
        self.requests += 1;
        self.tokens = self.tokens.saturating_add(tokens);
        self.cost += cost;
    }

    /// The tally as of `day` (empty if it is of an earlier day).
    pub(super) fn on(self, day: u32) -> Self {
        if day > self.day { Self { day, ..Self::default() } } else { self }
    }
}
