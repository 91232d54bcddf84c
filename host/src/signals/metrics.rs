//! The Prometheus metrics: the request metrics counted as records close,
//! and, at each scrape, the state of the nodes and the cache.
//!
//! A record's labels are looked up in the metric families once per thread
//! and label set; after that a record costs a hash of its label values and
//! the metrics' own atomic updates (`bench/src/signal_cost.rs` measures it).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use edge_router::RouterConfig;
use edge_router::config::Api;
use exchange::record::{Outcome, Record, model_label};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// OpenTelemetry's bucket boundaries (GenAI semantic conventions).
const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];
const DURATION_BUCKETS: [f64; 14] =
    [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
const FIRST_TOKEN_BUCKETS: [f64; 16] =
    [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
const PER_TOKEN_BUCKETS: [f64; 13] = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5];

/// A request, by what served it and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    node: String,
    rule: String,
    status_class: &'static str,
    cache: String,
    /// Empty unless the router refused or failed the request.
    refusal: &'static str,
    /// Empty unless `monitoring.tenant_labels` is on.
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    node: String,
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

/// The OpenTelemetry GenAI attributes, in Prometheus form, and the node.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GenAiLabels {
    gen_ai_operation_name: &'static str,
    gen_ai_provider_name: &'static str,
    gen_ai_request_model: String,
    gen_ai_response_model: String,
    /// Empty when the request succeeded.
    error_type: String,
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    gen_ai_operation_name: &'static str,
    gen_ai_provider_name: &'static str,
    gen_ai_token_type: &'static str,
    gen_ai_request_model: String,
    gen_ai_response_model: String,
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabels {
    node: String,
    state: &'static str,
}

/// Makes the histograms of a family, with these bucket boundaries.
#[derive(Clone, Copy)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

type Histograms<L> = Family<L, Histogram, Buckets>;

fn histograms<L: Clone + std::hash::Hash + Eq>(buckets: &'static [f64]) -> Histograms<L> {
    Family::new_with_constructor(Buckets(buckets))
}

/// The OpenTelemetry `gen_ai.provider.name` of a node's API.
fn provider_name(api: Api) -> &'static str {
    match api {
        Api::OpenAi => "openai",
        Api::Anthropic => "anthropic",
        Api::Gemini => "gcp.gemini",
        Api::Azure => "azure.ai.openai",
        Api::Bedrock => "aws.bedrock",
    }
}

/// The request metrics, counted as records close.
pub(super) struct Metrics {
    /// Tells this one's handles from another's in the per-thread cache.
    id: u64,
    pub(super) registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histograms<RouteLabels>,
    first_byte: Histograms<RouteLabels>,
    attempts: Family<RuleLabels, Counter>,
    fallbacks: Family<RuleLabels, Counter>,
    token_usage: Histograms<TokenLabels>,
    server_duration: Histograms<GenAiLabels>,
    first_token: Histograms<GenAiLabels>,
    per_token: Histograms<GenAiLabels>,
    cost: Family<NodeLabels, Counter<f64, AtomicU64>>,
    pub(super) access_log_dropped: Counter,
    pub(super) routing_log_missed: Counter,
}

impl Metrics {
    pub(super) fn new() -> Self {
        let mut m = Self {
            id: METRICS_MADE.fetch_add(1, Ordering::Relaxed),
            registry: Registry::default(),
            requests: Family::default(),
            duration: histograms(&DURATION_BUCKETS),
            first_byte: histograms(&FIRST_TOKEN_BUCKETS),
            attempts: Family::default(),
            fallbacks: Family::default(),
            token_usage: histograms(&TOKEN_BUCKETS),
            server_duration: histograms(&DURATION_BUCKETS),
            first_token: histograms(&FIRST_TOKEN_BUCKETS),
            per_token: histograms(&PER_TOKEN_BUCKETS),
            cost: Family::default(),
            access_log_dropped: Counter::default(),
            routing_log_missed: Counter::default(),
        };
        let r = &mut m.registry;
        r.register(
            "edge_router_requests",
            "Requests, by serving node (- for the router's own answers), rule, status class, cache status and refusal reason",
            m.requests.clone(),
        );
        r.register_with_unit(
            "edge_router_request_duration",
            "Time from a request's arrival to the end of its response body",
            Unit::Seconds,
            m.duration.clone(),
        );
        r.register_with_unit(
            "edge_router_time_to_first_byte",
            "Time from a request's arrival to its response head",
            Unit::Seconds,
            m.first_byte.clone(),
        );
        r.register("edge_router_attempts", "Nodes tried, over all requests, by rule", m.attempts.clone());
        r.register("edge_router_fallbacks", "Attempts after a request's first, by rule", m.fallbacks.clone());
        r.register(
            "gen_ai_client_token_usage",
            "Number of input and output tokens used (OpenTelemetry gen_ai.client.token.usage)",
            m.token_usage.clone(),
        );
        r.register_with_unit(
            "gen_ai_server_request_duration",
            "Generative AI server request duration such as time-to-last byte or last output token",
            Unit::Seconds,
            m.server_duration.clone(),
        );
        r.register_with_unit(
            "gen_ai_server_time_to_first_token",
            "Time to generate first token for successful responses",
            Unit::Seconds,
            m.first_token.clone(),
        );
        r.register_with_unit(
            "gen_ai_server_time_per_output_token",
            "Time per output token generated after the first token for successful responses",
            Unit::Seconds,
            m.per_token.clone(),
        );
        r.register("edge_router_cost", "Cost of the tokens answers reported, by node", m.cost.clone());
        r.register(
            "edge_router_access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            m.access_log_dropped.clone(),
        );
        r.register(
            "edge_router_routing_log_missed",
            "Records routing-log readers missed by falling behind",
            m.routing_log_missed.clone(),
        );
        m
    }

