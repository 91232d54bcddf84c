//! Connections to origins: keep-alive connections per node and worker
//! thread, and origin credentials.
//!
//! Each worker thread has its own pool per node: a connection's task then
//! runs on the thread whose requests use it, with no wake-ups across
//! threads, and a node's own connect timeout applies to it. A connection is
//! lent out for one exchange and comes back when its response body has been
//! read to the end; one broken off is closed. Origin API keys are read from
//! the environment once at start-up, marked sensitive so they never appear
//! in debug output, and are never passed to the router module.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use edge_router::RouterConfig;
use edge_router::wire::Failure;
use exchange::provider::bedrock::AwsCredentials;
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use origin_fallback::RetryType;
use tokio::time::Instant;
use tower_service::Service;

use crate::lock;

/// Error type of bodies passed through the proxy.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A body in either direction.
pub type ProxyBody = BoxBody<Bytes, BoxError>;
/// A pooled HTTP/HTTPS client (active health probes, off the request path).
pub type OriginClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// How long an unused connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a connection whose response ended may take to be free for the
/// next request (it may still be sending a streamed request body the
/// origin did not wait for) before it is closed instead of pooled.
const FREE_WITHIN: Duration = Duration::from_secs(5);
/// Unused connections kept per node and worker thread.
const MAX_IDLE: usize = 1024;

/// Clients and credentials for every node.
pub struct Origins {
    /// Per worker thread: each node's connections, in the config's order.
    pools: Vec<Vec<Arc<Pool>>>,
    /// Node id → client for active health probes, which run off the workers.
    probes: HashMap<String, OriginClient>,
    /// Node id → the header carrying its key, in its API's way.
    credentials: HashMap<String, Credential>,
    /// Node id → the AWS credentials a Bedrock node's requests are signed with.
    aws: HashMap<String, AwsCredentials>,
}

/// A header that carries a node's key.
type Credential = (http::HeaderName, HeaderValue);

impl Origins {
    /// Makes a connection pool per node for each of `workers` threads, and a
    /// client per node for health probes, and reads the credentials the
    /// config names.
    pub fn new(config: &RouterConfig, workers: usize) -> anyhow::Result<Self> {
        let probes = config
            .nodes
            .iter()
            .map(|n| Ok((n.id.clone(), client(n.timeouts.connect.0)?)))
            .collect::<anyhow::Result<_>>()?;
        let mut credentials = HashMap::new();
        for node in &config.nodes {
            if let Some(var) = &node.api_key_env {
                match std::env::var(var) {
                    Ok(key) if !key.is_empty() => {
                        let value = exchange::provider::credential(node.api, &key).ok_or_else(|| {
                            anyhow::anyhow!(
                                "the environment variable {var} (node {}) holds characters not allowed in a header",
                                node.id
                            )
                        })?;
                        credentials.insert(node.id.clone(), value);
                    }
                    _ => {
                        tracing::warn!(node = %node.id, "the environment variable {var} is not set; requests to this node carry no origin key")
                    }
                }
            }
        }
        let mut aws = HashMap::new();
        for node in &config.nodes {
            let Some(names) = &node.aws_credentials_env else { continue };
            match AwsCredentials::read(names, |var| std::env::var(var).ok()) {
                Some(credentials) => {
                    aws.insert(node.id.clone(), credentials);
                }
                None => tracing::warn!(
                    node = %node.id,
                    "{} and {} are not both set; requests to this Bedrock node cannot be signed and fail",
                    names.access_key_id,
                    names.secret_access_key
                ),
            }
        }
        let per_node = || -> anyhow::Result<Vec<Arc<Pool>>> {
            config
                .nodes
                .iter()
                .map(|n| {
                    let key = credentials.get(&n.id).cloned();
                    Ok(Arc::new(Pool::new(n, key)?))
                })
                .collect()
        };
        let pools = (0..workers.max(1)).map(|_| per_node()).collect::<anyhow::Result<_>>()?;
        Ok(Self { pools, probes, credentials, aws })
    }

    /// How many worker threads have pools.
    pub fn workers(&self) -> usize {
        self.pools.len()
    }

