//! Scaling signals: each `autoscaling` entry's metric compared with its
//! threshold at every evaluation, with hysteresis and a cool-down. This is
//! the decision only; `crate::scaling` reads the metrics and sends what it
//! decides. The router never owns instances: a signal says which way a
//! node's instances should go, and within which bounds.
//!
//! An entry's condition starts when its metric has been past the threshold
//! (above it for `scale_out`, below it for `scale_in`) for its `for`
//! duration, and ends only when the metric is back past the threshold by
//! the `hysteresis`. While the condition holds, the entry signals when the
//! metric is past the threshold and its last signal is at least a
//! `cooldown` old: a metric that hovers at the threshold signals once, and
//! one that stays past it signals again each cool-down.

use edge_router::config::{AutoscalingConfig, Metric, RouterConfig, ScaleAction, Series};

/// Where an entry's metric comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// What the router observes of the node (the status report).
    Router(Metric),
    /// A series on the node's own Prometheus endpoint.
    Node { url: String, series: Series },
}

/// One `autoscaling` entry and what its evaluation has seen.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `autoscaling[i]`, for messages.
    pub label: String,
    pub node: String,
    /// The metric as the config names it.
    pub metric: String,
    pub source: Source,
    pub action: ScaleAction,
    pub threshold: f64,
    hysteresis: f64,
    for_ms: u64,
    cooldown_ms: u64,
    pub min_instances: Option<u32>,
    pub max_instances: Option<u32>,
    /// Where its signals go, if anywhere.
    pub webhook: Option<String>,
    state: State,
}

/// What an entry has seen so far.
#[derive(Debug, Clone, Default, PartialEq)]
struct State {
    /// Since when the metric has been past the threshold, while the
    /// condition has not started.
    past_since_ms: Option<u64>,
    /// Whether the condition holds.
    active: bool,
    last_signal_ms: Option<u64>,
    /// The metric's last reading; `None` when it could not be read.
    value: Option<f64>,
    /// Why the last reading failed.
    unread: Option<String>,
    signals: u64,
}

/// A signal to send: an entry's condition, at one moment.
#[derive(Debug, Clone)]
pub struct Signal {
    /// Unique for this process: the `Idempotency-Key` of its webhook.
    pub id: String,
    pub time_ms: u64,
    pub entry: Entry,
    pub value: f64,
}

impl Signal {
    /// The webhook's body and the log's fields.
    pub fn json(&self, config_name: &str) -> serde_json::Value {
        let e = &self.entry;
        serde_json::json!({
            "id": self.id,
            "time": exchange::record::rfc3339_ms(self.time_ms),
            "config": config_name,
            "entry": e.label,
            "node": e.node,
            "action": e.action.as_str(),
            "metric": e.metric,
            "value": self.value,
            "threshold": e.threshold,
            "min_instances": e.min_instances,
            "max_instances": e.max_instances,
        })
    }

    /// One line for the service log.
    pub fn line(&self) -> String {
        let e = &self.entry;
        let (sign, bounds) = match e.action {
            ScaleAction::ScaleOut => (">", e.max_instances.map(|n| format!(", max_instances {n}"))),
            ScaleAction::ScaleIn => ("<", e.min_instances.map(|n| format!(", min_instances {n}"))),
        };
        format!(
            "scaling signal {}: {} node {}: {} {} {sign} {} ({}{})",
            self.id,
            e.action.as_str(),
            e.node,
            e.metric,
            round(self.value),
            e.threshold,
            e.label,
            bounds.unwrap_or_default()
        )
    }
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The entries of a config that can give signals, and why the others cannot.
pub fn entries(config: &RouterConfig) -> (Vec<Entry>, Vec<String>) {
    let (mut usable, mut skipped) = (Vec::new(), Vec::new());
    for (i, a) in config.autoscaling.iter().enumerate() {
        let label = format!("autoscaling[{i}]");
        match entry(config, label.clone(), a) {
            Ok(e) => usable.push(e),
            Err(why) => skipped.push(format!(
                "{label} ({} {} on {}) gives no signal: {why}",
                a.action.as_str(),
                a.metric,
                a.node
            )),
        }
    }
    (usable, skipped)
}

fn entry(config: &RouterConfig, label: String, a: &AutoscalingConfig) -> Result<Entry, String> {
    let node = config.node_index(&a.node).map(|i| &config.nodes[i]).ok_or("no node has that id")?;
    let source = match (Metric::parse(&a.metric), &node.metrics_url) {
        (Ok(metric), _) => Source::Router(metric),
        (Err(_), Some(url)) => {
            let series = Series::parse(a.series.as_deref().unwrap_or(&a.metric))?;
            Source::Node { url: url.clone(), series }
        }
        (Err(why), None) => return Err(format!("{why}, and the node names no metrics_url")),
    };
    let webhook = a.webhook.clone().or_else(|| config.monitoring.scaling.webhook.clone());
    Ok(Entry {
        label,
        node: a.node.clone(),
        metric: a.metric.clone(),
        source,
        action: a.action,
        threshold: a.threshold,
        hysteresis: a.hysteresis(),
        for_ms: a.sustained.map_or(0, |d| d.as_millis()),
        cooldown_ms: a.cooldown().as_millis(),
        min_instances: a.min_instances,
        max_instances: a.max_instances,
        webhook,
        state: State::default(),
    })
}

impl Entry {
    /// What identifies an entry across reloads: its evaluation goes on
    /// when a reload keeps it, wherever it moved in the list.
    fn key(&self) -> (&str, &str, ScaleAction, &Source) {
        (&self.node, &self.metric, self.action, &self.source)
    }