    /// Counts a closed record: through this thread's handles for its
    /// labels, resolved in the families the first time they are seen.
    pub(super) fn count(&self, r: &Record, config: &RouterConfig, tenant_labels: bool) {
        let labels = Labels::of(r, config, tenant_labels);
        HANDLES.with_borrow_mut(|cache| {
            cache.key.clear();
            labels.key(self.id, &mut cache.key);
            if !cache.map.contains_key(cache.key.as_str()) {
                if cache.map.len() >= MAX_HANDLES {
                    cache.map.clear();
                }
                let resolved = self.resolve(&labels);
                cache.map.insert(cache.key.clone().into_boxed_str(), resolved);
            }
            if let Some(h) = cache.map.get(cache.key.as_str()) {
                h.observe(r);
            }
        });
    }

    /// The metrics a record of `labels` moves, from the families.
    fn resolve(&self, l: &Labels<'_>) -> Handles {
        let route = RouteLabels { node: l.node.to_string(), rule: l.rule.to_string() };
        let rule = RuleLabels { rule: l.rule.to_string() };
        let gen_ai = l.gen_ai.as_ref().map(|g| {
            let labels = GenAiLabels {
                gen_ai_operation_name: g.operation,
                gen_ai_provider_name: g.provider,
                gen_ai_request_model: g.request_model.to_string(),
                gen_ai_response_model: g.response_model.to_string(),
                error_type: g.error_type.to_string(),
                node: l.node.to_string(),
            };
            let tokens = |kind: &'static str| TokenLabels {
                gen_ai_operation_name: g.operation,
                gen_ai_provider_name: g.provider,
                gen_ai_token_type: kind,
                gen_ai_request_model: g.request_model.to_string(),
                gen_ai_response_model: g.response_model.to_string(),
                node: l.node.to_string(),
            };
            GenAiHandles {
                duration: self.server_duration.get_or_create_owned(&labels),
                first_token: self.first_token.get_or_create_owned(&labels),
                per_token: self.per_token.get_or_create_owned(&labels),
                input: self.token_usage.get_or_create_owned(&tokens("input")),
                output: self.token_usage.get_or_create_owned(&tokens("output")),
            }
        });
        Handles {
            requests: self.requests.get_or_create_owned(&RequestLabels {
                node: l.node.to_string(),
                rule: l.rule.to_string(),
                status_class: l.status_class,
                cache: l.cache.to_string(),
                refusal: l.refusal,
                tenant: l.tenant.to_string(),
            }),
            duration: self.duration.get_or_create_owned(&route),
            first_byte: self.first_byte.get_or_create_owned(&route),
            attempts: self.attempts.get_or_create_owned(&rule),
            fallbacks: self.fallbacks.get_or_create_owned(&rule),
            cost: self.cost.get_or_create_owned(&NodeLabels { node: l.node.to_string() }),
            gen_ai,
        }
    }
}

/// Most label sets a thread keeps handles for; past it, it starts afresh.
const MAX_HANDLES: usize = 4096;

thread_local! {
    /// This thread's handles, by their labels (and the `Metrics` they belong to).
    static HANDLES: std::cell::RefCell<HandleCache> = std::cell::RefCell::new(HandleCache::default());
}