    /// The connections to node `node` (its index in the config) of worker thread `worker`.
    pub fn pool(&self, worker: usize, node: u32) -> Option<&Arc<Pool>> {
        self.pools.get(worker)?.get(usize::try_from(node).ok()?)
    }

    /// The client for active health probes of `node`.
    pub fn probe_client(&self, node: &str) -> Option<&OriginClient> {
        self.probes.get(node)
    }

    /// The AWS credentials of Bedrock node `node`, if they are set.
    pub fn aws(&self, node: &str) -> Option<&AwsCredentials> {
        self.aws.get(node)
    }

    /// Adds node `node`'s key, in its API's way, if it has one.
    pub fn authorize(&self, headers: &mut http::HeaderMap, node: &str) {
        if let Some((name, value)) = self.credentials.get(node) {
            headers.insert(name, value.clone());
        }
    }
}

fn connector(connect_timeout: Duration) -> anyhow::Result<HttpsConnector<HttpConnector>> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// A pooled client for calls off the request path (probes, scaling).
pub(crate) fn client(connect_timeout: Duration) -> anyhow::Result<OriginClient> {
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(MAX_IDLE)
        .build(connector(connect_timeout)?))
}

/// Keep-alive connections to one node, used by one worker thread. An
/// unused connection is dropped when the origin closes it, or when it is
/// found unused for longer than `IDLE_TIMEOUT`.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// The node's URL, which new connections are opened to.
    base: Uri,
    /// The path of the node's URL, without a trailing `/`: it comes before
    /// the client's target.
    prefix: String,
    /// `Host` of every request to the node.
    host: HeaderValue,
    /// The node's key, in its API's header, when its `api_key_env` is set.
    key: Option<Credential>,
    /// Unused connections, most recently used last, with when they came back.
    idle: Mutex<Vec<(SendRequest<ProxyBody>, Instant)>>,
}

/// A connection lent out for one exchange.
pub struct Lease {
    sender: SendRequest<ProxyBody>,
    pool: Arc<Pool>,
}

impl Lease {
    /// Gives the connection back once it is free for another request: its
    /// response has been read to the end (or had no body).
    pub fn release(self) {
        if self.sender.is_ready() {
            return self.pool.keep(self.sender);
        }
        let Self { mut sender, pool } = self;
        tokio::spawn(async move {
            if let Ok(Ok(())) = tokio::time::timeout(FREE_WITHIN, sender.ready()).await {
                pool.keep(sender);
            }
        });
    }
}

impl Pool {
    fn new(node: &edge_router::config::Node, key: Option<Credential>) -> anyhow::Result<Self> {
        let base: Uri = node.base_url.parse()?;
        let host = host_header(&base)
            .ok_or_else(|| anyhow::anyhow!("node {}: `{}` has no usable host", node.id, node.base_url))?;
        let prefix = base.path().trim_end_matches('/').to_string();
        let connector = connector(node.timeouts.connect.0)?;
        Ok(Self { connector, base, host, prefix, key, idle: Mutex::new(Vec::new()) })
    }

    /// Whether requests to the node carry its key.
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// The target on this node of a client's request for `client`: see [`origin_target`].
    pub fn target(&self, client: &Uri) -> Result<Uri, http::Error> {
        origin_target(&self.prefix, client)
    }

