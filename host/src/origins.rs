//! Connections to origins: pooled clients per node and worker thread, and
//! origin credentials.
//!
//! A client per node lets each node have its own connect timeout while
//! keeping connections alive between requests. Each worker thread has its
//! own clients: a pooled connection's task then runs on the thread whose
//! requests use it, with no wake-ups across threads. Origin API keys are read from
//! the environment once at start-up, marked sensitive so they never appear in
//! debug output, and are never passed to the router module.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use edge_router::RouterConfig;
use http::HeaderValue;
use http_body_util::combinators::BoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Error type of bodies passed through the proxy.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A body in either direction.
pub type ProxyBody = BoxBody<Bytes, BoxError>;
/// A pooled HTTP/HTTPS client.
pub type OriginClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// Clients and credentials for every node.
pub struct Origins {
    /// Per worker thread: node id → client.
    clients: Vec<HashMap<String, OriginClient>>,
    /// Node id → client for active health probes, which run off the workers.
    probes: HashMap<String, OriginClient>,
    credentials: HashMap<String, HeaderValue>,
}

impl Origins {
    /// Builds a client per node for each of `workers` threads and reads the
    /// credentials the config names.
    pub fn new(config: &RouterConfig, workers: usize) -> anyhow::Result<Self> {
        let per_node = || -> anyhow::Result<HashMap<String, OriginClient>> {
            config.nodes.iter().map(|n| Ok((n.id.clone(), client(n.timeouts.connect.0)?))).collect()
        };
        let clients = (0..workers.max(1)).map(|_| per_node()).collect::<anyhow::Result<_>>()?;
        let probes = per_node()?;
        let mut credentials = HashMap::new();
        for node in &config.nodes {
            if let Some(var) = &node.api_key_env {
                match std::env::var(var) {
                    Ok(key) if !key.is_empty() => {
                        let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                            anyhow::anyhow!(
                                "the environment variable {var} (node {}) holds characters not allowed in a header",
                                node.id
                            )
                        })?;
                        value.set_sensitive(true);
                        credentials.insert(var.clone(), value);
                    }
                    _ => {
                        tracing::warn!(node = %node.id, "the environment variable {var} is not set; requests to this node carry no origin key")
                    }
                }
            }
        }
        Ok(Self { clients, probes, credentials })
    }

    /// How many worker threads have clients.
    pub fn workers(&self) -> usize {
        self.clients.len()
    }

    /// The client for `node` on worker thread `worker`.
    pub fn client(&self, worker: usize, node: &str) -> Option<&OriginClient> {
        self.clients.get(worker)?.get(node)
    }

    /// The client for active health probes of `node`.
    pub fn probe_client(&self, node: &str) -> Option<&OriginClient> {
        self.probes.get(node)
    }

    /// Sets `Authorization` to the origin key named `credential`, if it is set.
    pub fn authorize(&self, headers: &mut http::HeaderMap, credential: Option<&str>) {
        if let Some(value) = credential.and_then(|c| self.credentials.get(c)) {
            headers.insert(http::header::AUTHORIZATION, value.clone());
        }
    }
}

fn client(connect_timeout: Duration) -> anyhow::Result<OriginClient> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(https))
}