#[derive(Default)]
struct HandleCache {
    map: HashMap<Box<str>, Handles, BuildHasherDefault<FxHasher>>,
    /// The key being looked up, reused.
    key: String,
}

/// Counts the first time a process makes a `Metrics`, to tell them apart in
/// the per-thread handles.
static METRICS_MADE: AtomicU64 = AtomicU64::new(0);

/// The label values of a record.
struct Labels<'r> {
    node: &'r str,
    rule: &'r str,
    status_class: &'static str,
    cache: &'r str,
    refusal: &'static str,
    tenant: &'r str,
    /// The OpenTelemetry GenAI attributes, for an API call a node answered.
    gen_ai: Option<GenAiValues<'r>>,
}

struct GenAiValues<'r> {
    operation: &'static str,
    provider: &'static str,
    request_model: &'r str,
    response_model: &'r str,
    error_type: std::borrow::Cow<'static, str>,
}

impl<'r> Labels<'r> {
    fn of(r: &'r Record, config: &'r RouterConfig, tenant_labels: bool) -> Self {
        let node = config.node_index(&r.node).map(|i| &config.nodes[i]);
        let gen_ai = r.operation().zip(node).map(|(operation, node)| GenAiValues {
            operation,
            provider: provider_name(node.api),
            request_model: model_label(config, r.requested_model.as_deref()),
            response_model: model_label(config, r.served_model.as_deref()),
            error_type: match (r.refusal, r.outcome) {
                (Some(kind), _) => kind.into(),
                _ if r.status >= 400 => r.status.to_string().into(),
                (_, Some(Outcome::Broken)) => "broken_off".into(),
                (_, Some(Outcome::ClientGone)) => "client_gone".into(),
                _ => "".into(),
            },
        });
        Self {
            node: &r.node,
            rule: &r.rule,
            status_class: r.status_class(),
            cache: &r.cache,
            refusal: r.refusal.unwrap_or_default(),
            tenant: if tenant_labels { r.tenant.as_deref().unwrap_or_default() } else { "" },
            gen_ai,
        }
    }

    /// The values, one after another, after `metrics`: a key for the handles.
    fn key(&self, metrics: u64, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(out, "{metrics}");
        for part in [self.node, self.rule, self.status_class, self.cache, self.refusal, self.tenant] {
            out.push('\u{1}');
            out.push_str(part);
        }
        if let Some(g) = &self.gen_ai {
            for part in [g.operation, g.provider, g.request_model, g.response_model, &g.error_type] {
                out.push('\u{1}');
                out.push_str(part);
            }
        }
    }
}

/// The metrics one kind of record moves, resolved once.
struct Handles {
    requests: Counter,
    duration: Histogram,
    first_byte: Histogram,
    attempts: Counter,
    fallbacks: Counter,
    cost: Counter<f64, AtomicU64>,
    gen_ai: Option<GenAiHandles>,
}

struct GenAiHandles {
    duration: Histogram,
    first_token: Histogram,
    per_token: Histogram,
    input: Histogram,
    output: Histogram,
}

impl Handles {
    fn observe(&self, r: &Record) {
        self.requests.inc();
        self.duration.observe(r.duration_ms as f64 / 1000.0);
        self.first_byte.observe(r.ttfb_ms as f64 / 1000.0);
        if r.attempts > 0 {
            self.attempts.inc_by(u64::from(r.attempts));
            if r.attempts > 1 {
                self.fallbacks.inc_by(u64::from(r.attempts - 1));
            }
        }
        if let Some(cost) = r.cost.filter(|c| *c > 0.0) {
            self.cost.inc_by(cost);
        }
        let Some(g) = &self.gen_ai else { return };
        g.duration.observe(r.duration_ms as f64 / 1000.0);
        if r.status < 400 && r.outcome == Some(Outcome::Complete) {
            g.first_token.observe(r.ttfb_ms as f64 / 1000.0);
            if let Some(s) = r.time_per_output_token_s() {
                g.per_token.observe(s);
            }
        }
        if let Some(t) = r.tokens_in {
            g.input.observe(t as f64);
        }
        if let Some(t) = r.tokens_out {
            g.output.observe(t as f64);
        }
    }
}

/// FxHash (rustc's): a multiply and a rotate per word, for the short keys
/// of the per-thread handles, which no client chooses.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let word = u64::from_le_bytes(c.try_into().unwrap_or_default());
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(SEED);
        }
    }
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
}
