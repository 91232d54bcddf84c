//! `monitoring` and `autoscaling`.

use super::super::metric::Metric;
use super::Validator;
use crate::config::{AutoscalingConfig, MonitoringConfig, ScaleAction};

impl Validator<'_> {
    /// `monitoring.metrics` and `autoscaling`: what the router can observe is
    /// accepted, what it cannot is warned about, and thresholds that would
    /// make a node scale out and in at once are refused.
    pub(super) fn monitoring(&mut self, m: &MonitoringConfig, scaling: &[AutoscalingConfig], ids: &[&str]) {
        for (i, name) in m.metrics.iter().enumerate() {
            if let Err(why) = Metric::parse(name) {
                self.warn(format!("monitoring.metrics[{i}]"), format!("{why}; it is not watched"));
            }
        }
        if !(0.0..=1.0).contains(&m.access_log_sample) {
            self.err("monitoring.access_log_sample", "must be a share from 0 to 1, such as 0.1");
        }
        for (i, a) in scaling.iter().enumerate() {
            let path = format!("autoscaling[{i}]");
            if !ids.contains(&a.node.as_str()) {
                self.warn(
                    format!("{path}.node"),
                    format!("`{}` is not the id of any node; this entry is skipped", a.node),
                );
            }
            match Metric::parse(&a.metric) {
                Err(why) => self.warn(format!("{path}.metric"), format!("{why}; this entry gives no signal")),
                Ok(metric) if !metric.per_node() => self.err(
                    format!("{path}.metric"),
                    format!("`{}` is not a node's metric: autoscaling needs one of {}", a.metric, Metric::node_names()),
                ),
                Ok(_) => {}
            }
            if !(a.threshold.is_finite() && a.threshold >= 0.0) {
                self.err(format!("{path}.threshold"), "must be zero or more");
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
                if a.node != b.node
                    || Metric::parse(&a.metric).ok() != Metric::parse(&b.metric).ok()
                    || a.action == b.action
                {
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
}