    fn past(&self, v: f64) -> bool {
        match self.action {
            ScaleAction::ScaleOut => v > self.threshold,
            ScaleAction::ScaleIn => v < self.threshold,
        }
    }

    fn back(&self, v: f64) -> bool {
        match self.action {
            ScaleAction::ScaleOut => v <= self.threshold - self.hysteresis,
            ScaleAction::ScaleIn => v >= self.threshold + self.hysteresis,
        }
    }

    /// Takes a reading at `now_ms`; whether it signals.
    fn observe(&mut self, now_ms: u64, value: f64) -> bool {
        let (past, back) = (self.past(value), self.back(value));
        let s = &mut self.state;
        s.value = Some(value);
        s.unread = None;
        if s.active {
            if back {
                s.active = false;
                s.past_since_ms = None;
            }
        } else if past {
            let since = *s.past_since_ms.get_or_insert(now_ms);
            s.active = now_ms.saturating_sub(since) >= self.for_ms;
        } else {
            s.past_since_ms = None;
        }
        let rested = s.last_signal_ms.is_none_or(|last| now_ms.saturating_sub(last) >= self.cooldown_ms);
        if s.active && past && rested {
            s.last_signal_ms = Some(now_ms);
            s.signals += 1;
            return true;
        }
        false
    }

    /// The entry as `status` reports it.
    pub fn report(&self) -> serde_json::Value {
        let s = &self.state;
        serde_json::json!({
            "entry": self.label,
            "node": self.node,
            "metric": self.metric,
            "action": self.action.as_str(),
            "threshold": self.threshold,
            "value": s.value,
            "unreadable": s.unread,
            "active": s.active,
            "signals": s.signals,
            "last_signal_at": s.last_signal_ms.map(exchange::record::rfc3339_ms),
        })
    }
}

/// Every usable entry of the config in force.
#[derive(Debug, Default)]
pub struct Scaler {
    pub entries: Vec<Entry>,
    /// Signals made so far, for their ids.
    made: u64,
    /// Makes ids unlike another process's.
    seed: u64,
}

impl Scaler {
    pub fn new(entries: Vec<Entry>, seed: u64) -> Self {
        Self { entries, made: 0, seed }
    }

    /// Puts a reloaded config's entries in force, each keeping the state
    /// of the same entry (node, metric, action, source) before.
    pub fn replace(&mut self, mut entries: Vec<Entry>) {
        for e in &mut entries {
            if let Some(old) = self.entries.iter().find(|o| o.key() == e.key()) {
                e.state = old.state.clone();
            }
        }
        self.entries = entries;
    }

