//! The configuration file as users write it (YAML, or JSON).
//!
//! These types mirror the file one to one; `validate` turns them into the
//! runtime tables the router uses. Every field has a doc comment because the
//! JSON Schema (and so editor completion) is generated from them.

use schemars::JsonSchema;
use serde::Deserialize;

use super::access::AuthConfig;
use super::duration::DurationSpec;
use super::operations::{AutoscalingConfig, MonitoringConfig};
use super::percent::Percent;
use super::provider::{Api, AwsCredentialsEnv};
use super::server::ServerConfig;
use super::size::ByteSize;
use super::state::StateConfig;

/// An edge-router configuration.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// A name for this deployment, shown by `edge-router check`.
    #[serde(default)]
    pub name: String,
    /// The config's own version, e.g. `"1.0"`: shown by `check` and `status`, not interpreted.
    #[serde(default)]
    pub version: Option<ConfigVersion>,
    /// How the edge box listens and whom it trusts. Ignored on Cloudflare Workers.
    #[serde(default)]
    pub server: ServerConfig,
    /// The origins requests can be forwarded to.
    pub nodes: Vec<NodeConfig>,
    /// Rules and the default strategy that pick a node for each request.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Which client countries may use the router at all.
    #[serde(default)]
    pub geofence: GeofenceConfig,
    /// Jurisdictions: which countries' requests must stay on which nodes.
    #[serde(default)]
    pub residency: ResidencyConfig,
    /// How `model: auto` and small-model nodes pick a model.
    #[serde(default)]
    pub model_routing: ModelRoutingConfig,
    /// How request facts (type, token estimate) are derived.
    #[serde(default)]
    pub requests: RequestsConfig,
    /// Client API keys, their tier and tenant.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Health checking of nodes.
    #[serde(default)]
    pub health_check: HealthCheckConfig,
    /// When the days of `max_cost_per_day` start.
    #[serde(default)]
    pub budgets: BudgetsConfig,
    /// The edge box's admin API (status, weights, draining). Ignored on Cloudflare Workers.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The edge cache of AI answers.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Metrics the operator wants watched. Those the router cannot observe are warned about.
    #[serde(default)]
    pub monitoring: MonitoringConfig,
    /// Scale-out and scale-in thresholds per node, turned into signals; the router never owns instances.
    #[serde(default)]
    pub autoscaling: Vec<AutoscalingConfig>,
    /// State shared by a fleet of edge boxes (Valkey or Redis): rate limits held as one.
    #[serde(default)]
    pub state: StateConfig,
    /// Personal data in prompts: found at the edge, and pseudonymized, redacted or refused before
    /// the nodes named see it (`docs/pii.md`). Off unless a `mode` is set.
    #[serde(default)]
    pub pii: PiiConfig,
}

/// What becomes of personal data on its way to some nodes (`docs/pii.md`).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PiiConfig {
    /// What the nodes of `apply_to` get: `pseudonymize` (placeholders, the originals restored in
    /// the answer), `redact` (masked for good), `block` (the request is refused, naming the kinds
    /// found) or `off`. Absent: off, unless `policies` say otherwise.
    #[serde(default)]
    pub mode: Option<PiiMode>,
    /// The nodes `mode` applies to: node types (`cloud`, `edge`, `local`), node ids or globs,
    /// selectors (`provider:openai`, `region:us-*`, `location:cn-*`) or `residency:<jurisdiction>`.
    /// Default: every node that is not `local`.
    #[serde(default)]
    pub apply_to: Vec<String>,
    /// More policies, each with its own `apply_to` and `mode`. The first that names a node decides
    /// for it; `mode` and `apply_to` above come after them all.
    #[serde(default)]
    pub policies: Vec<PiiPolicyConfig>,
    /// The built-in kinds looked for: `email`, `phone`, `card`, `iban`, `ipv4`, `ipv6`, `us_ssn`,
    /// `cn_resident_id`. Default: all of them.
    #[serde(default)]
    pub detect: Option<Vec<String>>,
    /// The operator's own kinds: a name (letters, digits, `_`) and a regular expression (Rust
    /// `regex` syntax, matched in linear time), e.g. `{name: employee_id, regex: "EMP-[0-9]{6}"}`.
    #[serde(default)]
    pub patterns: Vec<PiiPatternConfig>,
    /// Sensitive words or phrases (`Project Falcon`), matched whole and ignoring ASCII case; found
    /// as the kind `word`.
    #[serde(default)]
    pub words: Vec<String>,
}

