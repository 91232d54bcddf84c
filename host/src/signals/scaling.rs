//! Scaling signals: each `autoscaling` entry's metric compared with its
//! threshold at every evaluation, with hysteresis and a cool-down. This is
//! the decision only; `crate::scaling` reads the metrics and sends what it
//! decides. The router never owns instances: a signal says which way a
//! node's instances should go, and within which bounds.
//!
//! An entry's condition starts when its metric has been past the threshold
//! (above it for `scale_out`, below it for `scale_in`) for its `for`
//! duration, and ends only when the metric is back past the threshold by
//! the `hysteresis`. The entry signals when its condition starts, unless
//! its last signal is less than a `cooldown` old; and while the condition
//! holds, again each time the metric has stayed past the threshold, without
//! a break, for a whole cool-down since the last signal. So a metric that
//! hovers about the threshold (inside the hysteresis) signals once, and
//! one that stays past it signals once a cool-down.
//!
//! Decisions run on a monotonic clock (a clock step cannot stretch or
//! skip a cool-down); the wall clock is only for what is reported. A
//! `scale_in` entry stays quiet for its first cool-down (after the box
//! starts, or a reload adds it): before the router has watched a node, the
//! quiet it sees is no reason to shrink it.

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

/// What an entry has seen so far (times on the monotonic clock, but for
/// `last_signal_wall_ms`).
#[derive(Debug, Clone, Default, PartialEq)]
struct State {
    /// Since when the metric has been past the threshold without a break.
    past_since_ms: Option<u64>,
    /// Whether the condition holds.
    active: bool,
    last_signal_ms: Option<u64>,
    last_signal_wall_ms: Option<u64>,
    /// Before this, the entry does not signal (a new `scale_in` entry).
    quiet_until_ms: u64,
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
    fn key(&self) -> (&str, &str, ScaleAction, &Source, u64) {
        (&self.node, &self.metric, self.action, &self.source, self.threshold.to_bits())
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
        if past {
            s.past_since_ms.get_or_insert(now_ms);
        } else {
            s.past_since_ms = None;
        }
        let run = s.past_since_ms.map_or(0, |t| now_ms.saturating_sub(t));
        let mut started = false;
        if s.active && back {
            s.active = false;
        } else if !s.active && past && run >= self.for_ms {
            s.active = true;
            started = true;
        }
        let since = |t: Option<u64>| t.map_or(u64::MAX, |t| now_ms.saturating_sub(t));
        let rested = since(s.last_signal_ms) >= self.cooldown_ms;
        // Unbroken past the threshold for a cool-down since the last signal.
        let stayed = rested && run >= self.cooldown_ms;
        if s.active && past && (started && rested || stayed) && now_ms >= s.quiet_until_ms {
            s.last_signal_ms = Some(now_ms);
            s.signals += 1;
            return true;
        }
        false
    }

