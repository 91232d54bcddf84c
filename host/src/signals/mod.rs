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
//! - [`metrics`]: the request metrics, counted per thread and summed at a scrape.
//! - [`state`]: the nodes' and the cache's state, read at a scrape.
//! - [`access_log`]: the access log's buffers and writer.
//! - [`per_thread`]: a value per thread, all reachable from any thread.

mod access_log;
mod metrics;
mod per_thread;
pub mod scaling;
mod state;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use edge_router::RouterConfig;
use edge_router::config::AccessLogTarget;
use exchange::record::Record;
use http_body::{Body, Frame};
use tokio::sync::broadcast::error::RecvError;

use access_log::AccessLog;
use metrics::Metrics;
use per_thread::PerThread;

use crate::lock;
pub use state::State;

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
    access_log: RwLock<Option<Arc<AccessLog>>>,
    /// Counts the access logs opened: a thread's copy of an older one is stale.
    access_log_opened: AtomicU64,
    /// What the access log was opened for: its target and share.
    access_log_config: Mutex<(AccessLogTarget, f64)>,
    /// Whether there is an access log.
    access_log_config_on: AtomicBool,
    tenant_labels: AtomicBool,
    /// `monitoring.request_metrics`.
    counting: AtomicBool,
    routing_log: tokio::sync::broadcast::Sender<Followed>,
    /// Routing-log readers: records are only shared when there are some.
    followers: AtomicUsize,
    /// What each thread keeps: its copy of the access log, and its latest records.
    mine: PerThread<Mine>,
    /// Each `autoscaling` entry as its last evaluation left it (`status`).
    pub(crate) scaling: Mutex<Vec<serde_json::Value>>,
    /// Scaling signals posted to a webhook, and those it did not take.
    pub(crate) webhooks_sent: AtomicU64,
    pub(crate) webhooks_failed: AtomicU64,
    /// Set at shutdown: a box that is leaving gives no more scaling signals.
    pub(crate) scaling_stopped: AtomicBool,
    /// The audit trail (`admin.audit_log`), opened at start.
    pub(crate) audit: Option<Arc<crate::audit::Audit>>,
}

/// What a thread keeps for itself (only it writes, so no lock is contended).
#[derive(Default)]
struct Mine {
    /// The access log of `access_log_opened`'s count, as this thread saw it last.
    log: Mutex<(u64, Option<Arc<AccessLog>>)>,
    /// This thread's latest records, newest last.
    recent: Mutex<VecDeque<Record>>,
}

impl Signals {
    /// The signals `config.monitoring` asks for; the access log file is opened now.
    pub fn new(config: &RouterConfig) -> anyhow::Result<Self> {
        let m = &config.monitoring;
        Ok(Self {
            metrics: Metrics::new(),
            access_log: RwLock::new(AccessLog::open(&m.access_log, m.access_log_sample)?.map(Arc::new)),
            access_log_opened: AtomicU64::new(1),
            access_log_config: Mutex::new((m.access_log.clone(), m.access_log_sample)),
            access_log_config_on: AtomicBool::new(m.access_log != AccessLogTarget::Off),
            tenant_labels: AtomicBool::new(m.tenant_labels),
            counting: AtomicBool::new(m.request_metrics),
            routing_log: tokio::sync::broadcast::Sender::new(ROUTING_LOG_QUEUE),
            followers: AtomicUsize::new(0),
            mine: PerThread::new(),
            scaling: Mutex::new(Vec::new()),
            webhooks_sent: AtomicU64::new(0),
            webhooks_failed: AtomicU64::new(0),
            scaling_stopped: AtomicBool::new(false),
            audit: config.admin.audit_log.as_deref().map(crate::audit::Audit::open).transpose()?.map(Arc::new),
        })
    }

    /// A reloaded config's `monitoring`: the access log is opened afresh if
    /// its target or share changed (a file that cannot be opened leaves the
    /// log as it was, and says so).
    pub fn reconfigure(&self, config: &RouterConfig) {
        let m = &config.monitoring;
        self.tenant_labels.store(m.tenant_labels, Ordering::Relaxed);
        self.counting.store(m.request_metrics, Ordering::Relaxed);
        let mut opened = crate::lock(&self.access_log_config);
        if *opened == (m.access_log.clone(), m.access_log_sample) {
            return;
        }
        match AccessLog::open(&m.access_log, m.access_log_sample) {
            Ok(log) => {
                *self.access_log.write().unwrap_or_else(PoisonError::into_inner) = log.map(Arc::new);
                self.access_log_opened.fetch_add(1, Ordering::AcqRel);
                self.access_log_config_on.store(m.access_log != AccessLogTarget::Off, Ordering::Relaxed);
                *opened = (m.access_log.clone(), m.access_log_sample);
            }
            Err(e) => tracing::error!("{e:#}; the access log goes on as it was"),
        }
    }

    /// Whether a request should make a record: something counts, writes or
    /// follows it.
    pub fn wanted(&self) -> bool {
        self.counting.load(Ordering::Relaxed)
            || self.access_log_config_on.load(Ordering::Relaxed)
            || self.followers.load(Ordering::Relaxed) > 0
            || self.audit.is_some()
    }

    /// Appends `event` to the audit trail, if there is one.
    pub fn audit(&self, event: serde_json::Value) {
        if let Some(audit) = &self.audit {
            audit.write(event);
        }
    }