/// What becomes of personal data sent to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PiiMode {
    /// Each value becomes a placeholder such as `[EMAIL_1]`; the answer gets the originals back.
    Pseudonymize,
    /// Each value becomes its kind, `[EMAIL]`, for good.
    Redact,
    /// The request is refused (400, `personal_data`), naming the kinds found, never the values.
    Block,
    /// Sent as it came.
    Off,
}

/// One `pii.policies` entry.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PiiPolicyConfig {
    /// The nodes it applies to, named as in `pii.apply_to`.
    pub apply_to: Vec<String>,
    /// What they get.
    pub mode: PiiMode,
}

/// One of the operator's kinds of personal data.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PiiPatternConfig {
    /// Its name in placeholders (`[EMPLOYEE_ID_1]`), logs and errors.
    pub name: String,
    /// The regular expression.
    pub regex: String,
}

/// A config version as written: `"1.0"` or `1.0`.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(untagged)]
pub enum ConfigVersion {
    /// Written as a string.
    Text(String),
    /// Written as a number.
    Number(f64),
}

// Read by hand rather than as `#[serde(untagged)]`, which buffers the value
// in serde's `Content` and tries each variant: the Worker's module would
// carry that machinery for two small types, and its error names no type.
impl<'de> Deserialize<'de> for ConfigVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Version;
        impl serde::de::Visitor<'_> for Version {
            type Value = ConfigVersion;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a version such as \"1.0\" or 1.0")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ConfigVersion::Text(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(ConfigVersion::Number(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ConfigVersion::Number(v as f64))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ConfigVersion::Number(v as f64))
            }
        }
        deserializer.deserialize_any(Version)
    }
}

impl std::fmt::Display for ConfigVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(t) => f.write_str(t),
            // `1.0` stays `1.0`, as written, not `1`.
            Self::Number(n) => write!(f, "{n:?}"),
        }
    }
}

/// Where a node runs. Informational, and usable in globs by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeType {
    /// On-premises hardware (vLLM, Ollama, …).
    Local,
    /// A cloud API.
    Cloud,
    /// An edge location running small models.
    Edge,
}

impl NodeType {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Cloud => "cloud",
            Self::Edge => "edge",
        }
    }
}

/// One origin.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Unique id, used by rules, fallbacks and the `x-edge-node` header.
    pub id: String,
    /// Where the node runs.
    #[serde(rename = "type")]
    pub node_type: NodeType,
    /// Base URL of the origin, `http://` or `https://`, e.g. `http://10.0.0.5:8000`. Without a
    /// scheme, private addresses and local names get `http://`, anything else `https://`.
    pub host: String,
    /// Who runs the node, e.g. `aws`, `cloudflare` or `openai`. Shown by `status`; rules select by it
    /// with `provider:aws`. `anthropic`, `gemini`, `azure` and `bedrock` also choose the API the node
    /// speaks (see `api`).
    #[serde(default)]
    pub provider: Option<String>,
    /// The API the node speaks, when `provider` does not say it: `openai` (any OpenAI-compatible
    /// server: vLLM, Ollama, llama.cpp), `anthropic`, `gemini`, `azure` (Azure OpenAI) or `bedrock`.
    /// Default: the `provider` if it is one of these, else `openai`.
    #[serde(default)]
    pub api: Option<Api>,
    /// Azure OpenAI's `api-version` query parameter.
    #[serde(default)]
    pub api_version: Option<String>,
    /// For `bedrock`: the environment variables (or Worker secrets) holding the AWS credentials
    /// requests are signed with (Signature Version 4). Default: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
    #[serde(default)]
    pub aws_credentials_env: Option<AwsCredentialsEnv>,
    /// The provider's region, e.g. `us-east-1`. Rules select by it with `region:us-*`.
    #[serde(default)]
    pub region: Option<String>,
    /// Where the node is, e.g. `cn-beijing`. Rules select by it with `location:cn-*`.
    #[serde(default)]
    pub location: Option<String>,
    /// Models the node serves, smallest first. `model: auto` picks from this list.
    #[serde(default)]
    pub models: Vec<String>,
    /// Free-form capabilities. `small_models` lets rules rewrite the model to one the node serves.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Most requests in flight at once; a full node overflows to its fallback. Unlimited if absent.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Larger is preferred by the `priority` strategy.
    #[serde(default)]
    pub priority: i64,
    /// Jurisdiction whose data this node may process (a name from `residency`), or `global`.
    #[serde(default)]
    pub data_residency: Option<String>,
    /// Price per 1,000 tokens, used by `cost_aware`.
    #[serde(default)]
    pub cost_per_1k_tokens: f64,
    /// Daily spending cap for this node.
    #[serde(default)]
    pub max_cost_per_day: Option<f64>,
    /// How long responses from this node may be cached at the edge.
    #[serde(default)]
    pub cache_ttl: Option<DurationSpec>,
    /// Relative share under the `weighted` strategy.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Name of the environment variable (or Worker secret) holding this origin's API key.
    /// The key is sent as `Authorization: Bearer …`; it never appears in the config.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Time limits for requests to this node.
    #[serde(default)]
    pub timeouts: NodeTimeouts,
    /// Path the edge box probes every `health_check.interval` with a GET
    /// (`/health`, say, for servers without the OpenAI model list).
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// The node's own Prometheus endpoint, e.g. `http://10.0.0.5:9100/metrics`: `autoscaling`
    /// entries read what the router cannot observe (CPU, GPU, queue length) from it.
    #[serde(default)]
    pub metrics_url: Option<String>,
}

