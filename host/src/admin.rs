//! The admin API: a separate listener (`admin.listen`) for operators, the
//! `edge-router status | set-weight | drain | ...` commands, Prometheus and
//! the dashboard.
//!
//! Every request must carry `Authorization: Bearer <token>`, the token being
//! the value of the environment variable `admin.token_env`. The presented
//! token's SHA-256 is compared with the expected one in constant time;
//! anything else gets 401, after a delay that refusals wait out one at a
//! time. The token is never logged or echoed. The exceptions are the
//! dashboard's (`dashboard.rs`): its login page and static files are
//! anyone's, and its session cookie reads what the page reads, at
//! `/dashboard/api/status` and `/dashboard/api/routing-log`. See
//! `docs/admin.md`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use edge_router::config::DurationSpec;
use edge_router::error::RouterError;
use edge_router::wire::{Control, Header};
use http::{Method, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::dashboard::{self, Sessions};
use crate::proxy::{ReloadError, Shared};

/// How long a drain lets responses run when no timeout is given.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Largest admin request body.
const MAX_BODY: usize = 64 << 10;

/// The SHA-256 of the admin token.
#[derive(Clone, Copy)]
pub struct AdminToken([u8; 32]);

impl AdminToken {
    /// Reads the token from the environment variable `var`; refuses an unset or empty one.
    pub fn from_env(var: &str) -> anyhow::Result<Self> {
        match std::env::var(var) {
            Ok(token) if !token.trim().is_empty() => Ok(Self(Sha256::digest(token.trim().as_bytes()).into())),
            _ => anyhow::bail!(
                "admin.listen is set but the environment variable {var} (admin.token_env) holds no token; \
                 set it, or remove admin.listen"
            ),
        }
    }

    /// Whether the request's `Authorization: Bearer` token is the admin token.
    fn admits(&self, req: &Request<Incoming>) -> bool {
        let Some(value) = req.headers().get(http::header::AUTHORIZATION).map(http::HeaderValue::as_bytes) else {
            return false;
        };
        let Some(token) = value.get(..7).filter(|p| p.eq_ignore_ascii_case(b"bearer ")).map(|_| &value[7..]) else {
            return false;
        };
        self.matches(token)
    }

    /// Whether `token` is the admin token, compared in constant time.
    fn matches(&self, token: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.trim_ascii()).into();
        bool::from(digest.ct_eq(&self.0))
    }
}

/// Admin connections open at once; more are closed as they come.
const MAX_CONNECTIONS: usize = 256;
/// How long a caller may take to send a request's head, or its body.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// What a wrong token costs: refusals are made one at a time, this long
/// each, so guesses go at two a second however many are sent at once.
const REFUSAL_DELAY: Duration = Duration::from_millis(500);

/// Who may in: the dashboard's sessions, and the queue refusals wait in.
#[derive(Default)]
struct Gate {
    sessions: Sessions,
    refusals: tokio::sync::Mutex<()>,
}

impl Gate {
    /// Waits out a refusal's delay, behind every other refusal.
    async fn refuse(&self) {
        let _turn = self.refusals.lock().await;
        tokio::time::sleep(REFUSAL_DELAY).await;
    }
}

