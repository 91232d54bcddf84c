//! The request metrics, counted as records close (the state of the nodes
//! and the cache at a scrape is `state.rs`'s).
//!
//! Each thread counts into metrics of its own, one set per label set, found
//! by a hash of the record's label values; a scrape sums every thread's
//! (the `Shards` collector), and `prometheus-client` encodes the sums. So a
//! request writes no memory another thread writes: counting costs the same
//! on every worker thread at once as on one (`bench/src/signal_cost.rs`).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use edge_router::RouterConfig;
use edge_router::config::Api;
use exchange::record::{Outcome, Record, model_label};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
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
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct RouteLabels {
    node: String,
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

/// The OpenTelemetry GenAI attributes, in Prometheus form, and the node.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct GenAiLabels {
    gen_ai_operation_name: &'static str,
    gen_ai_provider_name: &'static str,
    gen_ai_request_model: String,
    gen_ai_response_model: String,
    /// Empty when the request succeeded.
    error_type: String,
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct TokenLabels {
    gen_ai_operation_name: &'static str,
    gen_ai_provider_name: &'static str,
    gen_ai_token_type: &'static str,
    gen_ai_request_model: String,
    gen_ai_response_model: String,
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub(super) struct NodeLabels {
    pub(super) node: String,
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

/// A counter one thread adds to, read by scrapes. Only its thread writes
/// it, so an update is a load and a store, with no cache line shared
/// between threads on the request path.
#[derive(Default)]
struct Tally(AtomicU64);

impl Tally {
    fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A sum of `f64`s one thread adds to (its bits in an atomic).
#[derive(Default)]
struct Sum(AtomicU64);

impl Sum {
    fn add(&self, v: f64) {
        let now = f64::from_bits(self.0.load(Ordering::Relaxed)) + v;
        self.0.store(now.to_bits(), Ordering::Relaxed);
    }

    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// A histogram one thread observes into: a count per bucket (the last one
/// past every bound), their sum, and the sum of the values.
struct Spread {
    bounds: &'static [f64],
    counts: Box<[Tally]>,
    sum: Sum,
}

impl Spread {
    fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: (0..=bounds.len()).map(|_| Tally::default()).collect(), sum: Sum::default() }
    }

    fn observe(&self, v: f64) {
        let bucket = self.bounds.iter().position(|b| v <= *b).unwrap_or(self.bounds.len());
        self.counts[bucket].add(1);
        self.sum.add(v);
    }
}

/// Spreads summed over threads, as a scrape encodes them.
struct SpreadTotal {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
}

impl SpreadTotal {
    fn add(&mut self, s: &Spread) {
        for (total, c) in self.counts.iter_mut().zip(s.counts.iter()) {
            *total += c.get();
        }
        self.sum += s.sum.get();
    }
}

impl EncodeMetric for SpreadTotal {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> =
            self.bounds.iter().copied().chain([f64::MAX]).zip(self.counts.iter().copied()).collect();
        let count = self.counts.iter().sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The request metrics, counted as records close: each thread counts into
/// handles of its own per label set (see [`Handles`]), and a scrape sums
/// them ([`Shards`]).
pub(super) struct Metrics {
    /// Tells this one's handles from another's in the per-thread cache.
    id: u64,
    pub(super) registry: Registry,
    shards: Arc<Shards>,
    pub(super) access_log_dropped: Counter,
    pub(super) routing_log_missed: Counter,
}

impl Metrics {
    pub(super) fn new() -> Self {
        let shards = Arc::new(Shards::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(shards.clone()));
        let (access_log_dropped, routing_log_missed) = (Counter::default(), Counter::default());
        registry.register(
            "edge_router_access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            access_log_dropped.clone(),
        );
        registry.register(
            "edge_router_routing_log_missed",
            "Records routing-log readers missed by falling behind",
            routing_log_missed.clone(),
        );
        Self {
            id: METRICS_MADE.fetch_add(1, Ordering::Relaxed),
            registry,
            shards,
            access_log_dropped,
            routing_log_missed,
        }
    }

    /// Counts a closed record, in this thread's handles for its labels.
    pub(super) fn count(&self, r: &Record, config: &RouterConfig, tenant_labels: bool) {
        let labels = Labels::of(r, config, tenant_labels);
        HANDLES.with_borrow_mut(|cache| {
            cache.key.clear();
            labels.key(self.id, &mut cache.key);
            // One lookup for a label set seen before, as nearly all are.
            if let Some(h) = cache.map.get(cache.key.as_str()) {
                return h.observe(r);
            }
            let handles = Arc::new(Handles::new(labels.gen_ai.is_some()));
            crate::lock(&self.shards.all).push((labels.owned(), handles.clone()));
            handles.observe(r);
            cache.map.insert(cache.key.clone().into_boxed_str(), handles);
        });
    }
}

thread_local! {
    /// This thread's handles, by their labels (and the `Metrics` they belong to).
    static HANDLES: std::cell::RefCell<HandleCache> = std::cell::RefCell::new(HandleCache::default());
}

#[derive(Default)]
struct HandleCache {
    map: HashMap<Box<str>, Arc<Handles>, BuildHasherDefault<FxHasher>>,
    /// The key being looked up, reused.
    key: String,
}

/// Counts the `Metrics` a process makes, to tell them apart in the
/// per-thread handles.
static METRICS_MADE: AtomicU64 = AtomicU64::new(0);

/// Every thread's handles, with their labels: what a scrape sums. The
/// label sets are bounded by the config (see `docs/operations.md`), so
/// this only grows with new label sets and threads.
#[derive(Default)]
struct Shards {
    all: Mutex<Vec<(OwnedLabels, Arc<Handles>)>>,
}

impl std::fmt::Debug for Shards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shards")
    }
}

/// The label sets of one kind of record, for each family it counts in.
struct OwnedLabels {
    request: RequestLabels,
    route: RouteLabels,
    rule: RuleLabels,
    node: NodeLabels,
    gen_ai: Option<(GenAiLabels, TokenLabels, TokenLabels)>,
}

/// Sums of one family, by label set.
type Totals<L, V> = BTreeMap<L, V>;

impl Collector for Shards {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = crate::lock(&self.all);
        let spread = |bounds| SpreadTotal { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0 };
        let mut requests: Totals<&RequestLabels, u64> = BTreeMap::new();
        let mut duration: Totals<&RouteLabels, SpreadTotal> = BTreeMap::new();
        let mut first_byte: Totals<&RouteLabels, SpreadTotal> = BTreeMap::new();
        let mut attempts: Totals<&RuleLabels, u64> = BTreeMap::new();
        let mut fallbacks: Totals<&RuleLabels, u64> = BTreeMap::new();
        let mut cost: Totals<&NodeLabels, f64> = BTreeMap::new();
        let mut tokens: Totals<&TokenLabels, SpreadTotal> = BTreeMap::new();
        let mut server: Totals<&GenAiLabels, SpreadTotal> = BTreeMap::new();
        let mut first_token: Totals<&GenAiLabels, SpreadTotal> = BTreeMap::new();
        let mut per_token: Totals<&GenAiLabels, SpreadTotal> = BTreeMap::new();
        for (l, h) in all.iter() {
            *requests.entry(&l.request).or_default() += h.requests.get();
            duration.entry(&l.route).or_insert_with(|| spread(&DURATION_BUCKETS)).add(&h.duration);
            first_byte.entry(&l.route).or_insert_with(|| spread(&FIRST_TOKEN_BUCKETS)).add(&h.first_byte);
            *attempts.entry(&l.rule).or_default() += h.attempts.get();
            *fallbacks.entry(&l.rule).or_default() += h.fallbacks.get();
            *cost.entry(&l.node).or_default() += h.cost.get();
            if let (Some((g, input, output)), Some(gh)) = (&l.gen_ai, &h.gen_ai) {
                tokens.entry(input).or_insert_with(|| spread(&TOKEN_BUCKETS)).add(&gh.input);
                tokens.entry(output).or_insert_with(|| spread(&TOKEN_BUCKETS)).add(&gh.output);
                server.entry(g).or_insert_with(|| spread(&DURATION_BUCKETS)).add(&gh.duration);
                first_token.entry(g).or_insert_with(|| spread(&FIRST_TOKEN_BUCKETS)).add(&gh.first_token);
                per_token.entry(g).or_insert_with(|| spread(&PER_TOKEN_BUCKETS)).add(&gh.per_token);
            }
        }
        let seconds = Unit::Seconds;
        counters(
            &mut encoder,
            "edge_router_requests",
            "Requests, by serving node (- for the router's own answers), rule, status class, cache status and refusal reason",
            &requests,
        )?;
        spreads(
            &mut encoder,
            "edge_router_request_duration",
            "Time from a request's arrival to the end of its response body",
            Some(&seconds),
            &duration,
        )?;
        spreads(
            &mut encoder,
            "edge_router_time_to_first_byte",
            "Time from a request's arrival to its response head",
            Some(&seconds),
            &first_byte,
        )?;
        counters(&mut encoder, "edge_router_attempts", "Nodes tried, over all requests, by rule", &attempts)?;
        counters(&mut encoder, "edge_router_fallbacks", "Attempts after a request's first, by rule", &fallbacks)?;
        counters(&mut encoder, "edge_router_cost", "Cost of the tokens answers reported, by node", &cost)?;
        spreads(
            &mut encoder,
            "gen_ai_client_token_usage",
            "Number of input and output tokens used (OpenTelemetry gen_ai.client.token.usage)",
            None,
            &tokens,
        )?;
        spreads(
            &mut encoder,
            "gen_ai_server_request_duration",
            "Generative AI server request duration such as time-to-last byte or last output token",
            Some(&seconds),
            &server,
        )?;
        spreads(
            &mut encoder,
            "gen_ai_server_time_to_first_token",
            "Time to generate first token for successful responses",
            Some(&seconds),
            &first_token,
        )?;
        spreads(
            &mut encoder,
            "gen_ai_server_time_per_output_token",
            "Time per output token generated after the first token for successful responses",
            Some(&seconds),
            &per_token,
        )
    }
}

/// A counter family of `totals`; none when it has no series.
fn counters<L: EncodeLabelSet, V: EncodeCounterValue + Copy>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    totals: &Totals<&L, V>,
) -> Result<(), std::fmt::Error> {
    if totals.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in totals {
        ConstCounter::new(*value).encode(family.encode_family(*labels)?)?;
    }
    Ok(())
}