fn default_health_path() -> String {
    "/v1/models".into()
}

fn default_weight() -> f64 {
    1.0
}

/// Per-node time limits.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NodeTimeouts {
    /// Time to establish the connection (and TLS).
    pub connect: DurationSpec,
    /// Time from sending the request to receiving the response head.
    pub first_byte: DurationSpec,
    /// Longest silence between two chunks of the response body (a stalled
    /// stream). A stream that stalls is ended with an SSE error event.
    pub idle: DurationSpec,
    /// Longest time from sending the request to the end of the response body.
    pub total: DurationSpec,
}

impl Default for NodeTimeouts {
    fn default() -> Self {
        Self {
            connect: DurationSpec::secs(5),
            first_byte: DurationSpec::secs(60),
            idle: DurationSpec::secs(60),
            total: DurationSpec::secs(600),
        }
    }
}

/// Strategy used to order several candidate nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StrategyName {
    /// Cheapest first.
    #[default]
    CostAware,
    /// Fastest observed first.
    LatencyFirst,
    /// Highest `priority` first.
    Priority,
    /// Random, in proportion to `weight`.
    Weighted,
}

impl StrategyName {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CostAware => "cost_aware",
            Self::LatencyFirst => "latency_first",
            Self::Priority => "priority",
            Self::Weighted => "weighted",
        }
    }

    /// The `x-edge-rule` of a request no rule matched: `strategy:<name>`.
    pub fn label(self) -> &'static str {
        match self {
            Self::CostAware => "strategy:cost_aware",
            Self::LatencyFirst => "strategy:latency_first",
            Self::Priority => "strategy:priority",
            Self::Weighted => "strategy:weighted",
        }
    }
}

/// The routing table.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Strategy for requests no rule matches, and for choosing among a rule's candidates.
    #[serde(default)]
    pub default: Option<StrategyName>,
    /// Another name for `default`, as the source documents write it.
    #[serde(default)]
    pub strategy: Option<StrategyName>,
    /// Node that receives every path other than the OpenAI endpoints, unchanged.
    /// Without it, other paths get 404.
    #[serde(default)]
    pub passthrough: Option<String>,
    /// Rules, tried in order (higher `priority_boost` first); the first match wins.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// How many fallback attempts (retries) may add to the traffic.
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
}

/// Caps retries when many requests fail, so a failing fleet is not hit by
/// every request once per node of its chain.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetConfig {
    /// Retries allowed per client request over the last 10 seconds, e.g. `0.2`.
    pub ratio: f64,
    /// Retries allowed per second regardless of traffic.
    pub min_per_second: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self { ratio: 0.2, min_per_second: 10 }
    }
}

/// One routing rule.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Name reported in `x-edge-rule`; defaults to `rules[N]`.
    #[serde(default)]
    pub name: Option<String>,
    /// Conditions, all of which must hold.
    #[serde(rename = "match", default)]
    pub matcher: MatchConfig,
    /// A node id, a glob over node ids such as `edge-*`, or a selector over
    /// what describes a node: `type:edge`, `provider:aws`, `region:eu-*`, `location:cn-*`.
    pub target: String,
    /// Nodes (ids, globs or selectors) tried after the target's candidates, in order. One that names
    /// no node is skipped, with a warning.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// Rules with a larger boost are tried before rules with a smaller one.
    #[serde(default)]
    pub priority_boost: i64,
    /// Strategy among the target's candidates; defaults to `routing.default`.
    #[serde(default)]
    pub strategy: Option<StrategyName>,
    /// Sends a share of the rule's traffic to one node first, e.g. a new
    /// model server being tried out. The rest of the traffic never goes there.
    #[serde(default)]
    pub canary: Option<CanaryConfig>,
    /// How long answers to this rule's requests stay cached; overrides the node's `cache_ttl`.
    #[serde(default)]
    pub cache_ttl: Option<DurationSpec>,
}

