//! What the edge box tells operators about each request: the Prometheus
//! metrics (`GET /metrics` on the admin listener), the JSON access log, and
//! the live routing log (`edge-router routing-log --follow`). Each request's
//! [`Record`] is made by the exchange (`exchange::record`), the same as the
//! Worker's; this counts it, writes it and passes it on.
//!
//! Nothing here can slow the proxy: the access log is written by a thread
//! of its own from a bounded buffer (a line that does not fit is dropped
//! and counted), and routing-log readers get records through a bounded
//! broadcast channel (a reader that falls behind misses records and is told
//! how many). See `docs/operations.md`.
//!
//! - [`metrics`]: the Prometheus metrics, and the state gauges of a scrape.
//! - [`access_log`]: the access log's buffer and writer.

mod access_log;
mod metrics;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use edge_router::RouterConfig;
use edge_router::config::AccessLogTarget;
use exchange::record::Record;
use http_body::{Body, Frame};
use tokio::sync::broadcast::error::RecvError;

use access_log::AccessLog;
use metrics::Metrics;
pub use metrics::State;

/// Records a routing-log reader may fall behind by before it misses some.
pub const ROUTING_LOG_QUEUE: usize = 1024;
/// Lines a routing-log response holds for its reader.
pub const LINES_AHEAD: usize = 16;

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
            && !log.write(&record)
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

    /// Writes out the access log's buffered lines (at shutdown).
    pub fn flush(&self) {
        if let Some(log) = &*self.access_log.read().unwrap_or_else(std::sync::PoisonError::into_inner) {
            log.flush();
        }
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