/// A histogram family of `totals`; none when it has no series.
fn spreads<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    totals: &Totals<&L, SpreadTotal>,
) -> Result<(), std::fmt::Error> {
    if totals.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Histogram)?;
    for (labels, value) in totals {
        value.encode(family.encode_family(*labels)?)?;
    }
    Ok(())
}

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
        out.push_str(edge_router::wire::Digits::of(metrics).as_str());
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

    /// Their label sets, as the families name them.
    fn owned(&self) -> OwnedLabels {
        let node = self.node.to_string();
        OwnedLabels {
            request: RequestLabels {
                node: node.clone(),
                rule: self.rule.to_string(),
                status_class: self.status_class,
                cache: self.cache.to_string(),
                refusal: self.refusal,
                tenant: self.tenant.to_string(),
            },
            route: RouteLabels { node: node.clone(), rule: self.rule.to_string() },
            rule: RuleLabels { rule: self.rule.to_string() },
            node: NodeLabels { node: node.clone() },
            gen_ai: self.gen_ai.as_ref().map(|g| {
                let tokens = |kind: &'static str| TokenLabels {
                    gen_ai_operation_name: g.operation,
                    gen_ai_provider_name: g.provider,
                    gen_ai_token_type: kind,
                    gen_ai_request_model: g.request_model.to_string(),
                    gen_ai_response_model: g.response_model.to_string(),
                    node: node.clone(),
                };
                let labels = GenAiLabels {
                    gen_ai_operation_name: g.operation,
                    gen_ai_provider_name: g.provider,
                    gen_ai_request_model: g.request_model.to_string(),
                    gen_ai_response_model: g.response_model.to_string(),
                    error_type: g.error_type.to_string(),
                    node: node.clone(),
                };
                (labels, tokens("input"), tokens("output"))
            }),
        }
    }
}