/// Serves the admin API on `listener` for as long as `shared` lives.
pub async fn serve(shared: Weak<Shared>, listener: TcpListener, token: AdminToken) {
    let gate = Arc::new(Gate::default());
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!("admin connection from {peer} closed: {MAX_CONNECTIONS} are open already");
            continue;
        };
        let (shared, gate) = (shared.clone(), gate.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let (shared, gate) = (shared.clone(), gate.clone());
                async move { Ok::<_, std::convert::Infallible>(route(shared, token, &gate, peer.ip(), req).await) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

/// A request's body, up to `limit` bytes, within `READ_TIMEOUT`.
async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, String> {
    match tokio::time::timeout(READ_TIMEOUT, Limited::new(body, limit).collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) => Err(format!("the request body could not be read: {e}")),
        Err(_) => Err(format!("the request body did not come within {READ_TIMEOUT:?}")),
    }
}

type Answer = Response<BoxBody<Bytes, std::convert::Infallible>>;

fn reply(status: u16, headers: &[Header], body: Bytes) -> Answer {
    exchange::answer::respond(status, headers, body).map(|b| Full::new(b).boxed())
}

/// An error of the admin API, through the one mapping every error takes
/// (`RouterError::to_response`). An internal error's detail is logged here.
fn error(e: &RouterError, id: u64) -> Answer {
    if let RouterError::Internal(detail) = e {
        tracing::error!("admin request {}: {detail}", edge_router::error::request_id_text(id));
    }
    let (status, headers, body) = e.to_response(id, Vec::new());
    reply(status, &headers, Bytes::from(body))
}

async fn route(
    shared: Weak<Shared>,
    token: AdminToken,
    gate: &Gate,
    peer: std::net::IpAddr,
    req: Request<Incoming>,
) -> Answer {
    // The token first: nothing else is told to a caller without it. A
    // dashboard session stands in for it only to read the two things the
    // page reads, at their own paths (which its cookie is scoped to).
    let session_read = req.method() == Method::GET
        && matches!(req.uri().path(), "/dashboard/api/status" | "/dashboard/api/routing-log");
    let admitted = token.admits(&req) || (session_read && gate.sessions.admits(req.headers()));
    let Some(shared) = shared.upgrade() else {
        return error(if admitted { &RouterError::ShuttingDown } else { &RouterError::AdminUnauthorized }, 0);
    };
    let id = shared.request_id();
    let target = req.uri().path();
    if !session_read && (target == "/dashboard" || target.starts_with("/dashboard/")) {
        let (method, target) = (req.method().clone(), target.to_string());
        let answer = dashboard(token, gate, req).await;
        // Logins (by the form or a link), and the attempts that failed; the
        // name as `dashboard` reads it (`/dashboard//login/` is the login too).
        let name = target.strip_prefix("/dashboard").unwrap_or_default().trim_matches('/');
        if name == "login" && (method == Method::POST || answer.status() != 200) {
            let actor = answer.status() == 303;
            audit_action(&shared, actor, peer, &method, "/dashboard/login", answer.status().as_u16(), None);
        }
        return answer;
    }
    if !admitted {
        gate.refuse().await;
        audit_action(&shared, false, peer, req.method(), target, 401, None);
        return error(&RouterError::AdminUnauthorized, id);
    }
    let method = req.method().clone();
    let query = req.uri().query().map(str::to_string);
    let target =
        target.strip_prefix("/dashboard/api/").map_or_else(|| target.to_string(), |api| format!("/admin/{api}"));
    let path: Vec<String> = target.trim_matches('/').split('/').map(str::to_string).collect();
    let body = match read_body(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(why) => return error(&RouterError::BadRequest(why), id),
    };
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let answer = match (&method, path.as_slice()) {
        (&Method::GET, ["metrics"]) => {
            let text = shared.metrics();
            let content_type = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
            Ok(reply(200, &[Header::new("content-type", content_type)], Bytes::from(text)))
        }
        (&Method::GET, ["admin", "routing-log"]) => routing_log(&shared, query.as_deref()),
        (&Method::GET, ["admin", "status"]) => {
            let (status, headers, body) = shared.status();
            Ok(reply(status, &headers, body))
        }
        (&Method::POST, ["admin", "nodes", node, action]) => node_action(&shared, node, action, &body),
        (&Method::POST, ["admin", "reload"]) => reload_config(&shared).await,
        (&Method::POST, ["admin", "reload", "module"]) => reload(&shared).await,
        (&Method::POST, ["admin", "cache", "purge"]) => purge(&shared, &body),
        (&Method::POST, ["admin", "dashboard", "link"]) => dashboard_link(&gate.sessions),
        _ => Err(RouterError::NotFound(format!("no admin endpoint {method} /{}", path.join("/")))),
    };
    let answer = answer.unwrap_or_else(|e| error(&e, id));
    // What changes the router: who, what, and how it ended.
    if method != Method::GET {
        let target = format!("/{}", path.join("/"));
        let request = audited_fields(path.as_slice(), &body);
        audit_action(&shared, true, peer, &method, &target, answer.status().as_u16(), request);
    }
    answer
}

/// The fields of an admin request's body the audit trail keeps: only those
/// its endpoint reads (a weight, a drain's time-out, what a purge names),
/// strings cut at 200 characters. Nothing else a caller sent is written.
fn audited_fields(path: &[&str], body: &[u8]) -> Option<serde_json::Value> {
    let fields: &[&str] = match path {
        ["admin", "nodes", _, "weight"] => &["weight"],
        ["admin", "nodes", _, "drain"] => &["timeout"],
        ["admin", "cache", "purge"] => &["prefix", "node", "all"],
        _ => return None,
    };
    let sent: serde_json::Value = serde_json::from_slice(body).ok()?;
    let kept: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .filter_map(|f| {
            let value = match sent.get(*f)? {
                serde_json::Value::String(s) => serde_json::Value::String(s.chars().take(200).collect()),
                v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => v.clone(),
                _ => return None,
            };
            Some(((*f).to_string(), value))
        })
        .collect();
    Some(kept.into())
}

/// An admin action in the audit trail: whether the caller had the admin
/// token (`actor` is `admin-token` or `null`: there is one token, and
/// nothing derived from it is written), from where, what (the path cut at
/// 200 characters), the answer's status, and what `audited_fields` keeps.
fn audit_action(
    shared: &Shared,
    with_token: bool,
    peer: std::net::IpAddr,
    method: &Method,
    target: &str,
    status: u16,
    request: Option<serde_json::Value>,
) {
    shared.signals.audit(serde_json::json!({
        "kind": "admin",
        "actor": with_token.then_some("admin-token"),
        "peer": peer.to_string(),
        "method": method.as_str(),
        "path": target.chars().take(200).collect::<String>(),
        "status": status,
        "request": request,
    }));
}

/// `{"prefix": "ai/acme/"}`, `{"node": "cloud-eu"}` (both: entries matching
/// both), or `{"all": true}`.
fn purge(shared: &Arc<Shared>, body: &[u8]) -> Result<Answer, RouterError> {
    let fields: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let text = |name: &str| fields.get(name).and_then(serde_json::Value::as_str);
    let (prefix, node, all) = (text("prefix"), text("node"), fields.get("all") == Some(&serde_json::Value::Bool(true)));
    if prefix.is_none() && node.is_none() && !all {
        let message = "say what to purge: {\"prefix\": \"ai/<tenant>/\"}, {\"node\": \"<id>\"} or {\"all\": true}";
        return Err(RouterError::BadRequest(message.into()));
    }
    let purged = shared.purge(prefix, node);
    tracing::info!(prefix = prefix.unwrap_or(""), node = node.unwrap_or(""), "purged {purged} cache entries");
    let body = serde_json::json!({ "purged": purged });
    Ok(reply(200, &[Header::new("content-type", "application/json")], Bytes::from(body.to_string())))
}

fn node_action(shared: &Arc<Shared>, node: &str, action: &str, body: &[u8]) -> Result<Answer, RouterError> {
    let fields: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Err(RouterError::BadRequest(format!("the body is not JSON: {e}"))),
        }
    };
    let node = node.to_string();
    let (command, cut_off) = match action {
        "weight" => match fields.get("weight").and_then(serde_json::Value::as_f64) {
            Some(weight) => (Control::SetWeight { node, weight }, None),
            None => return Err(RouterError::BadRequest("send {\"weight\": <number>}".into())),
        },
        "drain" => {
            let timeout = match fields.get("timeout") {
                None => DEFAULT_DRAIN_TIMEOUT,
                Some(t) => match t.as_str().map(DurationSpec::try_from) {
                    Some(Ok(d)) => d.0,
                    _ => return Err(RouterError::BadRequest("`timeout` must be a duration such as \"5m\"".into())),
                },
            };
            (Control::Drain { node }, Some(timeout))
        }
        "undrain" => (Control::Undrain { node }, None),
        other => return Err(RouterError::NotFound(format!("no node action `{other}` (weight, drain, undrain)"))),
    };
    let (status, headers, body) = shared.control(command, cut_off);
    Ok(reply(status, &headers, body))
}

