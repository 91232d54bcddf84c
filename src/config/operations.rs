//! What the config says about operating the fleet: the metrics to watch
//! (`monitoring`) and the thresholds that become scaling signals
//! (`autoscaling`). See `metric.rs` for the metric names.

use schemars::JsonSchema;
use serde::Deserialize;

use super::DurationSpec;

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
    /// How the `autoscaling` entries are evaluated and their signals sent.
    pub scaling: ScalingConfig,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        Self {
            metrics: Vec::new(),
            access_log: AccessLogTarget::Stdout,
            access_log_sample: 1.0,
            tenant_labels: false,
            request_metrics: true,
            scaling: ScalingConfig::default(),
        }
    }
}

/// How often the `autoscaling` entries are evaluated, and where their
/// signals are posted (see `docs/operations.md`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ScalingConfig {
    /// How often each entry's metric is read and compared with its threshold.
    pub interval: DurationSpec,
    /// A URL each signal is `POST`ed to as JSON, unless its entry names its own `webhook`.
    pub webhook: Option<String>,
    /// The environment variable holding a token sent as `Authorization: Bearer …` with each webhook.
    pub webhook_token_env: Option<String>,
    /// How long one webhook attempt may take.
    pub webhook_timeout: DurationSpec,
    /// Further attempts after a webhook attempt fails (no answer, 429 or 5xx), 1 s, 2 s, 4 s … apart.
    pub webhook_retries: u32,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        Self {
            interval: DurationSpec::secs(15),
            webhook: None,
            webhook_token_env: None,
            webhook_timeout: DurationSpec::secs(5),
            webhook_retries: 3,
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
    /// What is compared with the threshold: one the router observes, e.g. `active_requests` or
    /// `utilization`, or one read from the node's `metrics_url`, such as `cpu_usage`.
    pub metric: String,
    /// For a metric read from the node's `metrics_url`: the series there, such as
    /// `vllm:num_requests_waiting` or `node_cpu_usage{cpu="0"}`. Default: `metric` as written.
    #[serde(default)]
    pub series: Option<String>,
    /// The value at which the signal fires: above it for `scale_out`, below it for `scale_in`.
    pub threshold: f64,
    /// How long the metric must stay past the threshold before the signal fires. Default: `0s`.
    #[serde(default, rename = "for")]
    pub sustained: Option<DurationSpec>,
    /// How far back past the threshold the metric must go before the condition counts as over
    /// (so a metric hovering at the threshold fires once). Default: a tenth of the threshold.
    #[serde(default)]
    pub hysteresis: Option<f64>,
    /// The least time between two signals of this entry. Default: `5m`.
    #[serde(default)]
    pub cooldown: Option<DurationSpec>,
    /// Where this entry's signals are `POST`ed, instead of `monitoring.scaling.webhook`.
    #[serde(default)]
    pub webhook: Option<String>,
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

impl AutoscalingConfig {
    /// How far back past the threshold the metric must go.
    pub fn hysteresis(&self) -> f64 {
        self.hysteresis.unwrap_or(self.threshold / 10.0)
    }

    /// The least time between two signals.
    pub fn cooldown(&self) -> DurationSpec {
        self.cooldown.unwrap_or(DurationSpec::secs(300))
    }
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
