//! The compiled config: the tables the router runs on, with node indices
//! instead of ids, globs resolved and country lists expanded. Only the
//! validator (`validate.rs`) makes one, through `RouterConfig::load`.

use std::net::SocketAddr;

use origin_fallback::Strategy;

use super::DurationSpec;
use super::load::Position;
use super::net::CidrBlock;
use super::types::*;
use super::{Api, AutoscalingConfig, AwsCredentialsEnv, MonitoringConfig, ServerConfig};
use crate::auth::KeyTable;
use crate::geo::{Geofence, NodeResidency, Residency};
use crate::rules::Rule;

/// A node as the router uses it.
#[derive(Debug, Clone)]
pub struct Node {
    /// Unique id.
    pub id: String,
    /// Where it runs.
    pub node_type: NodeType,
    /// Who runs it (`aws`, `openai`…), as written.
    pub provider: Option<String>,
    /// The API it speaks.
    pub api: Api,
    /// Azure OpenAI's `api-version`, when it speaks that.
    pub api_version: Option<String>,
    /// Where a Bedrock node's AWS credentials are (`None` for other APIs).
    pub aws_credentials_env: Option<AwsCredentialsEnv>,
    /// The provider's region, as written.
    pub region: Option<String>,
    /// Where it is, as written.
    pub location: Option<String>,
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// Models served, smallest first.
    pub models: Vec<String>,
    /// Whether rules may rewrite requests to this node's models.
    pub small_models: bool,
    /// Concurrency limit.
    pub max_concurrent: Option<u32>,
    /// Larger preferred.
    pub priority: i64,
    /// Which requests' data it may see.
    pub residency: NodeResidency,
    /// Price per 1,000 tokens.
    pub cost_per_1k_tokens: f64,
    /// Daily budget.
    pub max_cost_per_day: Option<f64>,
    /// Edge cache lifetime.
    pub cache_ttl: Option<DurationSpec>,
    /// Weighted share.
    pub weight: f64,
    /// Environment variable holding the origin key.
    pub api_key_env: Option<String>,
    /// Time limits.
    pub timeouts: NodeTimeouts,
    /// Path of active health probes, starting with `/`.
    pub health_path: String,
    /// The node's own Prometheus endpoint, which `autoscaling` reads.
    pub metrics_url: Option<String>,
    /// Capabilities as written.
    pub capabilities: Vec<String>,
}

/// The price of `tokens` at `per_1k` per thousand (a node's `cost_per_1k_tokens`).
pub fn cost_of(tokens: u64, per_1k: f64) -> f64 {
    tokens as f64 * per_1k / 1000.0
}

impl Node {
    /// Where a request for `target` (path and query) goes on this node:
    /// its base URL, whose path (if any) comes before the target's.
    pub fn url_for(&self, target: &str) -> String {
        let mut url = String::with_capacity(self.base_url.len() + target.len());
        url.push_str(&self.base_url);
        url.push_str(target);
        url
    }
}

/// Something the router loads but does not act on, or that is legal but
/// probably unintended: printed by `edge-router check`, logged by `serve`
/// and the Worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where in the file.
    pub position: Position,
    /// The path of the value, e.g. `routing.rules[1].fallback[0]`.
    pub path: String,
    /// What, as a sentence.
    pub message: String,
}

impl Warning {
    /// The warning as `file:line:column: path: message`, as errors read
    /// (`file: path: message` when its position is not known).
    pub fn in_file(&self, file: &str) -> String {
        match self.position.line {
            0 => format!("{file}: {}: {}", self.path, self.message),
            line => format!("{file}:{line}:{}: {}: {}", self.position.column, self.path, self.message),
        }
    }
}

/// A validated, compiled configuration.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Deployment name.
    pub name: String,
    /// The config's own version, as written.
    pub version: Option<String>,
    /// Edge box settings.
    pub server: ServerConfig,
    /// Parsed `server.trusted_proxies`.
    pub trusted_proxies: Vec<CidrBlock>,
    /// Parsed `server.listen`.
    pub listen: SocketAddr,
    /// Nodes, in file order.
    pub nodes: Vec<Node>,
    /// Rules in evaluation order (boost, then file order).
    pub rules: Vec<Rule>,
    /// Strategy when no rule matches.
    pub default_strategy: Strategy,
    /// Name of that strategy.
    pub default_strategy_name: StrategyName,
    /// Node for non-OpenAI paths.
    pub passthrough: Option<usize>,
    /// Country allow/deny lists.
    pub geofence: Geofence,
    /// Jurisdictions.
    pub residency: Residency,
    /// Model choice.
    pub model_routing: ModelRoutingConfig,
    /// Request facts.
    pub requests: RequestsConfig,
    /// Client keys.
    pub auth: KeyTable,
    /// Health checking.
    pub health_check: HealthCheckConfig,
    /// Retry budget.
    pub retry_budget: RetryBudgetConfig,
    /// When budget days start.
    pub budget_day: origin_fallback::BudgetDay,
    /// Parsed `admin.listen`.
    pub admin_listen: Option<SocketAddr>,
    /// Admin API settings.
    pub admin: AdminConfig,
    /// The edge cache.
    pub cache: CacheConfig,
    /// Autoscaling thresholds, validated; acted on by the operations layer.
    pub autoscaling: Vec<AutoscalingConfig>,
    /// `state`: the store a fleet shares, if any.
    pub state: super::StateConfig,
    /// Metrics to watch and the access log.
    pub monitoring: MonitoringConfig,
    /// What personal data is looked for, and what each node gets of it.
    pub pii: crate::pii::Policy,
    /// What is loaded but not acted on, and legal but suspicious things.
    pub warnings: Vec<Warning>,
}

impl RouterConfig {
    /// Why the Workers build refuses this config, if it does, and the path
    /// of the setting: it honours a config in full or not at all, never
    /// with a setting silently left out. (`load_to_json` asks this of the
    /// config the Worker bundles, and `load_json` of one from KV.)
    pub fn workers_refusal(&self) -> Option<(&'static str, &'static str)> {
        self.auth.jwt.is_some().then_some((
            "auth.jwt",
            "JWT bearer tokens are checked by the edge box only; the Workers build refuses a config that relies on \
             them rather than let tokens through unchecked (see docs/workers.md)",
        ))
    }

    /// The index of the node with `id`.
    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// The node at `index`, as a `Forward` names it; `None` past the end
    /// (a module configured otherwise than this host).
    pub fn node_at(&self, index: u32) -> Option<&Node> {
        self.nodes.get(usize::try_from(index).ok()?)
    }

    /// The `x-edge-rule` label of what chose a request's nodes: the rule's
    /// name (or `rules[i]`), `strategy:<name>`, or `passthrough`; `-` for
    /// a rule past the end (a module configured otherwise than this host).
    pub fn rule_label(&self, rule: crate::wire::RuleRef) -> &str {
        use crate::wire::RuleRef;
        match rule {
            RuleRef::Rule(i) => usize::try_from(i).ok().and_then(|i| self.rules.get(i)).map_or("-", |r| &r.label),
            RuleRef::Default => self.default_strategy_name.label(),
            RuleRef::Passthrough => "passthrough",
            RuleRef::Affinity => "affinity",
        }
    }
}