/// `POST /admin/reload`: the config file read again and put in force.
async fn reload_config(shared: &Arc<Shared>) -> Result<Answer, RouterError> {
    let again = shared.clone();
    let result = tokio::task::spawn_blocking(move || again.reload_config())
        .await
        .map_err(|e| RouterError::Internal(format!("the reload did not finish: {e}")))?;
    let reloaded = match result {
        Ok(r) => r,
        Err(ReloadError::NoFile) => {
            return Err(RouterError::Conflict(
                "the config was not read from a file (the demo, or an embedded start), so there is nothing to reload"
                    .into(),
            ));
        }
        // The config is the operator's own file: what is wrong with it is theirs to see.
        Err(ReloadError::Refused(why)) => {
            tracing::error!("config reload refused, the running config stays:\n{why}");
            return Err(RouterError::ReloadRefused(why));
        }
    };
    let s = &reloaded.generation.source;
    if reloaded.changed {
        tracing::info!("config {} reloaded (sha256 {})", s.name, &s.sha256[..12]);
        for setting in &reloaded.restart_needed {
            tracing::warn!("{setting} changed: it takes effect at the next restart");
        }
    }
    let body = serde_json::json!({
        "reloaded": reloaded.changed,
        "config": config_source(&reloaded.generation),
        "restart_needed": reloaded.restart_needed,
    });
    Ok(reply(200, &[Header::new("content-type", "application/json")], Bytes::from(body.to_string())))
}

