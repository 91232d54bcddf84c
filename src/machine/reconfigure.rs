//! A new config for a running router (the edge box's live reload): what the
//! router knows of each node that remains — breaker, load, spending, the
//! day's tallies, weights an operator set, drains, pauses, latencies — is
//! kept by node id, and the exchanges in flight go on, their nodes and
//! rules found again by id and label. A node the new config drops is gone
//! from every exchange's remaining chain; one it adds starts afresh. Rate
//! limits keep their buckets, by key digest and tenant name.

use super::{Exchange, NodeState, Router, breaker_policy, retry_policy};
use crate::config::RouterConfig;
use crate::limits::Scope;
use crate::model::ModelChoice;
use crate::wire::RuleRef;

impl Router {
    /// Takes `config` in place of the one it runs.
    pub fn reconfigure(&mut self, config: RouterConfig) {
        // For each node of the new config, its index in the old one; and the reverse.
        let was: Vec<Option<usize>> = config.nodes.iter().map(|n| self.config.node_index(&n.id)).collect();
        let now_at: Vec<Option<usize>> = self.config.nodes.iter().map(|n| config.node_index(&n.id)).collect();
        let policy = breaker_policy(&config);
        let mut old: Vec<Option<NodeState>> = std::mem::take(&mut self.nodes).into_iter().map(Some).collect();
        self.nodes = config
            .nodes
            .iter()
            .zip(&was)
            .map(|(node, was)| match was.and_then(|i| old.get_mut(i)?.take()) {
                Some(mut state) => {
                    state.breaker.set_policy(policy);
                    if !state.weight_set {
                        state.weight = node.weight;
                    }
                    state
                }
                None => NodeState::new(node, policy),
            })
            .collect();
        for ex in self.exchanges.values_mut() {
            carry_over(ex, &self.config, &config, &now_at);
        }
        self.latency = self.latency.remapped(&was);
        self.retries.set_policy(retry_policy(&config));
        // Rate-limit buckets stay with the keys and tenants that keep limits.
        let auth = &config.auth;
        self.limiter.retain(|scope| match scope {
            Scope::Key(digest) => auth.entries.iter().any(|k| k.digest == *digest && k.rates.any()),
            Scope::Tenant(name) => auth.tenants.get(name).is_some_and(|t| t.rates.any()),
        });
        self.recording_settlements |= config.state.redis.is_some();
        self.config = config;
    }
}