    /// A reading that failed: the entry keeps its condition, but a run past
    /// the threshold is broken (nothing says it lasted).
    fn unreadable(&mut self, why: String) {
        self.state.value = None;
        self.state.unread = Some(why);
        self.state.past_since_ms = None;
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
            "last_signal_at": s.last_signal_wall_ms.map(exchange::record::rfc3339_ms),
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
    /// No entries yet; `seed` makes the signals' ids unlike another process's.
    pub fn new(seed: u64) -> Self {
        Self { entries: Vec::new(), made: 0, seed }
    }

    /// Puts a (re)loaded config's entries in force at `now_ms`, each keeping
    /// the state of the same entry (node, metric, action, source and
    /// threshold) before; a new `scale_in` entry is quiet for a cool-down.
    pub fn replace(&mut self, mut entries: Vec<Entry>, now_ms: u64) {
        for e in &mut entries {
            match self.entries.iter().position(|o| o.key() == e.key()) {
                Some(i) => e.state = self.entries.swap_remove(i).state,
                None if e.action == ScaleAction::ScaleIn => e.state.quiet_until_ms = now_ms + e.cooldown_ms,
                None => {}
            }
        }
        self.entries = entries;
    }

    /// One evaluation at `now_ms` (monotonic; `wall_ms` for the signals'
    /// times): `read` gives each entry's metric, or why it could not be read.
    pub fn step(&mut self, now_ms: u64, wall_ms: u64, read: impl Fn(&Entry) -> Result<f64, String>) -> Vec<Signal> {
        let mut signals = Vec::new();
        for i in 0..self.entries.len() {
            let reading = read(&self.entries[i]);
            let e = &mut self.entries[i];
            match reading {
                Ok(value) if value.is_finite() => {
                    if e.observe(now_ms, value) {
                        e.state.last_signal_wall_ms = Some(wall_ms);
                        self.made += 1;
                        let id = format!("{:016x}", self.seed ^ self.made.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                        signals.push(Signal { id, time_ms: wall_ms, entry: e.clone(), value });
                    }
                }
                Ok(value) => e.unreadable(format!("the reading is {value}")),
                Err(why) => e.unreadable(why),
            }
        }
        signals
    }

    /// Each entry as `status` reports it.
    pub fn report(&self) -> Vec<serde_json::Value> {
        self.entries.iter().map(Entry::report).collect()
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
            "nodes: [{{id: gpu, type: local, host: \"http://127.0.0.1:1\", max_concurrent: 10, metrics_url: \"http://127.0.0.1:2/metrics\"}}]\nmonitoring: {{scaling: {{interval: 1s}}}}\nautoscaling:\n{yaml_entries}"
        );
        let config = RouterConfig::load("t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
        let (entries, skipped) = entries(&config);
        assert!(skipped.is_empty(), "{skipped:?}");
        let mut s = Scaler::new(7);
        s.replace(entries, 0);
        s
    }

    /// Feeds `values`, one a second; the seconds at which each signalled.
    fn run(s: &mut Scaler, values: &[f64]) -> Vec<(u64, &'static str)> {
        let mut fired = Vec::new();
        for (t, v) in values.iter().enumerate() {
            let now = 1_000 * t as u64;
            for sig in s.step(now, now, |_| Ok(*v)) {
                fired.push((t as u64, sig.entry.action.as_str()));
            }
        }
        fired
    }

    const HOVERING: [f64; 12] = [85.0, 79.0, 81.0, 79.0, 81.0, 79.0, 81.0, 85.0, 85.0, 85.0, 60.0, 85.0];

    #[test]
    fn a_metric_hovering_at_the_threshold_signals_once_and_one_that_stays_once_a_cooldown() {
        let mut s = scaler("  - {node: gpu, metric: cpu_usage, threshold: 80, action: scale_out, cooldown: 2s}\n");
        // 85 signals. 79 is not back to 72 (the hysteresis is 8), so the
        // condition holds, and 81 after it is no new one: nothing until 81,
        // 85, 85 have been past 80 without a break for 2 s. 60 ends the
        // condition, and 85 starts another.
        assert_eq!(run(&mut s, &HOVERING), [(0, "scale_out"), (8, "scale_out"), (11, "scale_out")]);
        assert_eq!(s.entries[0].report()["signals"], 3);
        // Without hysteresis each dip under 80 ends the condition, and each
        // 81 starts one, as often as the cool-down lets it.
        let mut bare = scaler(
            "  - {node: gpu, metric: cpu_usage, threshold: 80, hysteresis: 0, action: scale_out, cooldown: 2s}\n",
        );
        let fired: Vec<u64> = run(&mut bare, &HOVERING).into_iter().map(|(t, _)| t).collect();
        assert_eq!(fired, [0, 2, 4, 6, 8, 11]);
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
    fn scale_in_waits_a_cooldown_after_start_and_a_reload_keeps_what_an_entry_saw() {
        let two = "  - {node: gpu, metric: utilization, threshold: 80, action: scale_out, cooldown: 3s}\n  - {node: gpu, metric: utilization, threshold: 20, action: scale_in, min_instances: 1, cooldown: 3s}\n";
        let mut s = scaler(two);
        // Idle from the start: no scale_in before the router has watched for 3 s.
        assert_eq!(run(&mut s, &[10.0, 10.0, 10.0, 10.0]), [(3, "scale_in")]);
        // The same entries, in another order: the scale_in one stays in its cool-down.
        let swapped: Vec<&str> = two.lines().rev().collect();
        let again = scaler(&(swapped.join("\n") + "\n"));
        s.replace(again.entries, 4_000);
        assert_eq!(s.entries[0].action, ScaleAction::ScaleIn);
        assert!(s.step(5_000, 5_000, |_| Ok(5.0)).is_empty(), "signalled at 3 s, cool-down 3 s");
        assert_eq!(s.step(6_000, 6_000, |_| Ok(5.0)).len(), 1);
    }

    #[test]
    fn an_unreadable_metric_breaks_a_run_and_says_why() {
        let mut s = scaler("  - {node: gpu, metric: cpu_usage, threshold: 80, action: scale_out, for: 2s}\n");
        assert!(s.step(0, 0, |_| Ok(90.0)).is_empty());
        assert!(s.step(1_000, 1_000, |_| Err("connection refused".into())).is_empty());
        assert_eq!(s.entries[0].report()["unreadable"], "connection refused");
        assert_eq!(s.entries[0].report()["value"], serde_json::Value::Null);
        assert!(s.step(2_000, 2_000, |_| Ok(90.0)).is_empty(), "nothing says it stayed past 80 at 1 s");
        assert!(s.step(3_000, 3_000, |_| Ok(f64::NAN)).is_empty());
        assert_eq!(s.entries[0].report()["unreadable"], "the reading is NaN");
        assert!(s.step(4_000, 4_000, |_| Ok(90.0)).is_empty());
        assert_eq!(s.step(6_000, 6_000, |_| Ok(90.0)).len(), 1, "past since 4 s, for 2 s");
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
