//! What a scrape reads besides the request metrics: per node, breaker,
//! load, weight, drain and spend (from the status report), and the edge
//! cache's counters.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::metrics::NodeLabels;

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ScalingLabels {
    entry: String,
    node: String,
    action: String,
    metric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct BreakerLabels {
    node: String,
    state: &'static str,
}

/// What the router and the cache hold at a scrape: per node, breaker,
/// load and spend (from the status report), and the cache's counters.
pub struct State {
    pub status: serde_json::Value,
}

impl State {
    pub(super) fn registry(&self) -> Registry {
        let mut r = Registry::default();
        let gauge_family =
            |r: &mut Registry, name: &str, help: &str, read: &dyn Fn(&serde_json::Value) -> Option<f64>| {
                let family = Family::<NodeLabels, Gauge<f64, AtomicU64>>::default();
                for n in self.status["nodes"].as_array().map(Vec::as_slice).unwrap_or_default() {
                    let (Some(id), Some(value)) = (n["id"].as_str(), read(n)) else { continue };
                    family.get_or_create(&NodeLabels { node: id.to_string() }).set(value);
                }
                r.register(name, help, family);
            };
        gauge_family(&mut r, "edge_router_node_in_flight", "Requests in flight at the node", &|n| {
            n["in_flight"].as_f64()
        });
        gauge_family(&mut r, "edge_router_node_max_concurrent", "The node's max_concurrent (absent: no limit)", &|n| {
            n["max_concurrent"].as_f64()
        });
        gauge_family(&mut r, "edge_router_node_weight", "The node's weight, as configured or set", &|n| {
            n["weight"].as_f64()
        });
        gauge_family(&mut r, "edge_router_node_draining", "1 while an operator drains the node", &|n| {
            n["draining"].as_bool().map(f64::from)
        });
        gauge_family(&mut r, "edge_router_node_spend_today", "What the node's answers cost this budget day", &|n| {
            n["today"]["cost"].as_f64()
        });
        gauge_family(
            &mut r,
            "edge_router_node_max_cost_per_day",
            "The node's daily cost budget (absent: none)",
            &|n| n["today"]["max_cost_per_day"].as_f64(),
        );
        let breaker = Family::<BreakerLabels, Gauge>::default();
        for n in self.status["nodes"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let (Some(id), Some(state)) = (n["id"].as_str(), n["breaker"]["state"].as_str()) else { continue };
            for s in ["closed", "open", "half_open"] {
                breaker.get_or_create(&BreakerLabels { node: id.to_string(), state: s }).set(i64::from(s == state));
            }
        }
        r.register("edge_router_node_breaker", "1 for the state the node's breaker is in", breaker);
        self.scaling(&mut r);
        let cache = &self.status["cache_store"];
        for (name, key, help) in [
            ("edge_router_cache_hits", "hits", "Cache lookups that found an entry"),
            ("edge_router_cache_misses", "misses", "Cache lookups that found none"),
            ("edge_router_cache_evictions", "evictions", "Entries evicted to make room"),
        ] {
            let counter = Counter::<u64>::default();
            counter.inc_by(cache[key].as_u64().unwrap_or(0));
            r.register(name, help, counter);
        }
        for (name, key, help) in [
            ("edge_router_cache_bytes", "bytes", "Bytes the cache's entries hold"),
            ("edge_router_cache_entries", "entries", "Entries in the cache"),
            ("edge_router_cache_capacity_bytes", "capacity", "Bytes the cache may hold (cache.memory)"),
        ] {
            let gauge = Gauge::<i64>::default();
            gauge.set(cache[key].as_i64().unwrap_or(0));
            r.register(name, help, gauge);
        }
        r
    }

    /// Each `autoscaling` entry: its signals, its metric's reading, and
    /// whether its condition holds; and the webhooks' outcomes.
    fn scaling(&self, r: &mut Registry) {
        let signals = Family::<ScalingLabels, Counter<u64>>::default();
        let value = Family::<ScalingLabels, Gauge<f64, AtomicU64>>::default();
        let active = Family::<ScalingLabels, Gauge>::default();
        for e in self.status["scaling"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            let labels = ScalingLabels {
                entry: text("entry"),
                node: text("node"),
                action: text("action"),
                metric: text("metric"),
            };
            signals.get_or_create(&labels).inc_by(e["signals"].as_u64().unwrap_or(0));
            if let Some(v) = e["value"].as_f64() {
                value.get_or_create(&labels).set(v);
            }
            active.get_or_create(&labels).set(i64::from(e["active"].as_bool().unwrap_or(false)));
        }
        r.register("edge_router_scaling_signals", "Scaling signals each autoscaling entry gave", signals);
        r.register("edge_router_scaling_value", "The last reading of each autoscaling entry's metric", value);
        r.register("edge_router_scaling_active", "1 while an autoscaling entry's condition holds", active);
        let webhooks = Family::<OutcomeLabels, Counter<u64>>::default();
        for outcome in ["sent", "failed"] {
            let n = self.status["scaling_webhooks"][outcome].as_u64().unwrap_or(0);
            webhooks.get_or_create(&OutcomeLabels { outcome }).inc_by(n);
        }
        r.register("edge_router_scaling_webhooks", "Scaling signals posted to a webhook, by outcome", webhooks);
    }
}
