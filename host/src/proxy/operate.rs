//! What operators and timers ask of a running edge box: the status report,
//! weights and drains (with the cut-off of a drain that runs out of time),
//! cache purges, module reloads, and active health probes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use edge_router::wire::{Action, Control, Event, Header};
use http::Request;
use http_body_util::{BodyExt, Limited};
use origin_fallback::counts_as_failure;
use tokio_util::sync::CancellationToken;

use super::call::{answer, internal_error};
use super::route::full;
use super::{Shared, now_ms};
use crate::lock;

impl Shared {
    /// The status report as JSON (`GET /admin/status`), with the cache store's counters.
    pub fn status(&self) -> (u16, Vec<Header>, Bytes) {
        let (status, headers, body) = answer(self.event(&Event::Status { now_ms: now_ms() }));
        let Ok(mut report) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return (status, headers, body);
        };
        let s = self.cache.stats();
        report["cache_store"] = serde_json::json!({
            "hits": s.hits, "misses": s.misses, "evictions": s.evictions,
            "entries": s.entries, "bytes": s.bytes, "capacity": s.capacity,
        });
        (status, headers, Bytes::from(serde_json::to_vec_pretty(&report).unwrap_or_default()))
    }

    /// The Prometheus text of `GET /metrics`: the request metrics, then
    /// each node's state and the cache's counters as the status report has them.
    pub fn metrics(&self) -> String {
        let (_, _, body) = self.status();
        let status = serde_json::from_slice(&body).unwrap_or_default();
        self.signals.encode(&crate::signals::State { status })
    }

    /// Drops cached entries whose key starts with `prefix`, or that `node`
    /// answered, or all of them; how many went.
    pub fn purge(&self, prefix: Option<&str>, node: Option<&str>) -> usize {
        self.cache.purge(&|key, cached| {
            prefix.is_none_or(|p| key.starts_with(p)) && node.is_none_or(|n| cached.entry.node == n)
        })
    }

    /// Carries out an operator's change. A drain with a `cut_off` ends the
    /// node's remaining responses when that time has passed, unless the
    /// node was undrained or drained again in the meantime.
    pub fn control(self: &Arc<Self>, command: Control, cut_off: Option<Duration>) -> (u16, Vec<Header>, Bytes) {
        let (node, drains) = match &command {
            Control::SetWeight { node, .. } => (node.clone(), None),
            Control::Drain { node } => (node.clone(), Some(true)),
            Control::Undrain { node } => (node.clone(), Some(false)),
        };
        let index = self.config.node_index(&node);
        // The generation moves under the router lock, so concurrent drains
        // and undrains take effect in the order the module saw them.
        let mut router = self.lock();
        let action = router.control(command, now_ms()).unwrap_or_else(|e| {
            tracing::error!("router module call failed: {e:#}");
            internal_error(0)
        });
        let (Some(i), Some(drain), Action::Respond { status: 200, .. }) = (index, drains, &action) else {
            return answer(action);
        };
        let generation = self.drain_generation[i].fetch_add(1, Ordering::SeqCst) + 1;
        // A new drain or an undrain starts from a token not yet cancelled.
        let mut token = lock(&self.cut_offs[i]);
        if token.is_cancelled() {
            *token = CancellationToken::new();
        }
        drop((token, router));
        if let Some(after) = cut_off.filter(|_| drain) {
            let shared = Arc::downgrade(self);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let Some(shared) = shared.upgrade() else { return };
                let _router = shared.lock();
                if shared.drain_generation[i].load(Ordering::SeqCst) == generation {
                    tracing::warn!(node = %node, "drain time is up: cutting off the node's remaining responses");
                    // It stays cancelled until an undrain or a new drain, so a
                    // response whose head comes later is cut off at once too.
                    lock(&shared.cut_offs[i]).cancel();
                }
            });
        }
        answer(action)
    }

    /// Swaps in the module `module` (a new build), keeping spending,
    /// weights and drains.
    pub fn reload(&self, module: &crate::RouterModule) -> anyhow::Result<()> {
        self.lock().reload(module)
    }

    /// The file the running module was read from.
    pub fn module_path(&self) -> Option<std::path::PathBuf> {
        self.lock().module_path()
    }

    /// The token a drain of node `node` (its index) cancels when its time runs out.
    pub(super) fn cut_off(&self, node: u32) -> Option<CancellationToken> {
        Some(lock(self.cut_offs.get(node as usize)?).clone())
    }

    /// Probes node `index` once (GET its `health_path` within
    /// `health_check.timeout`) and tells the router what it found.
    pub async fn probe(&self, index: usize) {
        let Some(node) = self.config.nodes.get(index) else { return };
        let ok = match self.probe_once(node).await {
            Ok(()) => true,
            Err(why) => {
                tracing::debug!(node = %node.id, "health probe failed: {why}");
                false
            }
        };
        self.event(&Event::Probed { node: node.id.clone(), ok, now_ms: now_ms() });
    }

    async fn probe_once(&self, node: &edge_router::config::Node) -> Result<(), String> {
        let client = self.origins.probe_client(&node.id).ok_or("no client")?;
        let url = node.url_for(&node.health_path);
        let mut req = Request::get(&url).body(full(Bytes::new())).map_err(|e| e.to_string())?;
        self.origins.authorize(req.headers_mut(), &node.id);
        let exchange = async {
            let resp = client.request(req).await.map_err(|e| format!("{e}"))?;
            let status = resp.status().as_u16();
            // Read (a bounded amount of) the body so the connection can be reused.
            let _ = Limited::new(resp.into_body(), 1 << 20).collect().await;
            if counts_as_failure(status) { Err(format!("it answered {status}")) } else { Ok(()) }
        };
        match tokio::time::timeout(self.config.health_check.timeout.0, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {}", self.config.health_check.timeout)),
        }
    }
}