    /// Keeps a free connection for the next request.
    fn keep(&self, sender: SendRequest<ProxyBody>) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push((sender, Instant::now()));
        }
    }

    /// An unused connection that is still open and has not been idle too
    /// long, if there is one. Only free connections are kept, so one that
    /// is not ready has been closed.
    fn take_idle(&self) -> Option<SendRequest<ProxyBody>> {
        let mut idle = lock(&self.idle);
        while let Some((sender, since)) = idle.pop() {
            if sender.is_ready() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    /// Sends `req` (whose URI is in origin form, from [`Pool::target`]) on
    /// an unused connection, or on a new one, with the node's `Host` and
    /// key. A
    /// request a reused connection could not take (it was closing) goes on
    /// the next one; a request that was sent and then failed is not sent
    /// again.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Lease), (Failure, RetryType)> {
        req.headers_mut().insert(http::header::HOST, self.host.clone());
        if let Some((name, value)) = &self.key {
            req.headers_mut().insert(name, value.clone());
        }
        while let Some(mut sender) = self.take_idle() {
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, Lease { sender, pool: self.clone() })),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err((Failure::Reset, RetryType::Sent)),
                },
            }
        }
        let mut sender = self.connect().await.map_err(|f| (f, RetryType::NotSent))?;
        match sender.send_request(req).await {
            Ok(resp) => Ok((resp, Lease { sender, pool: self.clone() })),
            Err(_) => Err((Failure::Reset, RetryType::Sent)),
        }
    }

    /// Opens a connection (TCP, and TLS for `https`) and runs it on this thread.
    async fn connect(&self) -> Result<SendRequest<ProxyBody>, Failure> {
        let io = self.connector.clone().call(self.base.clone()).await.map_err(|e| {
            tracing::debug!("cannot connect to the origin: {e}");
            Failure::Connect
        })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|_| Failure::Connect)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("origin connection ended: {e}");
            }
        });
        Ok(sender)
    }
}

/// The origin-form target of a client's request for `client` (whose path
/// and query are kept, in origin or absolute form) on a node whose URL has
/// the path `prefix` (empty, or without a trailing `/`): the prefix, then
/// the client's path. An asterisk-form `*` (`OPTIONS *`) stays as it is.
fn origin_target(prefix: &str, client: &Uri) -> Result<Uri, http::Error> {
    let Some(path) = client.path_and_query() else { return Ok(Uri::from_static("/")) };
    if prefix.is_empty() || path.as_str() == "*" {
        return Ok(Uri::from(path.clone()));
    }
    Ok(Uri::try_from(format!("{prefix}{}", path.as_str()))?)
}

/// `Host` for a request to `url`: its host, and its port unless it is the scheme's default.
fn host_header(url: &Uri) -> Option<HeaderValue> {
    let host = url.host()?;
    let default = match url.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    let value = match url.port_u16() {
        Some(port) if port != default => HeaderValue::from_str(&format!("{host}:{port}")),
        _ => HeaderValue::from_str(host),
    };
    value.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_the_nodes_path_then_the_clients() {
        let target = |prefix: &str, client: &str| {
            origin_target(prefix, &client.parse::<Uri>().expect("a URI")).expect("a target").to_string()
        };
        for (prefix, client, expected) in [
            ("", "/v1/chat/completions", "/v1/chat/completions"),
            ("", "/v1/models?limit=5&after=x", "/v1/models?limit=5&after=x"),
            ("/openai", "/v1/chat/completions", "/openai/v1/chat/completions"),
            ("/openai", "/v1/models?limit=5", "/openai/v1/models?limit=5"),
            // An absolute-form request line keeps only its path and query.
            ("", "http://edge.example/v1/models?x=1", "/v1/models?x=1"),
            ("/a/b", "http://edge.example:8080/v1/models", "/a/b/v1/models"),
            // `OPTIONS *` asks about the server as a whole.
            ("", "*", "*"),
            ("/openai", "*", "*"),
        ] {
            assert_eq!(target(prefix, client), expected, "{prefix} + {client}");
        }
    }

    #[test]
    fn a_pool_takes_its_prefix_from_the_nodes_url() {
        let config = edge_router::RouterConfig::load(
            "t.yaml",
            "nodes:\n  - {id: plain, type: local, host: \"http://a:8000\"}\n  - {id: based, type: cloud, host: \"https://b.example/openai/\"}\n",
        )
        .expect("a valid config");
        let pools: Vec<Pool> = config.nodes.iter().map(|n| Pool::new(n, None).expect("a pool")).collect();
        let client: Uri = "/v1/chat/completions?x=1".parse().expect("a URI");
        assert_eq!(pools[0].target(&client).expect("a target"), "/v1/chat/completions?x=1");
        assert_eq!(pools[1].target(&client).expect("a target"), "/openai/v1/chat/completions?x=1");
        assert_eq!((pools[0].host.to_str().ok(), pools[1].host.to_str().ok()), (Some("a:8000"), Some("b.example")));
    }
}
