//! Evaluates the `autoscaling` entries every `monitoring.scaling.interval`
//! and sends their signals: a metric's reading (from the status report, or
//! from the node's own Prometheus endpoint), the decision
//! (`signals::scaling`), then for each signal a line in the service log, a
//! count in `/metrics` and, if one is configured, a webhook `POST` with
//! retries. The router never owns instances: whoever receives the signal
//! scales. See `docs/operations.md`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};

use crate::origins::{OriginClient, ProxyBody};
use crate::proxy::Shared;
use crate::signals::scaling::{Scaler, Signal, Source, entries, observed};

/// The largest metrics page read from a node.
const MAX_METRICS_PAGE: usize = 8 << 20;
/// The longest a node's metrics page may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait between webhook attempts; each next one doubles it.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Starts the evaluation; it runs for as long as `shared` does, and follows
/// reloads (entries that remain keep what they saw).
pub fn start(shared: &Arc<Shared>) -> anyhow::Result<()> {
    let client = crate::origins::client(Duration::from_secs(5))?;
    let weak = Arc::downgrade(shared);
    let seed = shared.request_id();
    tokio::spawn(async move {
        let mut scaler = Scaler::new(Vec::new(), seed);
        let mut generation = None;
        loop {
            let Some(shared) = weak.upgrade() else { break };
            let current = shared.generation();
            if generation != Some(current.number) {
                generation = Some(current.number);
                let (usable, skipped) = entries(&current.config);
                for why in skipped {
                    tracing::warn!("{why}");
                }
                let scaling = &current.config.monitoring.scaling;
                if let Some(var) = scaling.webhook_token_env.as_ref().filter(|v| std::env::var(v).is_err()) {
                    tracing::warn!(
                        "monitoring.scaling.webhook_token_env: {var} is not set; webhooks go without a token"
                    );
                }
                scaler.replace(usable);
            }
            let interval = current.config.monitoring.scaling.interval.0;
            if !scaler.entries.is_empty() {
                evaluate(&shared, &client, &mut scaler).await;
            }
            drop((shared, current));
            tokio::time::sleep(interval).await;
        }
    });
    Ok(())
}

/// One evaluation: every entry's metric read, compared, and its signals sent.
async fn evaluate(shared: &Arc<Shared>, client: &OriginClient, scaler: &mut Scaler) {
    let (_, _, body) = shared.status();
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let nodes: HashMap<&str, &serde_json::Value> = status["nodes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    // Each node's page is read once, however many entries read it.
    let mut pages: HashMap<String, Result<String, String>> = HashMap::new();
    for e in &scaler.entries {
        if let Source::Node { url, .. } = &e.source
            && !pages.contains_key(url)
        {
            pages.insert(url.clone(), scrape(client, url).await);
        }
    }
    let now_ms = crate::proxy::now_ms();
    let signals = scaler.step(now_ms, |e| match &e.source {
        Source::Router(metric) => match nodes.get(e.node.as_str()) {
            Some(node) => observed(*metric, node),
            None => Err("the node is not in the status report".into()),
        },
        Source::Node { url, series } => match pages.get(url) {
            Some(Ok(page)) => series.read(page).ok_or_else(|| format!("{url} has no sample of {series}")),
            Some(Err(why)) => Err(why.clone()),
            None => Err("not read".into()),
        },
    });
    *crate::lock(&shared.signals.scaling) = scaler.entries.iter().map(|e| e.report()).collect();
    let config = shared.generation().config.clone();
    for signal in signals {
        tracing::warn!("{}", signal.line());
        let Some(url) = signal.entry.webhook.clone() else { continue };
        let s = &config.monitoring.scaling;
        let token = s.webhook_token_env.as_ref().and_then(|v| std::env::var(v).ok());
        let delivery = Delivery { url, token, timeout: s.webhook_timeout.0, retries: s.webhook_retries };
        let (client, shared) = (client.clone(), Arc::downgrade(shared));
        let body = Bytes::from(signal.json(&config.name).to_string());
        tokio::spawn(async move {
            let delivered = delivery.send(&client, &signal, body).await;
            if let Some(shared) = shared.upgrade() {
                let counter = if delivered { &shared.signals.webhooks_sent } else { &shared.signals.webhooks_failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// A node's metrics page, or why it could not be read.
async fn scrape(client: &OriginClient, url: &str) -> Result<String, String> {
    let request = http::Request::get(url)
        .header(http::header::ACCEPT, "text/plain;version=0.0.4")
        .body(empty())
        .map_err(|e| format!("{url} is not a URL to ask: {e}"))?;
    let read = async {
        let response = client.request(request).await.map_err(|e| format!("{url} did not answer: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_METRICS_PAGE).collect().await;
        let body = body.map_err(|e| format!("{url}: the page could not be read (or passed 8 MiB): {e}"))?;
        String::from_utf8(body.to_bytes().to_vec()).map_err(|_| format!("{url}: the page is not UTF-8"))
    };
    tokio::time::timeout(SCRAPE_TIMEOUT, read).await.unwrap_or_else(|_| Err(format!("{url} took over 10 s")))
}

fn empty() -> ProxyBody {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed()
}

/// Where and how a signal is posted.
struct Delivery {
    url: String,
    token: Option<String>,
    timeout: Duration,
    retries: u32,
}

impl Delivery {
    /// Posts `body`, trying again after no answer, a 429 or a 5xx, up to
    /// `retries` times; whether it was taken. Every attempt carries the
    /// signal's id as `Idempotency-Key`, so a receiver can tell a retry.
    async fn send(&self, client: &OriginClient, signal: &Signal, body: Bytes) -> bool {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            let mut request = http::Request::post(&self.url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::USER_AGENT, concat!("edge-router/", env!("CARGO_PKG_VERSION")))
                .header("idempotency-key", &signal.id);
            if let Some(token) = &self.token {
                request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
            }
            let Ok(request) = request.body(Full::new(body.clone()).map_err(|never| match never {}).boxed()) else {
                tracing::error!("scaling signal {}: the webhook URL {} cannot be asked", signal.id, self.url);
                return false;
            };
            let outcome = tokio::time::timeout(self.timeout, async {
                let response = client.request(request).await?;
                let status = response.status();
                // The answer is read to its end, so the connection can be used again.
                let _ = Limited::new(response.into_body(), 64 << 10).collect().await;
                Ok::<_, hyper_util::client::legacy::Error>(status)
            })
            .await;
            let why = match outcome {
                Ok(Ok(status)) if status.is_success() => return true,
                Ok(Ok(status)) if status.as_u16() != 429 && !status.is_server_error() => {
                    tracing::error!(
                        "scaling signal {}: the webhook {} refused it with {status}; not retried",
                        signal.id,
                        self.url
                    );
                    return false;
                }
                Ok(Ok(status)) => format!("answered {status}"),
                Ok(Err(e)) => format!("failed: {e}"),
                Err(_) => format!("gave no answer within {:?}", self.timeout),
            };
            let next = if attempt < self.retries { format!("; trying again in {backoff:?}") } else { String::new() };
            tracing::warn!("scaling signal {}: the webhook {} {why}{next}", signal.id, self.url);
        }
        tracing::error!(
            "scaling signal {}: the webhook {} did not take it after {} attempts",
            signal.id,
            self.url,
            self.retries + 1
        );
        false
    }
}