    /// A request is over: it is counted, logged and passed to routing-log readers.
    pub fn closed(&self, record: Record, config: &RouterConfig) {
        if let Some(audit) = &self.audit {
            audit.request(&record);
        }
        if self.counting.load(Ordering::Relaxed) {
            self.metrics.count(&record, config, self.tenant_labels.load(Ordering::Relaxed));
        }
        if self.followers.load(Ordering::Relaxed) > 0 {
            let _ = self.routing_log.send(Arc::new(record.clone()));
        }
        let opened = self.access_log_opened.load(Ordering::Acquire);
        self.mine.with(|mine| {
            let mut log = lock(&mine.log);
            if log.0 != opened {
                // A new access log since this thread's last record.
                *log = (opened, self.access_log.read().unwrap_or_else(PoisonError::into_inner).clone());
            }
            if let Some(log) = &log.1
                && record.sampled(log.sample)
                && !log.write(&record)
            {
                self.metrics.access_log_dropped.inc();
            }
            let mut recent = lock(&mine.recent);
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(record);
        });
    }

    /// The latest records of every thread, oldest first.
    pub fn recent(&self) -> Vec<Record> {
        let mut all: Vec<Record> = Vec::new();
        self.mine.each(|mine| all.extend(lock(&mine.recent).iter().cloned()));
        all.sort_by_key(|r| r.start_ms);
        let keep = all.len().saturating_sub(RECENT);
        all.split_off(keep)
    }

    /// The records `filter` keeps as they close, as JSON lines, for as long
    /// as the body is read. The body holds at most [`LINES_AHEAD`] lines;
    /// while it is full, records go by, and the next line says how many.
    pub fn follow_lines(self: &Arc<Self>, filter: Filter) -> Lines {
        let mut records = self.routing_log.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(LINES_AHEAD);
        let signals = Arc::downgrade(self);
        let follower = Follower::new(self);
        tokio::spawn(async move {
            let _follower = follower;
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
        if let Some(log) = &*self.access_log.read().unwrap_or_else(PoisonError::into_inner) {
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

/// A routing-log reader, counted while it reads.
struct Follower(std::sync::Weak<Signals>);

impl Follower {
    fn new(signals: &Arc<Signals>) -> Self {
        signals.followers.fetch_add(1, Ordering::Relaxed);
        Self(Arc::downgrade(signals))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Some(signals) = self.0.upgrade() {
            signals.followers.fetch_sub(1, Ordering::Relaxed);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use edge_router::facts::Endpoint;
    use exchange::record::{Begun, Outcome};

    fn config(monitoring: &str) -> RouterConfig {
        let text = format!("nodes:\n  - {{id: a, type: local, host: \"http://a\"}}\nmonitoring: {monitoring}\n");
        RouterConfig::load("t.yaml", &text).expect("a valid config")
    }

    fn record(id: u64, config: &RouterConfig) -> Record {
        let mut begun = Begun::new(id, 1_000, &http::Method::POST, "/v1/chat/completions");
        begun.read(config, Endpoint::ChatCompletions, None, None, None);
        let mut head = http::HeaderMap::new();
        head.insert("x-edge-node", http::HeaderValue::from_static("a"));
        let mut r = Record::at_head(begun, http::StatusCode::OK, &head, &http::Extensions::new(), 1_010);
        r.close(Outcome::Complete, None, config, 1_020);
        r
    }

    fn requests_counted(text: &str) -> u64 {
        text.lines()
            .filter(|l| l.starts_with("edge_router_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    #[test]
    fn requests_are_counted_on_every_thread_and_summed_at_a_scrape() {
        let config = config("{access_log: \"off\"}");
        let signals = Arc::new(Signals::new(&config).expect("signals"));
        assert!(signals.wanted());
        std::thread::scope(|s| {
            for t in 0..3u64 {
                let (signals, config) = (&signals, &config);
                s.spawn(move || (0..100).for_each(|i| signals.closed(record(t * 1000 + i, config), config)));
            }
        });
        let text = signals.encode(&State { status: serde_json::Value::Null });
        assert_eq!(requests_counted(&text), 300, "{text}");
        assert_eq!(signals.recent().len(), RECENT, "the latest, of all threads");
    }

    #[test]
    fn with_the_metrics_and_the_log_off_requests_make_no_record() {
        let config = config("{access_log: \"off\", request_metrics: false}");
        let signals = Signals::new(&config).expect("signals");
        assert!(!signals.wanted(), "nothing counts, writes or follows records");
        signals.closed(record(1, &config), &config);
        let text = signals.encode(&State { status: serde_json::Value::Null });
        assert_eq!(requests_counted(&text), 0, "{text}");
    }

    #[test]
    fn the_access_log_writes_the_sampled_share_of_requests() {
        let dir = std::env::temp_dir().join(format!("edge-router-signals-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("sampled.log");
        let _ = std::fs::remove_file(&path);
        let config = config(&format!("{{access_log: \"{}\", access_log_sample: 0.25}}", path.display()));
        let signals = Signals::new(&config).expect("signals");
        // Ids as the edge box makes them: mixed, so their bits are uniform.
        let ids: Vec<u64> = (1..=4000u64).map(origin_fallback::mix64).collect();
        for &id in &ids {
            signals.closed(record(id, &config), &config);
        }
        signals.flush();
        let written = std::fs::read_to_string(&path).unwrap_or_default().lines().count();
        let _ = std::fs::remove_dir_all(&dir);
        let expected = ids.iter().filter(|&&id| exchange::record::sampled(id, 0.25)).count();
        assert_eq!(written, expected, "every sampled request, and only those");
        assert!((800..1200).contains(&written), "about a quarter of 4000: {written}");
    }
}