/// Exchange `ex`, made under `old`, in the terms of `new`: `now_at[i]` is
/// where node `i` of `old` is in `new`.
fn carry_over(ex: &mut Exchange, old: &RouterConfig, new: &RouterConfig, now_at: &[Option<usize>]) {
    let at = |i: usize| now_at.get(i).copied().flatten();
    // A rewrite names a model by its place in the node's `models`: found again by name.
    let model = |from: usize, to: usize, k: usize| {
        let name = old.nodes.get(from)?.models.get(k)?;
        new.nodes.get(to)?.models.iter().position(|m| m == name)
    };
    let mut next = 0;
    let mut chain = Vec::with_capacity(ex.chain.len());
    for (position, (node, choice)) in ex.chain.drain(..).enumerate() {
        let Some(to) = at(node) else { continue };
        let choice = match choice {
            ModelChoice::Rewrite(k) => match model(node, to, k) {
                Some(k) => ModelChoice::Rewrite(k),
                None => continue,
            },
            ModelChoice::Sized(k) => match model(node, to, k) {
                Some(k) => ModelChoice::Sized(k),
                None => continue,
            },
            other => other,
        };
        if position < ex.next {
            next += 1;
        }
        chain.push((to, choice));
    }
    ex.chain = chain;
    ex.next = next;
    let held = ex.holding;
    ex.holding = held.and_then(at);
    ex.rewritten_model = match (held, ex.holding, ex.rewritten_model) {
        (Some(from), Some(to), Some(k)) => model(from, to, k),
        _ => None,
    };
    if ex.holding.is_none() {
        // The slot and the reservation were the dropped node's.
        ex.reserved = 0.0;
    }
    ex.rule = match ex.rule {
        RuleRef::Rule(i) => {
            let label = old.rules.get(i as usize).map(|r| r.label.as_str());
            match new.rules.iter().position(|r| Some(r.label.as_str()) == label) {
                Some(j) => RuleRef::Rule(j as u32),
                None => RuleRef::Default,
            }
        }
        other => other,
    };
    ex.failures = ex.failures.drain(..).filter_map(|(n, f)| Some((at(n)?, f))).collect();
    ex.skipped_statuses = ex.skipped_statuses.drain(..).filter_map(|(n, s)| Some((at(n)?, s))).collect();
    ex.passed_over = ex.passed_over.drain(..).filter_map(|(n, p)| Some((at(n)?, p))).collect();
    ex.no_retry = ex.no_retry.and_then(|(n, why)| Some((at(n)?, why)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Action, Control, Event, Usage};

    fn config(yaml: &str) -> RouterConfig {
        RouterConfig::load("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    /// A chat request for `model` at `now_ms` (the machine tests' `chat_event`).
    fn chat(id: u64, model: &str, now_ms: u64) -> Event {
        let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
        crate::machine::chat_event(id, now_ms, 0, &body)
    }

    fn node_of<'r>(r: &'r Router, action: &Action) -> Option<&'r str> {
        crate::machine::forward_id(r, action)
    }

    const BEFORE: &str = "nodes:
  - {id: a, type: local, host: \"http://a\", weight: 1, cost_per_1k_tokens: 1, max_concurrent: 4}
  - {id: b, type: cloud, host: \"http://b\", weight: 1}
  - {id: gone, type: cloud, host: \"http://g\"}
routing:
  rules:
    - {name: to-a, match: {model: \"m\"}, target: a, fallback: [gone, b]}
";

    #[test]
    fn nodes_that_remain_keep_their_state_and_an_exchange_in_flight_finishes_at_its_node() {
        let mut r = Router::new(config(BEFORE));
        // In flight at `a`, with `gone` and `b` left in its chain.
        let first = r.handle(chat(1, "m", 1_000));
        assert_eq!(node_of(&r, &first), Some("a"));
        r.handle(Event::ResponseHead { id: 1, status: 200, retry_after_s: None, now_ms: 1_010 });
        // An operator set b's weight and drains `gone`; `a` has spent 0.5.
        r.handle(Event::Control { command: Control::SetWeight { node: "b".into(), weight: 0.25 }, now_ms: 1_020 });
        r.handle(chat(2, "m", 1_030));
        r.handle(Event::ResponseHead { id: 2, status: 200, retry_after_s: None, now_ms: 1_040 });
        r.handle(Event::Finished {
            id: 2,
            usage: Some(Usage { prompt_tokens: 200, completion_tokens: 300 }),
            now_ms: 1_050,
        });

        // The new config drops `gone`, adds `c` first, and changes weights.
        r.reconfigure(config(
            "nodes:
  - {id: c, type: edge, host: \"http://c\"}
  - {id: b, type: cloud, host: \"http://b\", weight: 3}
  - {id: a, type: local, host: \"http://a\", weight: 2, cost_per_1k_tokens: 1, max_concurrent: 4}
routing:
  rules:
    - {name: other, match: {model: \"x\"}, target: c}
    - {name: to-a, match: {model: \"m\"}, target: a, fallback: [b]}
",
        ));
        let ids: Vec<&str> = r.config().nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"]);
        assert_eq!(r.in_flight(), [0, 0, 1], "a's slot is held by exchange 1 still");
        assert_eq!(
            (r.nodes[1].weight, r.nodes[2].weight),
            (0.25, 2.0),
            "an operator's weight stays; a's is the file's"
        );
        // Exchange 1 finishes at `a`, under the rule it started with (found again by label).
        r.handle(Event::Finished {
            id: 1,
            usage: Some(Usage { prompt_tokens: 100, completion_tokens: 400 }),
            now_ms: 1_100,
        });
        assert_eq!(r.in_flight(), [0, 0, 0]);
        let day = r.config.budget_day.of(1_100);
        assert!((r.nodes[2].spend.spent(day) - 1.0).abs() < 1e-9, "both exchanges' cost is a's");
        assert_eq!(r.rules.get("to-a").map(|t| t.requests), Some(2));
        // New requests follow the new config.
        let next = r.handle(chat(3, "x", 1_200));
        assert_eq!(node_of(&r, &next), Some("c"));
    }

    #[test]
    fn a_fallback_after_a_reload_skips_a_node_the_new_config_dropped() {
        let mut r = Router::new(config(BEFORE));
        let first = r.handle(chat(1, "m", 1_000));
        assert_eq!(node_of(&r, &first), Some("a"));
        r.reconfigure(config(
            "nodes:
  - {id: a, type: local, host: \"http://a\", cost_per_1k_tokens: 1}
  - {id: b, type: cloud, host: \"http://b\"}
routing:
  rules:
    - {name: to-a, match: {model: \"m\"}, target: a, fallback: [b]}
",
        ));
        let next = r.handle(Event::ResponseHead { id: 1, status: 503, retry_after_s: None, now_ms: 1_010 });
        assert_eq!(node_of(&r, &next), Some("b"), "`gone` was next in the chain, and is no more");
    }
}