/// What `status` and a reload say of the config in force.
pub fn config_source(generation: &crate::proxy::Generation) -> serde_json::Value {
    let s = &generation.source;
    serde_json::json!({
        "file": s.name,
        "sha256": s.sha256,
        "loaded_at": exchange::record::rfc3339_ms(s.loaded_ms),
        "generation": generation.number,
        "reloadable": s.path.is_some(),
    })
}

/// `POST /admin/reload/module`: the router module read again from its file.
async fn reload(shared: &Arc<Shared>) -> Result<Answer, RouterError> {
    let Some(path) = shared.module_path() else {
        return Err(RouterError::Conflict(
            "the module was not loaded from a file, so there is nothing to reload".into(),
        ));
    };
    // Compiling takes a while: off the async threads.
    let file = path.clone();
    let compiled = tokio::task::spawn_blocking(move || crate::RouterModule::from_file_hashed(&file)).await;
    let compiled = compiled.map_err(anyhow::Error::from).and_then(|m| m);
    let sha256 = compiled.as_ref().ok().map(|(_, sha)| sha.clone());
    let result = compiled.and_then(|(m, _)| shared.reload(&m));
    shared.signals.audit(serde_json::json!({
        "kind": "reload", "what": "module", "file": path.display().to_string(), "sha256": sha256,
        "result": if result.is_ok() { "reloaded" } else { "refused" },
        "error": result.as_ref().err().map(|e| format!("{e:#}")),
    }));
    match result {
        Ok(()) => {
            tracing::info!("router module reloaded from {}", path.display());
            let body = serde_json::json!({"reloaded": path.display().to_string()});
            Ok(reply(200, &[Header::new("content-type", "application/json")], Bytes::from(body.to_string())))
        }
        // The module is the operator's own file: what is wrong with it is theirs to see.
        Err(e) => Err(RouterError::ReloadRefused(format!("{e:#}"))),
    }
}

/// `GET /admin/routing-log`: the records of requests as they close, one
/// JSON object a line, for as long as the caller reads; `?node=` and
/// `?rule=` keep only those of one node or rule. A reader that falls behind
/// misses records and gets `{"missed": n}` in their place: the proxy never
/// waits for it. `?recent=1` answers the latest records at once instead.
fn routing_log(shared: &Arc<Shared>, query: Option<&str>) -> Result<Answer, RouterError> {
    let mut filter = crate::signals::Filter::default();
    let mut recent = false;
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = edge_router::facts::percent_decoded(value);
        match name {
            "node" => filter.node = Some(value),
            "rule" => filter.rule = Some(value),
            "recent" => recent = value != "0",
            other => {
                return Err(RouterError::BadRequest(format!(
                    "no routing-log parameter `{other}` (node, rule, recent)"
                )));
            }
        }
    }
    let json = [Header::new("content-type", "application/x-ndjson")];
    if recent {
        let lines: String =
            shared.signals.recent().iter().filter(|r| filter.keeps(r)).map(|r| r.json_line() + "\n").collect();
        return Ok(reply(200, &json, Bytes::from(lines)));
    }
    let lines = shared.signals.follow_lines(filter);
    let mut response = Response::new(lines.boxed());
    for h in json {
        if let Ok(v) = http::HeaderValue::from_bytes(&h.value) {
            response.headers_mut().insert(http::header::CONTENT_TYPE, v);
        }
    }
    Ok(response)
}

