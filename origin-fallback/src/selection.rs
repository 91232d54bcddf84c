//! Ordering strategies: which of several eligible nodes is tried first.
//!
//! The router resolves a rule's target (an id or a glob) into candidates, and
//! a strategy turns them into the order of attempts. The first candidate that
//! has spare capacity is forwarded to; the rest are its fallbacks.

use std::cmp::Ordering;

/// How the router picks among several candidate nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Highest `priority` first; ties keep config order.
    Priority,
    /// Random, proportional to `weight`; the remaining order is drawn the same way.
    Weighted,
    /// Cheapest `cost_per_1k_tokens` first; ties fall back to priority.
    CostAware,
    /// Lowest observed latency first; nodes never observed are tried first so
    /// that they get measured.
    LatencyFirst,
}

impl Strategy {
    /// The name used in configs and explanations.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Priority => "priority",
            Self::Weighted => "weighted",
            Self::CostAware => "cost_aware",
            Self::LatencyFirst => "latency_first",
        }
    }
}

/// What a strategy needs to know about one candidate node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The node's position in the router's node table.
    pub node: usize,
    /// Larger is preferred.
    pub priority: i64,
    /// Relative share under `Strategy::Weighted`; zero or negative means never first.
    pub weight: f64,
    /// Price per 1,000 tokens.
    pub cost_per_1k_tokens: f64,
    /// Smoothed observed latency in microseconds, `None` before the first observation.
    pub latency_us: Option<u64>,
}

/// Orders `candidates` for one request. `random` is a uniformly distributed
/// 64-bit value supplied by the host; it is only used by `Weighted`.
pub fn order_candidates(strategy: Strategy, candidates: &[Candidate], random: u64) -> Vec<usize> {
    let mut ordered: Vec<Candidate> = candidates.to_vec();
    if strategy == Strategy::Weighted {
        return weighted_order(&ordered, random);
    }
    // One comparison for the three strategies: one compiled sort, not three
    // (the Worker's upload carries each).
    ordered.sort_by(|a, b| {
        let first = match strategy {
            Strategy::CostAware => a.cost_per_1k_tokens.total_cmp(&b.cost_per_1k_tokens),
            // `None` sorts before `Some`, which is exactly "unmeasured first".
            Strategy::LatencyFirst => a.latency_us.cmp(&b.latency_us),
            Strategy::Priority | Strategy::Weighted => std::cmp::Ordering::Equal,
        };
        first.then_with(|| by_priority(a, b))
    });
    ordered.into_iter().map(|c| c.node).collect()
}

/// Whether a request drawing `random` is one of the `percent` (0 to 100) of
/// a rule's traffic that goes to its canary. The draw is salted, so it does
/// not correlate with the weighted order drawn from the same value.
pub fn canary_draw(random: u64, percent: f64) -> bool {
    const SALT: u64 = 0xC0FF_EE00_CA9A_2157;
    let unit = (crate::mix64(random ^ SALT) >> 11) as f64 / (1u64 << 53) as f64;
    unit * 100.0 < percent
}

fn by_priority(a: &Candidate, b: &Candidate) -> Ordering {
    b.priority.cmp(&a.priority)
}

/// Weighted sampling without replacement: each step draws one of the remaining
/// candidates with probability proportional to its weight. Candidates with no
/// positive weight go last, in config order.
fn weighted_order(candidates: &[Candidate], random: u64) -> Vec<usize> {
    let mut rng = SplitMix64(random);
    let (mut pool, zero): (Vec<Candidate>, Vec<Candidate>) =
        candidates.iter().partition(|c| c.weight > 0.0 && c.weight.is_finite());
    let mut out = Vec::with_capacity(candidates.len());
    while !pool.is_empty() {
        let total: f64 = pool.iter().map(|c| c.weight).sum();
        let mut point = rng.next_unit() * total;
        let mut chosen = pool.len() - 1;
        for (i, c) in pool.iter().enumerate() {
            if point < c.weight {
                chosen = i;
                break;
            }
            point -= c.weight;
        }
        out.push(pool.remove(chosen).node);
    }
    out.extend(zero.into_iter().map(|c| c.node));
    out
}

