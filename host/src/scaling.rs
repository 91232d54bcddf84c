//! Evaluates the `autoscaling` entries every `monitoring.scaling.interval`
//! and sends their signals: a metric's reading (from the status report, or
//! from the node's own Prometheus endpoint), the decision
//! (`signals::scaling`), then for each signal a line in the service log, a
//! count in `/metrics` and, if one is configured, a webhook `POST` with
//! retries. The router never owns instances: whoever receives the signal
//! scales. See `docs/operations.md`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};

use crate::origins::{OriginClient, ProxyBody};
use crate::proxy::Shared;
use crate::signals::scaling::{Scaler, Signal, Source, entries, observed};

/// The largest metrics page read from a node.
const MAX_METRICS_PAGE: usize = 8 << 20;
/// The longest a node's metrics page may take, at most.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait between webhook attempts; each next one doubles it.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Signals being delivered at once; one more is not sent, and counts as failed.
const MAX_DELIVERIES: usize = 64;

/// Starts the evaluation; it runs until the box shuts down, and follows
/// reloads (entries that remain keep what they saw).
pub fn start(shared: &Arc<Shared>) -> anyhow::Result<()> {
    let client = crate::origins::client(Duration::from_secs(5))?;
    let weak = Arc::downgrade(shared);
    let mut seed = [0u8; 8];
    getrandom::getrandom(&mut seed).map_err(|e| anyhow::anyhow!("no randomness for the signals' ids: {e}"))?;
    let deliveries = Arc::new(tokio::sync::Semaphore::new(MAX_DELIVERIES));
    let epoch = tokio::time::Instant::now();
    tokio::spawn(async move {
        let mut scaler = Scaler::new(u64::from_le_bytes(seed));
        let mut generation = None;
        loop {
            let Some(shared) = weak.upgrade().filter(|s| !s.signals.scaling_stopped.load(Ordering::Relaxed)) else {
                break;
            };
            let now_ms = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
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
                scaler.replace(usable, now_ms);
                *crate::lock(&shared.signals.scaling) = scaler.report();
            }
            let interval = current.config.monitoring.scaling.interval.0;
            drop(shared);
            if !scaler.entries.is_empty() {
                let signals = evaluate(&weak, &client, &mut scaler, now_ms, interval).await;
                send(&weak, &client, &deliveries, &current.config, signals);
            }
            drop(current);
            tokio::time::sleep(interval).await;
        }
    });
    Ok(())
}

