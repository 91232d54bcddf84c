//! What the config says about operating the fleet: the metrics to watch
//! (`monitoring`) and the thresholds that become scaling signals
//! (`autoscaling`). See `metric.rs` for the metric names.

use schemars::JsonSchema;
use serde::Deserialize;

/// Metrics to watch, and the access log (see `docs/operations.md`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringConfig {
    /// Metric names such as `node_active_requests` or `routing_distribution`.
    pub metrics: Vec<String>,
    /// Where each request's JSON line goes: `stdout` (the default), `off`,
    /// or a file path (appended to). The Worker writes to its console
    /// (Workers Logs) unless this is `off`.
    pub access_log: AccessLogTarget,
    /// The share of requests the access log writes, from 0 to 1.
    pub access_log_sample: f64,
    /// Label request metrics by tenant too. Off by default: a label per
    /// tenant multiplies the series Prometheus keeps.
    pub tenant_labels: bool,
    /// Count each request in the Prometheus metrics (the edge box). With
    /// this and the access log off, requests make no record at all, save
    /// while a `routing-log --follow` reads them.
    pub request_metrics: bool,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        Self {
            metrics: Vec::new(),
            access_log: AccessLogTarget::Stdout,
            access_log_sample: 1.0,
            tenant_labels: false,
            request_metrics: true,
        }
    }
}

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[schemars(with = "String")]
pub enum AccessLogTarget {
    /// Standard output (the Worker: its console).
    Stdout,
    /// No access log.
    Off,
    /// Appended to this file (the edge box only).
    File(String),
}

impl<'de> Deserialize<'de> for AccessLogTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(match text.trim() {
            "stdout" | "on" => Self::Stdout,
            "off" | "none" => Self::Off,
            "" => return Err(serde::de::Error::custom("say `stdout`, `off` or a file path")),
            path => Self::File(path.to_string()),
        })
    }
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