/// What one kind of record moves, for one thread.
struct Handles {
    requests: Tally,
    duration: Spread,
    first_byte: Spread,
    attempts: Tally,
    fallbacks: Tally,
    cost: Sum,
    gen_ai: Option<GenAiHandles>,
}

struct GenAiHandles {
    duration: Spread,
    first_token: Spread,
    per_token: Spread,
    input: Spread,
    output: Spread,
}

impl Handles {
    fn new(gen_ai: bool) -> Self {
        Self {
            requests: Tally::default(),
            duration: Spread::new(&DURATION_BUCKETS),
            first_byte: Spread::new(&FIRST_TOKEN_BUCKETS),
            attempts: Tally::default(),
            fallbacks: Tally::default(),
            cost: Sum::default(),
            gen_ai: gen_ai.then(|| GenAiHandles {
                duration: Spread::new(&DURATION_BUCKETS),
                first_token: Spread::new(&FIRST_TOKEN_BUCKETS),
                per_token: Spread::new(&PER_TOKEN_BUCKETS),
                input: Spread::new(&TOKEN_BUCKETS),
                output: Spread::new(&TOKEN_BUCKETS),
            }),
        }
    }

    fn observe(&self, r: &Record) {
        self.requests.add(1);
        self.duration.observe(r.duration_ms as f64 / 1000.0);
        self.first_byte.observe(r.ttfb_ms as f64 / 1000.0);
        if r.attempts > 0 {
            self.attempts.add(u64::from(r.attempts));
            self.fallbacks.add(u64::from(r.attempts - 1));
        }
        if let Some(cost) = r.cost.filter(|c| *c > 0.0) {
            self.cost.add(cost);
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
