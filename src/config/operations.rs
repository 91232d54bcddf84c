//! What the config says about operating the fleet: the metrics to watch
//! (`monitoring`) and the thresholds that become scaling signals
//! (`autoscaling`). See `metric.rs` for the metric names.

use schemars::JsonSchema;
use serde::Deserialize;

/// Metrics to watch (see `docs/config.md#monitoring-and-autoscaling`).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitoringConfig {
    /// Metric names such as `node_active_requests` or `routing_distribution`.
    #[serde(default)]
    pub metrics: Vec<String>,
}

/// One autoscaling threshold of a node.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoscalingConfig {
    /// The node whose instances the signal is about.
    pub node: String,
    /// What is compared with the threshold, e.g. `active_requests` or `utilization`.
    pub metric: String,
    /// The value at which the signal fires: above it for `scale_out`, below it for `scale_in`.
    pub threshold: f64,
    /// `scale_out` or `scale_in`.
    pub action: ScaleAction,
    /// Fewest instances a `scale_in` may leave.
    #[serde(default)]
    pub min_instances: Option<u32>,
    /// Most instances a `scale_out` may ask for.
    #[serde(default)]
    pub max_instances: Option<u32>,
}

/// Which way an autoscaling signal points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScaleAction {
    /// More instances: fires when the metric rises above the threshold.
    ScaleOut,
    /// Fewer instances: fires when the metric falls below the threshold.
    ScaleIn,
}

impl ScaleAction {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScaleOut => "scale_out",
            Self::ScaleIn => "scale_in",
        }
    }
}
