//! `monitoring` and `autoscaling`.

use super::super::metric::Metric;
use super::Validator;
use crate::config::{AutoscalingConfig, MonitoringConfig, Node, ScaleAction, Series};

impl Validator<'_> {
    /// `monitoring.metrics` and `autoscaling`: what the router can observe is
    /// accepted, what it cannot is warned about, and thresholds that would
    /// make a node scale out and in at once are refused.
    pub(super) fn monitoring(&mut self, m: &MonitoringConfig, scaling: &[AutoscalingConfig], nodes: &[Node]) {
        for (i, name) in m.metrics.iter().enumerate() {
            if let Err(why) = Metric::parse(name) {
                self.warn(format!("monitoring.metrics[{i}]"), format!("{why}; it is not watched"));
            }
        }
        if !(0.0..=1.0).contains(&m.access_log_sample) {
            self.err("monitoring.access_log_sample", "must be a share from 0 to 1, such as 0.1");
        }
        let s = &m.scaling;
        if s.interval.0.as_millis() < 100 {
            self.err("monitoring.scaling.interval", "must be at least 100ms");
        }
        if let Some(url) = &s.webhook {
            self.http_url("monitoring.scaling.webhook", url);
        }
        if s.webhook_timeout.0.is_zero() {
            self.err("monitoring.scaling.webhook_timeout", "must be more than zero");
        }
        if s.webhook_retries > 10 {
            self.err(
                "monitoring.scaling.webhook_retries",
                "at most 10 (the waits double: ten retries take 17 minutes)",
            );
        }
        for (i, a) in scaling.iter().enumerate() {
            let path = format!("autoscaling[{i}]");
            let node = nodes.iter().find(|n| n.id == a.node);
            if node.is_none() {
                self.warn(
                    format!("{path}.node"),
                    format!("`{}` is not the id of any node; this entry is skipped", a.node),
                );
            }
            self.scaling_metric(&path, a, node);
            if !(a.threshold.is_finite() && a.threshold >= 0.0) {
                self.err(format!("{path}.threshold"), "must be zero or more");
            }
            if let Some(h) = a.hysteresis.filter(|h| !(h.is_finite() && *h >= 0.0)) {
                self.err(format!("{path}.hysteresis"), format!("must be zero or more, not {h}"));
            }
            if let Some(url) = &a.webhook {
                self.http_url(&format!("{path}.webhook"), url);
            }
            if a.cooldown() < s.interval {
                self.err(
                    format!("{path}.cooldown"),
                    format!("must be at least monitoring.scaling.interval ({}): signals come no oftener", s.interval),
                );
            }
            match (a.min_instances, a.max_instances) {
                (_, Some(0)) => self.err(format!("{path}.max_instances"), "must be at least 1"),
                (Some(lo), Some(hi)) if lo > hi => self.err(
                    format!("{path}.min_instances"),
                    format!("min_instances ({lo}) is larger than max_instances ({hi})"),
                ),
                _ => {}
            }
            // A scale-in threshold at or above a scale-out one on the same
            // metric would fire both ways at once.
            for (k, b) in scaling.iter().enumerate().take(i) {
                if a.node != b.node || measured(a) != measured(b) || a.action == b.action {
                    continue;
                }
                let (out, inn) = if a.action == ScaleAction::ScaleOut { (a, b) } else { (b, a) };
                if inn.threshold >= out.threshold {
                    self.err(
                        format!("{path}.threshold"),
                        format!(
                            "`{}` on `{}`: the scale_in threshold ({}) must be below the scale_out threshold ({}) of autoscaling[{k}]",
                            a.metric, a.node, inn.threshold, out.threshold
                        ),
                    );
                }
            }
        }
    }

    /// What an autoscaling entry compares with its threshold: a metric the
    /// router observes, or a series on the node's `metrics_url`. Without
    /// one, a metric only the node measures is warned about (the seed
    /// configs name `cpu_usage` with no endpoint, and must load).
    fn scaling_metric(&mut self, path: &str, a: &AutoscalingConfig, node: Option<&Node>) {
        let metrics_url = node.and_then(|n| n.metrics_url.as_deref());
        match Metric::parse(&a.metric) {
            Ok(metric) if !metric.per_node() => self.err(
                format!("{path}.metric"),
                format!("`{}` is not a node's metric: autoscaling needs one of {}", a.metric, Metric::node_names()),
            ),
            Ok(_) if a.series.is_some() => self.err(
                format!("{path}.series"),
                format!(
                    "`{}` is observed by the router itself: `series` is for metrics read from the node's metrics_url",
                    a.metric
                ),
            ),
            Ok(Metric::Utilization) if node.is_some_and(|n| n.max_concurrent.is_none()) => self.err(
                format!("{path}.metric"),
                format!("`utilization` is in-flight requests against max_concurrent, and node `{}` has none", a.node),
            ),
            Ok(Metric::BudgetUsage) if node.is_some_and(|n| n.max_cost_per_day.is_none()) => self.err(
                format!("{path}.metric"),
                format!("`budget_usage` is spend against max_cost_per_day, and node `{}` has none", a.node),
            ),
            Ok(_) => {}
            Err(_) if metrics_url.is_some() => {
                let written = a.series.as_deref().unwrap_or(&a.metric);
                if let Err(why) = Series::parse(written) {
                    self.err(format!("{path}.{}", if a.series.is_some() { "series" } else { "metric" }), why);
                }
            }
            Err(why) if node.is_some() => self.warn(
                format!("{path}.metric"),
                format!(
                    "{why}; name the node's own Prometheus endpoint in its `metrics_url` to read it from there. \
                     Until then this entry gives no signal"
                ),
            ),
            Err(_) => {}
        }
    }
}

/// What an entry compares with its threshold: the metric the router
/// observes, or the series read from the node (its `series`, else its
/// metric's name), so that two entries on the same thing can be compared.
fn measured(a: &AutoscalingConfig) -> Result<Metric, &str> {
    Metric::parse(&a.metric).map_err(|_| a.series.as_deref().unwrap_or(&a.metric).trim())
}