    /// One evaluation at `now_ms`: `read` gives each entry's metric, or why
    /// it could not be read (the entry then keeps its state).
    pub fn step(&mut self, now_ms: u64, read: impl Fn(&Entry) -> Result<f64, String>) -> Vec<Signal> {
        let mut signals = Vec::new();
        for i in 0..self.entries.len() {
            let reading = read(&self.entries[i]);
            let e = &mut self.entries[i];
            match reading {
                Ok(value) if value.is_finite() => {
                    if e.observe(now_ms, value) {
                        self.made += 1;
                        let id = format!("{:016x}", self.seed ^ self.made.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                        signals.push(Signal { id, time_ms: now_ms, entry: e.clone(), value });
                    }
                }
                Ok(value) => e.state.unread = Some(format!("the reading is {value}")),
                Err(why) => {
                    e.state.value = None;
                    e.state.unread = Some(why);
                }
            }
        }
        signals
    }
}

/// Reads a router-observed metric of `node` from the status report's entry for it.
pub fn observed(metric: Metric, node: &serde_json::Value) -> Result<f64, String> {
    let number = |v: &serde_json::Value| v.as_f64();
    let percent = |part: Option<f64>, whole: Option<f64>| match (part, whole) {
        (Some(p), Some(w)) if w > 0.0 => Some(100.0 * p / w),
        _ => None,
    };
    let value = match metric {
        Metric::ActiveRequests => number(&node["in_flight"]),
        Metric::Utilization => percent(number(&node["in_flight"]), number(&node["max_concurrent"])),
        Metric::ErrorRate => number(&node["last_hour"]["error_rate"]).map(|r| 100.0 * r),
        Metric::LatencyP50 => number(&node["last_hour"]["p50_ms"]),
        Metric::LatencyP95 => number(&node["last_hour"]["p95_ms"]),
        Metric::BudgetUsage => percent(number(&node["today"]["cost"]), number(&node["today"]["max_cost_per_day"])),
        Metric::RoutingDistribution | Metric::CacheHitRatio => None,
    };
    value.ok_or_else(|| format!("the router has no {} for the node yet", metric.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaler(yaml_entries: &str) -> Scaler {
        let yaml = format!(
            "nodes: [{{id: gpu, type: local, host: \"http://127.0.0.1:1\", max_concurrent: 10, metrics_url: \"http://127.0.0.1:2/metrics\"}}]\nautoscaling:\n{yaml_entries}"
        );
        let config = RouterConfig::load("t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
        let (entries, skipped) = entries(&config);
        assert!(skipped.is_empty(), "{skipped:?}");
        Scaler::new(entries, 7)
    }

    /// Feeds `values`, one a second; the seconds at which each signalled.
    fn run(s: &mut Scaler, values: &[f64]) -> Vec<(u64, &'static str)> {
        let mut fired = Vec::new();
        for (t, v) in values.iter().enumerate() {
            let now = 1_000 * t as u64;
            for sig in s.step(now, |_| Ok(*v)) {
                fired.push((t as u64, sig.entry.action.as_str()));
            }
        }
        fired
    }

    #[test]
    fn a_metric_hovering_at_the_threshold_signals_once_per_cooldown() {
        let mut s = scaler("  - {node: gpu, metric: cpu_usage, threshold: 80, action: scale_out, cooldown: 5s}\n");
        // 85 signals; 79 is not back to 72 (the hysteresis is 8), so the
        // condition holds, and the cool-down keeps 81 from signalling until
        // 5 s have passed. 70 ends the condition; 90 starts another, still in
        // the cool-down of the signal at 6 s; 95 at 11 s signals.
        let fired = run(&mut s, &[50.0, 85.0, 79.0, 81.0, 79.0, 81.0, 82.0, 70.0, 90.0, 60.0, 71.0, 95.0]);
        assert_eq!(fired, [(1, "scale_out"), (6, "scale_out"), (11, "scale_out")]);
        assert_eq!(s.entries[0].report()["signals"], 3);
    }

    #[test]
    fn for_delays_the_signal_and_a_dip_restarts_it() {
        let mut s = scaler(
            "  - {node: gpu, metric: active_requests, threshold: 4, action: scale_out, for: 2s, cooldown: 1m}\n",
        );
        let fired = run(&mut s, &[5.0, 5.0, 3.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(fired, [(5, "scale_out")], "past the threshold from 3 s, for 2 s");
    }

    #[test]
    fn scale_in_fires_below_and_a_reload_keeps_what_an_entry_saw() {
        let two = "  - {node: gpu, metric: utilization, threshold: 80, action: scale_out}\n  - {node: gpu, metric: utilization, threshold: 20, action: scale_in, min_instances: 1}\n";
        let mut s = scaler(two);
        assert_eq!(run(&mut s, &[50.0, 10.0]), [(1, "scale_in")]);
        // The same entries, in another order: the scale_in one stays in its cool-down.
        let swapped: Vec<&str> = two.lines().rev().collect();
        let again = scaler(&(swapped.join("\n") + "\n"));
        s.replace(again.entries);
        assert_eq!(s.entries[0].action, ScaleAction::ScaleIn);
        assert!(s.step(2_000, |_| Ok(5.0)).is_empty(), "within the 5 m default cool-down");
    }

    #[test]
    fn an_unreadable_metric_keeps_the_state_and_says_why() {
        let mut s = scaler("  - {node: gpu, metric: cpu_usage, threshold: 80, action: scale_out, for: 2s}\n");
        assert!(s.step(0, |_| Ok(90.0)).is_empty());
        assert!(s.step(1_000, |_| Err("connection refused".into())).is_empty());
        assert_eq!(s.entries[0].report()["unreadable"], "connection refused");
        assert_eq!(s.step(2_000, |_| Ok(90.0)).len(), 1, "past since 0 s");
    }

    #[test]
    fn router_metrics_are_read_from_the_status_entry() {
        let node = serde_json::json!({"in_flight": 3, "max_concurrent": 4, "last_hour": {"error_rate": 0.25, "p50_ms": 12.5, "p95_ms": null},
            "today": {"cost": 1.0, "max_cost_per_day": 4.0}});
        assert_eq!(observed(Metric::Utilization, &node), Ok(75.0));
        assert_eq!(observed(Metric::ErrorRate, &node), Ok(25.0));
        assert_eq!(observed(Metric::BudgetUsage, &node), Ok(25.0));
        assert!(observed(Metric::LatencyP95, &node).unwrap_err().contains("no latency_p95_ms"));
    }

    #[test]
    fn the_seed_configs_entries_are_skipped_with_the_reason() {
        let seed = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/seed-configs/hybrid-deploy.yaml"
        ))
        .expect("the seed config");
        let config = RouterConfig::load("hybrid-deploy.yaml", &seed).unwrap_or_else(|e| panic!("{e}"));
        let (usable, skipped) = entries(&config);
        assert!(usable.is_empty());
        assert_eq!(skipped.len(), 2);
        assert!(skipped[0].contains("cpu_usage") && skipped[0].contains("names no metrics_url"), "{skipped:?}");
    }
}
