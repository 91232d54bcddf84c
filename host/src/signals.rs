//! What the edge box tells operators about each request: the Prometheus
//! metrics (`GET /metrics` on the admin listener), the JSON access log, and
//! the live routing log (`edge-router routing-log --follow`). Each request's
//! [`Record`] is made by the exchange (`exchange::record`), the same as the
//! Worker's; this counts it, writes it and passes it on.
//!
//! Nothing here can slow the proxy: the access log is written by a thread
//! of its own through a bounded queue (a line that does not fit is dropped
//! and counted), and routing-log readers get records through a bounded
//! broadcast channel (a reader that falls behind misses records and is told
//! how many). See `docs/operations.md`.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use tokio::sync::broadcast::error::RecvError;

use anyhow::Context;
use edge_router::RouterConfig;
use edge_router::config::{AccessLogTarget, Api};
use exchange::record::{Outcome, Record, model_label};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Lines the access log may hold before the writer thread takes them.
const ACCESS_LOG_QUEUE: usize = 8192;
/// Records a routing-log reader may fall behind by before it misses some.
pub const ROUTING_LOG_QUEUE: usize = 1024;
/// Lines a routing-log response holds for its reader.
pub const LINES_AHEAD: usize = 16;

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
struct Metrics {
    registry: Registry,
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
    access_log_dropped: Counter,
    routing_log_missed: Counter,
}

impl Metrics {
    fn new() -> Self {
        let mut m = Self {
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

    fn count(&self, r: &Record, config: &RouterConfig, tenant_labels: bool) {
        let tenant = if tenant_labels { r.tenant.as_deref().unwrap_or_default().to_string() } else { String::new() };
        self.requests
            .get_or_create(&RequestLabels {
                node: r.node.clone(),
                rule: r.rule.clone(),
                status_class: r.status_class(),
                cache: r.cache.clone(),
                refusal: r.refusal.unwrap_or_default(),
                tenant,
            })
            .inc();
        let route = RouteLabels { node: r.node.clone(), rule: r.rule.clone() };
        self.duration.get_or_create(&route).observe(r.duration_ms as f64 / 1000.0);
        self.first_byte.get_or_create(&route).observe(r.ttfb_ms as f64 / 1000.0);
        if r.attempts > 0 {
            let rule = RuleLabels { rule: r.rule.clone() };
            self.attempts.get_or_create(&rule).inc_by(u64::from(r.attempts));
            if r.attempts > 1 {
                self.fallbacks.get_or_create(&rule).inc_by(u64::from(r.attempts - 1));
            }
        }
        if let Some(cost) = r.cost.filter(|c| *c > 0.0) {
            self.cost.get_or_create(&NodeLabels { node: r.node.clone() }).inc_by(cost);
        }
        // The GenAI conventions describe inference calls a model server answered.
        let (Some(operation), Some(node)) = (r.operation(), config.node_index(&r.node).map(|i| &config.nodes[i]))
        else {
            return;
        };
        let provider = provider_name(node.api);
        let request_model = model_label(config, r.requested_model.as_deref()).to_string();
        let response_model = model_label(config, r.served_model.as_deref()).to_string();
        let failed = r.status >= 400 || r.outcome != Some(Outcome::Complete);
        let error_type = match (r.refusal, r.outcome) {
            (Some(kind), _) => kind.to_string(),
            _ if r.status >= 400 => r.status.to_string(),
            (_, Some(Outcome::Broken)) => "broken_off".to_string(),
            (_, Some(Outcome::ClientGone)) => "client_gone".to_string(),
            _ => String::new(),
        };
        let gen_ai = GenAiLabels {
            gen_ai_operation_name: operation,
            gen_ai_provider_name: provider,
            gen_ai_request_model: request_model.clone(),
            gen_ai_response_model: response_model.clone(),
            error_type,
            node: r.node.clone(),
        };
        self.server_duration.get_or_create(&gen_ai).observe(r.duration_ms as f64 / 1000.0);
        if !failed {
            self.first_token.get_or_create(&gen_ai).observe(r.ttfb_ms as f64 / 1000.0);
            if let Some(s) = r.time_per_output_token_s() {
                self.per_token.get_or_create(&gen_ai).observe(s);
            }
        }
        for (kind, tokens) in [("input", r.tokens_in), ("output", r.tokens_out)] {
            let Some(tokens) = tokens else { continue };
            let labels = TokenLabels {
                gen_ai_operation_name: operation,
                gen_ai_provider_name: provider,
                gen_ai_token_type: kind,
                gen_ai_request_model: request_model.clone(),
                gen_ai_response_model: response_model.clone(),
                node: r.node.clone(),
            };
            self.token_usage.get_or_create(&labels).observe(tokens as f64);
        }
    }
}

/// The access log's writer thread and the queue to it.
struct AccessLog {
    queue: SyncSender<String>,
    /// The share of requests logged.
    sample: f64,
}

impl AccessLog {
    fn open(target: &AccessLogTarget, sample: f64) -> anyhow::Result<Option<Self>> {
        let out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::Stdout => Box::new(std::io::stdout()),
            AccessLogTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open the access log {path} (monitoring.access_log)"))?,
            ),
        };
        let (queue, lines) = std::sync::mpsc::sync_channel(ACCESS_LOG_QUEUE);
        std::thread::Builder::new().name("access-log".into()).spawn(move || write_lines(&lines, out))?;
        Ok(Some(Self { queue, sample }))
    }
}

/// Writes lines as they come, flushing whenever the queue is empty; ends
/// when every sender is gone.
fn write_lines(lines: &Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 << 10, out);
    while let Ok(line) = lines.recv() {
        let mut next = Some(line);
        while let Some(line) = next {
            if out.write_all(line.as_bytes()).and_then(|()| out.write_all(b"\n")).is_err() {
                return;
            }
            next = lines.try_recv().ok();
        }
        if out.flush().is_err() {
            return;
        }
    }
}