/// A canary split of a rule's traffic.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// The canary's node id. If it fails, the rule's own chain follows.
    pub node: String,
    /// Share of the rule's requests it gets first, from 0 to 100.
    pub percent: f64,
}

/// Conditions of a rule. Absent conditions always hold.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Request type, e.g. `realtime_chat`; `*` matches any, `chat*` a prefix.
    #[serde(rename = "type", default)]
    pub request_type: Option<String>,
    /// Estimated tokens at least this many.
    #[serde(default)]
    pub min_tokens: Option<u64>,
    /// Estimated tokens at most this many.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// A comparison on estimated tokens: `<1000`, `<=1000`, `>2000`, `>=2000` or `=500`.
    #[serde(default)]
    pub estimated_tokens: Option<String>,
    /// Client country (ISO 3166-1 alpha-2) or region (`EU`, `EEA`), one or a list.
    #[serde(default)]
    pub geo: Option<OneOrMany>,
    /// User tier from the API-key table, one or a list.
    #[serde(default)]
    pub user_tier: Option<OneOrMany>,
    /// Requested model, one or a list; globs allowed.
    #[serde(default)]
    pub model: Option<OneOrMany>,
}

/// A single string or a list of strings.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Several values; any may match.
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Strings;
        impl<'de> serde::de::Visitor<'de> for Strings {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut many = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(one) = seq.next_element()? {
                    many.push(one);
                }
                Ok(OneOrMany::Many(many))
            }
        }
        deserializer.deserialize_any(Strings)
    }
}

impl OneOrMany {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// Country allow and deny lists.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeofenceConfig {
    /// If not empty, only these countries are served. `@EU` stands for the EU member states.
    #[serde(default)]
    pub allow: Vec<String>,
    /// These countries are refused with 451, even if allowed.
    #[serde(default)]
    pub deny: Vec<String>,
    /// What a request whose country is unknown gets.
    #[serde(default)]
    pub unknown: UnknownCountry,
}

/// Treatment of requests whose country is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnknownCountry {
    /// Serve them (subject to `residency.unknown`).
    #[default]
    Allow,
    /// Refuse them with 451.
    Deny,
}

/// Jurisdictions and the countries in them.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResidencyConfig {
    /// Jurisdiction name to its countries, e.g. `EU: ["@EU"]` or `CN: [CN]`.
    #[serde(default)]
    pub jurisdictions: std::collections::BTreeMap<String, Vec<String>>,
    /// Jurisdiction applied to requests whose country is unknown; unrestricted if absent.
    #[serde(default)]
    pub unknown: Option<String>,
}

/// How `model: auto` (and a small-model node) chooses between a node's
/// smallest and largest model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SizeStrategy {
    /// By the request's estimated tokens (`small_max_tokens`).
    #[default]
    Tokens,
    /// By the prompt's difficulty score: the hardest `large_share` of
    /// requests get the largest model (see `docs/model-routing.md`).
    Learned,
}

/// The share of requests `strategy: learned` gives the largest model when the config names none.
pub const DEFAULT_LARGE_SHARE: f64 = 0.3;

/// How models are chosen for `model: auto` and on small-model nodes.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ModelRoutingConfig {
    /// How the smallest or the largest model is chosen: `tokens` (the default) or `learned`.
    pub strategy: SizeStrategy,
    /// `strategy: learned`: the share of requests, from 0 to 1, that get the
    /// node's largest model: the highest-scoring ones. Default 0.3.
    pub large_share: Option<f64>,
    /// `strategy: tokens`: requests estimated at or below this many tokens get the node's smallest model; larger ones its largest.
    pub small_max_tokens: u64,
    /// Request types that always get the node's largest model, whatever the strategy.
    pub complex_types: Vec<String>,
    /// When the router sent a request to another model than the one asked
    /// for, give the client back the model it asked for in the answer's
    /// `model` field (every event of a stream); `x-edge-model` still says
    /// which model answered. Off by default: the answer names the model
    /// that served it.
    pub restore_requested_model: bool,
}

