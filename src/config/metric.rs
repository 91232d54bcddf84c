//! The metrics a config may name in `monitoring.metrics` and `autoscaling`:
//! what the router observes itself, and what only the node could tell.

/// A metric the router observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A node's requests in flight.
    ActiveRequests,
    /// A node's requests in flight as a percentage of its `max_concurrent`.
    Utilization,
    /// A node's failed attempts as a percentage of its attempts, last hour.
    ErrorRate,
    /// A node's median time to the response head, in ms, last hour.
    LatencyP50,
    /// A node's 95th-percentile time to the response head, in ms, last hour.
    LatencyP95,
    /// A node's spend today as a percentage of its `max_cost_per_day`.
    BudgetUsage,
    /// Each node's share of the requests served, last hour (fleet-wide).
    RoutingDistribution,
    /// Cached answers as a share of lookups (fleet-wide).
    CacheHitRatio,
}

/// Names and what they stand for; `node_` in front of a node's metric is optional.
const NAMES: [(&str, Metric); 8] = [
    ("active_requests", Metric::ActiveRequests),
    ("utilization", Metric::Utilization),
    ("error_rate", Metric::ErrorRate),
    ("latency_p50_ms", Metric::LatencyP50),
    ("latency_p95_ms", Metric::LatencyP95),
    ("budget_usage", Metric::BudgetUsage),
    ("routing_distribution", Metric::RoutingDistribution),
    ("cache_hit_ratio", Metric::CacheHitRatio),
];

/// Metrics that exist, but on the node's machine, out of the router's sight.
const ON_THE_NODE: [&str; 5] = ["cpu_usage", "memory_usage", "gpu_usage", "gpu_memory_usage", "disk_usage"];

impl Metric {
    /// The metric `name` names, or why the router cannot watch it.
    pub fn parse(name: &str) -> Result<Self, String> {
        let lower = name.trim().to_ascii_lowercase();
        let bare = lower.strip_prefix("node_").unwrap_or(&lower);
        if let Some((_, m)) = NAMES.iter().find(|(n, m)| *n == bare && (m.per_node() || bare == lower)) {
            return Ok(*m);
        }
        if ON_THE_NODE.contains(&bare) {
            return Err(format!(
                "`{name}` is measured on the node's own machine, which the router cannot see (it observes {})",
                Self::all_names()
            ));
        }
        Err(format!("`{name}` is not a metric the router knows (it observes {})", Self::all_names()))
    }

    /// Whether it is a node's metric rather than the fleet's.
    pub fn per_node(self) -> bool {
        !matches!(self, Self::RoutingDistribution | Self::CacheHitRatio)
    }

    /// The name used in configs.
    pub fn as_str(self) -> &'static str {
        NAMES.iter().find(|(_, m)| *m == self).map_or("?", |(n, _)| n)
    }

    fn all_names() -> String {
        NAMES.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", ")
    }

    /// The names of the node metrics, for messages.
    pub fn node_names() -> String {
        NAMES.iter().filter(|(_, m)| m.per_node()).map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_metrics_take_an_optional_node_prefix() {
        assert_eq!(Metric::parse("node_active_requests"), Ok(Metric::ActiveRequests));
        assert_eq!(Metric::parse("active_requests"), Ok(Metric::ActiveRequests));
        assert_eq!(Metric::parse("routing_distribution"), Ok(Metric::RoutingDistribution));
        assert!(Metric::parse("node_routing_distribution").is_err(), "a fleet metric is not a node's");
        for m in NAMES.map(|(_, m)| m) {
            assert_eq!(Metric::parse(m.as_str()), Ok(m));
        }
    }

    #[test]
    fn what_only_the_node_measures_is_named_as_such() {
        let err = Metric::parse("node_cpu_usage").unwrap_err();
        assert!(err.contains("node's own machine"), "{err}");
        let err = Metric::parse("vibes").unwrap_err();
        assert!(err.contains("not a metric the router knows") && err.contains("`utilization`"), "{err}");
    }
}