/// A record as routing-log readers get it.
pub type Followed = Arc<Record>;

/// Records kept for `routing-log` without `--follow` and the dashboard.
const RECENT: usize = 200;

/// Which records a routing-log reader wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only those served by this node (`-`: the router's own answers).
    pub node: Option<String>,
    /// Only those of this rule label.
    pub rule: Option<String>,
}

impl Filter {
    /// Whether `record` passes.
    pub fn keeps(&self, record: &Record) -> bool {
        self.node.as_ref().is_none_or(|n| *n == record.node) && self.rule.as_ref().is_none_or(|r| *r == record.rule)
    }
}

/// Metrics, access log and routing log of one edge box.
pub struct Signals {
    metrics: Metrics,
    /// Replaced when a reloaded config changes `monitoring.access_log`.
    access_log: std::sync::RwLock<Option<AccessLog>>,
    /// What the access log was opened for: its target and share.
    access_log_config: std::sync::Mutex<(AccessLogTarget, f64)>,
    tenant_labels: std::sync::atomic::AtomicBool,
    routing_log: tokio::sync::broadcast::Sender<Followed>,
    /// The latest records, newest last.
    recent: std::sync::Mutex<std::collections::VecDeque<Followed>>,
}

impl Signals {
    /// The signals `config.monitoring` asks for; the access log file is opened now.
    pub fn new(config: &RouterConfig) -> anyhow::Result<Self> {
        let m = &config.monitoring;
        Ok(Self {
            metrics: Metrics::new(),
            access_log: std::sync::RwLock::new(AccessLog::open(&m.access_log, m.access_log_sample)?),
            access_log_config: std::sync::Mutex::new((m.access_log.clone(), m.access_log_sample)),
            tenant_labels: std::sync::atomic::AtomicBool::new(m.tenant_labels),
            routing_log: tokio::sync::broadcast::Sender::new(ROUTING_LOG_QUEUE),
            recent: std::sync::Mutex::new(std::collections::VecDeque::with_capacity(RECENT)),
        })
    }

    /// A reloaded config's `monitoring`: the access log is opened afresh if
    /// its target or share changed (a file that cannot be opened leaves the
    /// log as it was, and says so).
    pub fn reconfigure(&self, config: &RouterConfig) {
        let m = &config.monitoring;
        self.tenant_labels.store(m.tenant_labels, std::sync::atomic::Ordering::Relaxed);
        let mut opened = crate::lock(&self.access_log_config);
        if *opened == (m.access_log.clone(), m.access_log_sample) {
            return;
        }
        match AccessLog::open(&m.access_log, m.access_log_sample) {
            Ok(log) => {
                *self.access_log.write().unwrap_or_else(std::sync::PoisonError::into_inner) = log;
                *opened = (m.access_log.clone(), m.access_log_sample);
            }
            Err(e) => tracing::error!("{e:#}; the access log goes on as it was"),
        }
    }

    /// A request is over: it is counted, logged and passed to routing-log readers.
    pub fn closed(&self, record: Record, config: &RouterConfig) {
        let tenant_labels = self.tenant_labels.load(std::sync::atomic::Ordering::Relaxed);
        self.metrics.count(&record, config, tenant_labels);
        if let Some(log) = &*self.access_log.read().unwrap_or_else(std::sync::PoisonError::into_inner)
            && record.sampled(log.sample)
            && let Err(TrySendError::Full(_)) = log.queue.try_send(record.json_line())
        {
            self.metrics.access_log_dropped.inc();
        }
        let record = Arc::new(record);
        if self.routing_log.receiver_count() > 0 {
            let _ = self.routing_log.send(record.clone());
        }
        let mut recent = crate::lock(&self.recent);
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(record);
    }

    /// The latest records, oldest first.
    pub fn recent(&self) -> Vec<Followed> {
        crate::lock(&self.recent).iter().cloned().collect()
    }

    /// The records `filter` keeps as they close, as JSON lines, for as long
    /// as the body is read. The body holds at most [`LINES_AHEAD`] lines;
    /// while it is full, records go by, and the next line says how many.
    pub fn follow_lines(self: &Arc<Self>, filter: Filter) -> Lines {
        let mut records = self.routing_log.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(LINES_AHEAD);
        let signals = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let line = match records.recv().await {
                    Ok(record) if filter.keeps(&record) => record.json_line(),
                    Ok(_) => continue,
                    // Records went by while the reader was behind: it is told at once.
                    Err(RecvError::Lagged(n)) => {
                        if let Some(s) = signals.upgrade() {
                            s.metrics.routing_log_missed.inc_by(n);
                        }
                        format!("{{\"missed\":{n}}}")
                    }
                    Err(RecvError::Closed) => break,
                };
                // Waits while the reader's lines are all taken; records
                // meanwhile pile up in `records`, and past its bound are missed.
                if tx.send(Bytes::from(line + "\n")).await.is_err() {
                    break;
                }
            }
        });
        Lines(rx)
    }

    /// The request metrics in Prometheus text, followed by `state`'s gauges.
    pub fn encode(&self, state: &State) -> String {
        let mut out = String::with_capacity(16 << 10);
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.metrics.registry);
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &state.registry());
        out
    }
}

/// A routing-log response's body: lines as records close.
pub struct Lines(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for Lines {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|line| line.map(|l| Ok(Frame::data(l))))
    }
}

/// What the router and the cache hold at a scrape: per node, breaker,
/// load and spend (from the status report), and the cache's counters.
pub struct State {
    pub status: serde_json::Value,
}

impl State {
    fn registry(&self) -> Registry {
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
