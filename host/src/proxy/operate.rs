//! What operators and timers ask of a running edge box: the status report,
//! weights and drains (with the cut-off of a drain that runs out of time),
//! cache purges, module reloads, and active health probes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use edge_router::RouterConfig;
use edge_router::wire::{Action, Control, Event, Header};
use http::Request;
use http_body_util::{BodyExt, Limited};
use origin_fallback::counts_as_failure;
use tokio_util::sync::CancellationToken;

use super::call::{answer, internal_error};
use super::route::full;
use super::{ConfigSource, Files, Generation, Shared, now_ms};
use crate::lock;

impl Shared {
    /// The status report as JSON (`GET /admin/status`), with the cache store's counters.
    pub fn status(&self) -> (u16, Vec<Header>, Bytes) {
        let (status, headers, report) = self.status_answer();
        let body = match report {
            Ok(report) => Bytes::from(serde_json::to_vec_pretty(&report).unwrap_or_default()),
            Err(body) => body,
        };
        (status, headers, body)
    }

    /// The status report as a value, for a scrape and the scaling task
    /// (`Null` if the module gave none).
    pub fn status_report(&self) -> serde_json::Value {
        self.status_answer().2.unwrap_or_default()
    }

    /// The module's answer to `Status`, its report with what the host adds
    /// (or the body it gave instead).
    fn status_answer(&self) -> (u16, Vec<Header>, Result<serde_json::Value, Bytes>) {
        let (status, headers, body) = answer(self.event(&Event::Status { now_ms: now_ms() }));
        let Ok(mut report) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return (status, headers, Err(body));
        };
        report["config"] = crate::admin::config_source(&self.generation());
        let s = self.cache.stats();
        report["cache_store"] = serde_json::json!({
            "hits": s.hits, "misses": s.misses, "evictions": s.evictions,
            "entries": s.entries, "bytes": s.bytes, "capacity": s.capacity,
        });
        let signals = &self.signals;
        report["scaling"] = serde_json::Value::Array(lock(&signals.scaling).clone());
        report["scaling_webhooks"] = serde_json::json!({
            "sent": signals.webhooks_sent.load(Ordering::Relaxed),
            "failed": signals.webhooks_failed.load(Ordering::Relaxed),
        });
        if let Some(fleet) = &self.fleet {
            report["fleet"] = fleet.status();
        }
        (status, headers, Ok(report))
    }

    /// The Prometheus text of `GET /metrics`: the request metrics, then
    /// each node's state and the cache's counters as the status report has them.
    pub fn metrics(&self) -> String {
        let status = self.status_report();
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
        // The count of drains moves under the router lock, so concurrent
        // drains and undrains take effect in the order the module saw them;
        // and the config cannot change meanwhile.
        let mut router = self.lock();
        let generation = self.generation();
        let control = generation.config.node_index(&node).map(|i| generation.controls[i].clone());
        let action = router.control(command, now_ms()).unwrap_or_else(|e| {
            tracing::error!("router module call failed: {e:#}");
            internal_error(0)
        });
        let (Some(control), Some(drain), Action::Respond { status: 200, .. }) = (control, drains, &action) else {
            return answer(action);
        };
        let count = control.drains.fetch_add(1, Ordering::SeqCst) + 1;
        // A new drain or an undrain starts from a token not yet cancelled.
        let mut token = lock(&control.cut_off);
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
                if control.drains.load(Ordering::SeqCst) == count {
                    tracing::warn!(node = %node, "drain time is up: cutting off the node's remaining responses");
                    // It stays cancelled until an undrain or a new drain, so a
                    // response whose head comes later is cut off at once too.
                    lock(&control.cut_off).cancel();
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

    /// Reads the config file afresh and puts it in force, with what the
    /// router knows of the nodes that remain (see `docs/operations.md`).
    /// Requests and streams in flight finish under the config they started
    /// with. A config that does not load is refused with its file, line and
    /// column, and the running one stays. Settings that only a restart can
    /// change are named in the answer.
    pub fn reload_config(self: &Arc<Self>) -> Result<Reloaded, ReloadError> {
        let result = self.reload_config_now();
        let event = match &result {
            Ok(r) => serde_json::json!({
                "kind": "reload", "what": "config", "result": if r.changed { "reloaded" } else { "unchanged" },
                "file": r.generation.source.name, "sha256": r.generation.source.sha256, "generation": r.generation.number,
            }),
            Err(ReloadError::NoFile) => serde_json::json!({"kind": "reload", "what": "config", "result": "no file"}),
            Err(ReloadError::Refused(why)) => {
                serde_json::json!({"kind": "reload", "what": "config", "result": "refused", "error": why})
            }
        };
        self.signals.audit(event);
        result
    }

    fn reload_config_now(self: &Arc<Self>) -> Result<Reloaded, ReloadError> {
        // One reload at a time: each starts from the generation the last one made.
        let _one = lock(&self.reloading);
        let running = self.generation();
        let Some(path) = running.source.path.clone() else {
            return Err(ReloadError::NoFile);
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ReloadError::Refused(format!("cannot read {}: {e}", path.display())))?;
        let name = running.source.name.clone();
        if ConfigSource::new(None, &name, &text).sha256 == running.source.sha256 {
            // The certificates and the IP database are read again all the
            // same: a renewed one changes its files, not the config.
            self.set_files(load_files(&running.config)?);
            return Ok(Reloaded { generation: running, changed: false, restart_needed: Vec::new() });
        }
        let config = RouterConfig::load(&name, &text).map_err(|e| ReloadError::Refused(e.to_string()))?;
        for w in &config.warnings {
            tracing::warn!("config: {}", w.in_file(&name));
        }
        let files = load_files(&config)?;
        let restart_needed = restart_needed(&running.config, &config);
        // The pools and credentials are made before the switch; the switch
        // itself is the module's config and the host's changing together,
        // under the module's lock.
        let source = ConfigSource::new(Some(path), &name, &text);
        let mut next = Generation::new(0, config, self.workers, source, Some(&running))
            .map_err(|e| ReloadError::Refused(format!("{e:#}")))?;
        let mut router = self.lock();
        router.reconfigure(&name, &text, &next.config).map_err(|e| ReloadError::Refused(format!("{e:#}")))?;
        next.number = router.generation();
        let next = Arc::new(next);
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = next.clone();
        drop(router);
        self.set_files(files);
        self.signals.reconfigure(&next.config);
        for node in next.config.nodes.iter().filter(|n| running.config.node_index(&n.id).is_none()) {
            self.watch_health(&node.id);
        }
        Ok(Reloaded { generation: next, changed: true, restart_needed })
    }

    /// Probes node `id` every `health_check.interval` (of the config in
    /// force), the first time one interval from now, for as long as the
    /// node is in the config and the box runs.
    pub fn watch_health(self: &Arc<Self>, id: &str) {
        // One watch a node: a node dropped and added again by two quick
        // reloads may still have the first.
        if !lock(&self.watched).insert(id.to_string()) {
            return;
        }
        let (shared, id) = (Arc::downgrade(self), id.to_string());
        tokio::spawn(async move {
            while let Some(interval) = shared.upgrade().map(|s| s.generation().config.health_check.interval.0) {
                tokio::time::sleep(interval).await;
                let Some(shared) = shared.upgrade() else { break };
                let generation = shared.generation();
                let Some(node) = generation.config.node_index(&id).map(|i| &generation.config.nodes[i]) else {
                    // Gone from the config: the watch ends, unless a reload
                    // brought the node back meanwhile (the set is changed
                    // under the same lock a new watch checks).
                    let mut watched = lock(&shared.watched);
                    if shared.generation().config.node_index(&id).is_some() {
                        continue;
                    }
                    watched.remove(&id);
                    break;
                };
                shared.probe(&generation, node).await;
            }
        });
    }

    /// Probes `node` once (GET its `health_path` within
    /// `health_check.timeout`) and tells the router what it found.
    async fn probe(&self, generation: &Generation, node: &edge_router::config::Node) {
        let ok = match Self::probe_once(generation, node).await {
            Ok(()) => true,
            Err(why) => {
                tracing::debug!(node = %node.id, "health probe failed: {why}");
                false
            }
        };
        self.event(&Event::Probed { node: node.id.clone(), ok, now_ms: now_ms() });
    }

    async fn probe_once(generation: &Generation, node: &edge_router::config::Node) -> Result<(), String> {
        let client = generation.origins.probe_client(&node.id).ok_or("no client")?;
        let url = node.url_for(&node.health_path);
        let mut req = Request::get(&url).body(full(Bytes::new())).map_err(|e| e.to_string())?;
        generation.origins.authorize(req.headers_mut(), &node.id);
        let exchange = async {
            let resp = client.request(req).await.map_err(|e| format!("{e}"))?;
            let status = resp.status().as_u16();
            // Read (a bounded amount of) the body so the connection can be reused.
            let _ = Limited::new(resp.into_body(), 1 << 20).collect().await;
            if counts_as_failure(status) { Err(format!("it answered {status}")) } else { Ok(()) }
        };
        match tokio::time::timeout(generation.config.health_check.timeout.0, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {}", generation.config.health_check.timeout)),
        }
    }
}

/// A config reload that went through.
pub struct Reloaded {
    /// The generation in force after it.
    pub generation: Arc<Generation>,
    /// Whether the file had changed (an unchanged file changes nothing).
    pub changed: bool,
    /// Settings that changed but only take effect at a restart.
    pub restart_needed: Vec<&'static str>,
}

/// Why a config reload did not happen.
#[derive(Debug)]
pub enum ReloadError {
    /// The config was given as text, not read from a file.
    NoFile,
    /// The new config does not load; the running one stays. Says why.
    Refused(String),
}

/// The settings that differ between `old` and `new` and are read only at
/// start: the listeners, the worker threads, the cache's size.
fn restart_needed(old: &RouterConfig, new: &RouterConfig) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.listen != new.listen {
        out.push("server.listen");
    }
    if old.server.workers != new.server.workers {
        out.push("server.workers");
    }
    if old.admin_listen != new.admin_listen {
        out.push("admin.listen");
    }
    if old.admin.token_env != new.admin.token_env {
        out.push("admin.token_env");
    }
    if old.cache.memory.0 != new.cache.memory.0 {
        out.push("cache.memory");
    }
    if old.admin.audit_log != new.admin.audit_log {
        out.push("admin.audit_log");
    }
    let store = |c: &RouterConfig| (c.state.redis.clone(), c.state.password_env.clone(), c.state.key_prefix.clone());
    if store(old) != store(new) || old.state.timeout != new.state.timeout {
        out.push("state");
    }
    out
}

/// The files a config names, read and checked; a reload that cannot read
/// them is refused, and the running ones stay.
fn load_files(config: &RouterConfig) -> Result<Files, ReloadError> {
    Files::load(config).map_err(|e| ReloadError::Refused(format!("{e:#}")))
}