/// `POST /admin/dashboard/link`: a link that opens the dashboard once,
/// within a minute, without typing the token (`edge-router dashboard`).
fn dashboard_link(sessions: &Sessions) -> Result<Answer, RouterError> {
    let code = sessions.link().map_err(|e| RouterError::Internal(format!("{e:#}")))?;
    let body = serde_json::json!({
        "path": format!("/dashboard/login?code={code}"),
        "expires_in_s": dashboard::LINK_LIFETIME.as_secs(),
    });
    Ok(reply(200, &[Header::new("content-type", "application/json")], Bytes::from(body.to_string())))
}

/// The dashboard's pages: the page itself for the token or a session, the
/// login page otherwise, and the files the pages load (the same for
/// everyone: they hold no data).
async fn dashboard(token: AdminToken, gate: &Gate, req: Request<Incoming>) -> Answer {
    let html = "text/html; charset=utf-8";
    let sessions = &gate.sessions;
    let admitted = token.admits(&req) || sessions.admits(req.headers());
    let query = req.uri().query().unwrap_or_default().to_string();
    let method = req.method().clone();
    let name = req.uri().path().strip_prefix("/dashboard").unwrap_or_default().trim_matches('/').to_string();
    match (&method, name.as_str()) {
        (&Method::GET, "") if admitted => page(200, html, dashboard::index().into(), None),
        (&Method::GET, "") => page(401, html, dashboard::login_page(None), None),
        (&Method::GET, "login") => {
            let code = query.split('&').find_map(|p| p.strip_prefix("code="));
            match code {
                None => page(200, html, dashboard::login_page(None), None),
                Some(code) if sessions.redeem(code) => logged_in(sessions),
                Some(_) => {
                    gate.refuse().await;
                    let why = "That link has expired or was used already: run `edge-router dashboard` for another.";
                    page(401, html, dashboard::login_page(Some(why)), None)
                }
            }
        }
        (&Method::POST, "login") => {
            let body = read_body(req.into_body(), 4 << 10).await.unwrap_or_default();
            match dashboard::form_token(&body) {
                Some(t) if token.matches(t.as_bytes()) => logged_in(sessions),
                _ => {
                    gate.refuse().await;
                    page(401, html, dashboard::login_page(Some("That is not the admin token.")), None)
                }
            }
        }
        (&Method::GET, file) => match dashboard::asset(file) {
            Some((kind, body)) => page(200, kind, body.into(), None),
            None => page(404, "text/plain; charset=utf-8", format!("no dashboard file `{file}`"), None),
        },
        _ => page(405, "text/plain; charset=utf-8", format!("the dashboard does not take {method}"), None),
    }
}

/// A new session: its cookie, and on to the dashboard.
fn logged_in(sessions: &Sessions) -> Answer {
    match sessions.open() {
        Ok(secret) => page(303, "text/plain; charset=utf-8", String::new(), Some(Sessions::set_cookie(&secret))),
        Err(e) => error(&RouterError::Internal(format!("{e:#}")), 0),
    }
}

/// A dashboard answer: a page or file that no other site may frame or
/// script, that is not cached, and whose URL (a one-time link) is not sent
/// on as a referrer. With a cookie, it is a redirect to the dashboard.
fn page(status: u16, kind: &str, body: String, cookie: Option<String>) -> Answer {
    let mut response = Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, kind)
        .header(http::header::CONTENT_SECURITY_POLICY, dashboard::CSP)
        .header(http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(http::header::X_FRAME_OPTIONS, "DENY")
        .header(http::header::REFERRER_POLICY, "no-referrer")
        .header(http::header::CACHE_CONTROL, "no-store");
    if let Some(cookie) = cookie {
        response = response.header(http::header::SET_COOKIE, cookie).header(http::header::LOCATION, "/dashboard");
    }
    response
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}