/// One evaluation: every entry's metric read and compared; the signals to send.
async fn evaluate(
    shared: &Weak<Shared>,
    client: &OriginClient,
    scaler: &mut Scaler,
    now_ms: u64,
    interval: Duration,
) -> Vec<Signal> {
    let Some(status) = shared.upgrade().map(|s| s.status_report()) else { return Vec::new() };
    let nodes: HashMap<&str, &serde_json::Value> = status["nodes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    // Each node's page is read once however many entries read it, all at
    // once, within the interval (and a second at least).
    let timeout = interval.clamp(Duration::from_secs(1), SCRAPE_TIMEOUT);
    let mut scrapes = tokio::task::JoinSet::new();
    let mut urls: Vec<&String> = Vec::new();
    for e in &scaler.entries {
        if let Source::Node { url, .. } = &e.source
            && !urls.contains(&url)
        {
            urls.push(url);
            let (client, url) = (client.clone(), url.clone());
            scrapes.spawn(async move {
                let page = tokio::time::timeout(timeout, scrape(&client, &url)).await;
                let page = page.unwrap_or_else(|_| Err(format!("{} took over {timeout:?}", shown(&url))));
                (url, page)
            });
        }
    }
    let pages: HashMap<String, Result<String, String>> = scrapes.join_all().await.into_iter().collect();
    let signals = scaler.step(now_ms, crate::proxy::now_ms(), |e| match &e.source {
        Source::Router(metric) => match nodes.get(e.node.as_str()) {
            Some(node) => observed(*metric, node),
            None => Err("the node is not in the status report".into()),
        },
        Source::Node { url, series } => match pages.get(url) {
            Some(Ok(page)) => series.read(page).ok_or_else(|| format!("{} has no sample of {series}", shown(url))),
            Some(Err(why)) => Err(why.clone()),
            None => Err("not read".into()),
        },
    });
    if let Some(shared) = shared.upgrade() {
        *crate::lock(&shared.signals.scaling) = scaler.report();
    }
    signals
}

/// Logs each signal and posts it to its webhook, if it has one.
fn send(
    shared: &Weak<Shared>,
    client: &OriginClient,
    deliveries: &Arc<tokio::sync::Semaphore>,
    config: &edge_router::RouterConfig,
    signals: Vec<Signal>,
) {
    let s = &config.monitoring.scaling;
    for signal in signals {
        tracing::warn!("{}", signal.line());
        let Some(url) = signal.entry.webhook.clone() else { continue };
        let count = |shared: &Weak<Shared>, delivered: bool| {
            if let Some(shared) = shared.upgrade() {
                let signals = &shared.signals;
                let counter = if delivered { &signals.webhooks_sent } else { &signals.webhooks_failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        };
        let Ok(permit) = deliveries.clone().try_acquire_owned() else {
            tracing::error!(
                "scaling signal {}: not posted to {}: {MAX_DELIVERIES} signals are being delivered already",
                signal.id,
                shown(&url)
            );
            count(shared, false);
            continue;
        };
        let token = s.webhook_token_env.as_ref().and_then(|v| std::env::var(v).ok());
        let delivery = Delivery { url, token, timeout: s.webhook_timeout.0, retries: s.webhook_retries };
        let (client, shared) = (client.clone(), shared.clone());
        let body = Bytes::from(signal.json(&config.name).to_string());
        tokio::spawn(async move {
            let delivered = delivery.send(&client, &signal, body).await;
            count(&shared, delivered);
            drop(permit);
        });
    }
}

/// A URL as logs and `status` show it: its scheme and host, not its path,
/// query or credentials, which a webhook's URL may carry as its secret.
fn shown(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => {
            let host = uri.authority().map(|a| a.as_str().rsplit('@').next().unwrap_or_default()).unwrap_or_default();
            let more = if uri.path_and_query().is_some_and(|p| p.as_str() != "/") { "/…" } else { "" };
            format!("{}://{host}{more}", uri.scheme_str().unwrap_or("http"))
        }
        Err(_) => "(a URL)".into(),
    }
}

/// A node's metrics page, or why it could not be read.
async fn scrape(client: &OriginClient, url: &str) -> Result<String, String> {
    let at = shown(url);
    let request = http::Request::get(url)
        .header(http::header::ACCEPT, "text/plain;version=0.0.4")
        .body(empty())
        .map_err(|e| format!("{at} is not a URL to ask: {e}"))?;
    let response = client.request(request).await.map_err(|e| format!("{at} did not answer: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{at} answered {}", response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_METRICS_PAGE).collect().await;
    let body = body.map_err(|e| format!("{at}: the page could not be read (or passed 8 MiB): {e}"))?;
    String::from_utf8(body.to_bytes().into()).map_err(|_| format!("{at}: the page is not UTF-8"))
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
                tracing::error!(
                    "scaling signal {}: no request can be made for the webhook {}",
                    signal.id,
                    shown(&self.url)
                );
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
                        shown(&self.url)
                    );
                    return false;
                }
                Ok(Ok(status)) => format!("answered {status}"),
                Ok(Err(e)) => format!("failed: {e}"),
                Err(_) => format!("gave no answer within {:?}", self.timeout),
            };
            let next = if attempt < self.retries { format!("; trying again in {backoff:?}") } else { String::new() };
            tracing::warn!("scaling signal {}: the webhook {} {why}{next}", signal.id, shown(&self.url));
        }
        tracing::error!(
            "scaling signal {}: the webhook {} did not take it after {} attempts",
            signal.id,
            shown(&self.url),
            self.retries + 1
        );
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_are_shown_without_what_may_be_secret() {
        assert_eq!(super::shown("https://hooks.example.com/services/T0/B0/s3cret"), "https://hooks.example.com/…");
        assert_eq!(super::shown("http://user:pw@10.0.0.5:9100/metrics?x=1"), "http://10.0.0.5:9100/…");
        assert_eq!(super::shown("http://10.0.0.5:9100"), "http://10.0.0.5:9100");
    }
}