impl Default for ModelRoutingConfig {
    fn default() -> Self {
        Self {
            strategy: SizeStrategy::Tokens,
            large_share: None,
            small_max_tokens: 1000,
            complex_types: vec!["complex_reasoning".into()],
            restore_requested_model: false,
        }
    }
}

/// Request-fact settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RequestsConfig {
    /// Completion tokens assumed when a request sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// A streamed chat request with a prompt at most this long is a `realtime_chat`.
    pub realtime_max_prompt_tokens: u64,
}

impl Default for RequestsConfig {
    fn default() -> Self {
        Self { default_max_tokens: 256, realtime_max_prompt_tokens: 500 }
    }
}

/// Active and passive health checking.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Time between active probes.
    pub interval: DurationSpec,
    /// Time limit of one probe.
    pub timeout: DurationSpec,
    /// Consecutive failures (connect errors, timeouts, 5xx other than 501)
    /// that open a node's breaker: it gets no requests until a cool-down ends.
    pub unhealthy_threshold: u32,
    /// How long an unhealthy node rests before one probe request is let through.
    pub cool_down: DurationSpec,
    /// Longest rest: each failed probe doubles the cool-down up to this.
    pub max_cool_down: DurationSpec,
    /// When fewer than this share (0-100) of the nodes a request may use are
    /// healthy, their breakers stop keeping it from the others, as Envoy's
    /// panic threshold does: after every healthy node, the request goes to
    /// an unhealthy one, the one whose cool-down ends first, rather than be
    /// refused. It never goes to a node outside its residency or a drained
    /// one. `x-edge-panic: true` and a log notice say so. 0 turns it off.
    pub panic_threshold: Percent,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            interval: DurationSpec::secs(30),
            timeout: DurationSpec::secs(5),
            unhealthy_threshold: 3,
            cool_down: DurationSpec::secs(10),
            max_cool_down: DurationSpec::secs(300),
            panic_threshold: Percent::HALF,
        }
    }
}

/// Budget days.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetsConfig {
    /// The UTC offset of the midnight at which daily budgets start again,
    /// such as `+00:00` (UTC) or `-05:00`. A fixed offset: summer time is not followed.
    pub utc_offset: String,
}

impl Default for BudgetsConfig {
    fn default() -> Self {
        Self { utc_offset: "+00:00".into() }
    }
}

/// The admin API of the edge box: `GET /admin/status`, and changes of
/// weights and draining (see `docs/admin.md`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin listener, e.g. `127.0.0.1:9901`. Without it there is no admin API.
    pub listen: Option<String>,
    /// Environment variable holding the bearer token every admin request must present.
    pub token_env: String,
    /// A file the edge box appends its audit trail to, a JSON line per event: admin actions,
    /// reloads, and refusals of keys, budgets and rate limits (see `docs/admin.md`). Read at start.
    pub audit_log: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { listen: None, token_env: "EDGE_ROUTER_ADMIN_TOKEN".into(), audit_log: None }
    }
}

/// The edge cache (see `docs/cache.md`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Whether anything is cached.
    pub enabled: bool,
    /// Memory the cache may hold, e.g. `256MiB`; least recently used entries go first.
    pub memory: ByteSize,
    /// How long AI answers stay cached when neither their rule nor their node sets `cache_ttl`.
    pub default_ttl: DurationSpec,
    /// One cache for every tenant. By default each tenant (from `auth.keys`) has its own,
    /// and one tenant never sees another's cached answer.
    pub shared: bool,
    /// Also cache answers to requests that sample (`temperature` above 0, or unset: the OpenAI
    /// default is 1), which would otherwise differ from call to call.
    pub cache_sampled: bool,
    /// Let clients set an answer's TTL with an `x-edge-cache-ttl: SECONDS` header.
    pub client_ttl: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            memory: ByteSize(64 << 20),
            default_ttl: DurationSpec::secs(300),
            shared: false,
            cache_sampled: false,
            client_ttl: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StrategyName;

    #[test]
    fn a_default_strategy_label_is_strategy_and_its_name() {
        for name in
            [StrategyName::CostAware, StrategyName::LatencyFirst, StrategyName::Priority, StrategyName::Weighted]
        {
            assert_eq!(name.label(), format!("strategy:{}", name.as_str()));
        }
    }
}