/// A tiny deterministic generator seeded from the host's random value, so a
/// single 64-bit input can drive several draws.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float in `[0, 1)` built from the top 53 bits.
    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert_eq, proptest};

    fn node(node: usize, priority: i64, weight: f64, cost: f64, latency: Option<u64>) -> Candidate {
        Candidate { node, priority, weight, cost_per_1k_tokens: cost, latency_us: latency }
    }

    #[test]
    fn priority_prefers_larger_values_and_keeps_config_order_on_ties() {
        let c = [node(0, 1, 1.0, 0.0, None), node(1, 9, 1.0, 0.0, None), node(2, 1, 1.0, 0.0, None)];
        assert_eq!(order_candidates(Strategy::Priority, &c, 0), vec![1, 0, 2]);
    }

    #[test]
    fn cost_aware_prefers_cheapest_then_priority() {
        let c = [node(0, 1, 1.0, 0.5, None), node(1, 1, 1.0, 0.0, None), node(2, 5, 1.0, 0.5, None)];
        assert_eq!(order_candidates(Strategy::CostAware, &c, 0), vec![1, 2, 0]);
    }

    #[test]
    fn latency_first_tries_unmeasured_then_fastest() {
        let c = [node(0, 0, 1.0, 0.0, Some(900)), node(1, 0, 1.0, 0.0, Some(100)), node(2, 0, 1.0, 0.0, None)];
        assert_eq!(order_candidates(Strategy::LatencyFirst, &c, 0), vec![2, 1, 0]);
    }

    #[test]
    fn weighted_puts_zero_weight_nodes_last() {
        let c = [node(0, 0, 0.0, 0.0, None), node(1, 0, 1.0, 0.0, None)];
        for r in 0..100 {
            assert_eq!(order_candidates(Strategy::Weighted, &c, r), vec![1, 0]);
        }
    }

    #[test]
    fn weighted_first_choice_is_proportional_to_weight() {
        let c = [node(0, 0, 1.0, 0.0, None), node(1, 0, 3.0, 0.0, None)];
        let mut rng = SplitMix64(42);
        let n = 20_000;
        let firsts = (0..n).filter(|_| order_candidates(Strategy::Weighted, &c, rng.next_u64())[0] == 1).count();
        let share = firsts as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.02, "share of the weight-3 node was {share}");
    }

    #[test]
    fn the_canary_share_holds_within_a_percentage_point_over_ten_thousand_requests() {
        for percent in [1.0, 5.0, 25.0, 50.0] {
            let mut rng = SplitMix64(7);
            let n = 10_000;
            let hits = (0..n).filter(|_| canary_draw(rng.next_u64(), percent)).count();
            let share = hits as f64 * 100.0 / n as f64;
            assert!((share - percent).abs() <= 1.0, "{percent}% canary got {share}%");
        }
        assert!((0..1_000).all(|r| !canary_draw(r, 0.0) && canary_draw(r, 100.0)));
    }

    proptest! {
        #[test]
        fn every_strategy_returns_a_permutation(
            weights in proptest::collection::vec(0.0f64..10.0, 1..8),
            random in any::<u64>(),
        ) {
            let c: Vec<Candidate> = weights.iter().enumerate()
                .map(|(i, w)| node(i, (i % 3) as i64, *w, *w, Some(i as u64)))
                .collect();
            for s in [Strategy::Priority, Strategy::Weighted, Strategy::CostAware, Strategy::LatencyFirst] {
                let mut order = order_candidates(s, &c, random);
                order.sort_unstable();
                prop_assert_eq!(order, (0..c.len()).collect::<Vec<_>>());
            }
        }
    }
}
