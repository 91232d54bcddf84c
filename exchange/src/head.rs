//! An origin's response head: what the router is told of it, and what
//! becomes of the answer — passed on (and kept for the cache when it may
//! be), a stale entry confirmed by a `304`, or a stale entry answering for
//! an error — plus the cache entries an unsafe request invalidates.

use edge_cache::http::{freshen, invalidated as rfc_invalidated, storable};
use edge_router::facts::Endpoint;
use edge_router::hop::{always_hop_by_hop_lowercase, for_each_connection_token, is_hop_by_hop};
use edge_router::wire::{Event, Explain, Forward, ForwardBody};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::answer::stale_may_answer;
use crate::capture::Capture;
use crate::entry::{Entry, HoldsEntry};
use crate::explain::set_explanation;
use crate::restore::RestorePii;
use crate::transform::{EditAnswer, Then, Transform};

/// The router's `ResponseHead` event for exchange `id`: the status, and the
/// `retry-after` of a 429 or 503 in seconds (capped to what the event holds).
pub fn head_event(id: u64, status: StatusCode, headers: &HeaderMap, now_ms: u64) -> Event {
    let status = status.as_u16();
    let retry_after_s = matches!(status, 429 | 503)
        .then(|| edge_cache::fields::retry_after_s(headers, now_ms))
        .flatten()
        .map(|s| u32::try_from(s).unwrap_or(u32::MAX));
    Event::ResponseHead { id, status, retry_after_s, now_ms }
}

/// What is known of the request an answer is for.
pub struct Attempt<'a> {
    /// The client's request head.
    pub request: &'a http::request::Parts,
    /// Which kind of path it is.
    pub endpoint: Endpoint,
    /// The API the node speaks: its answers are translated into OpenAI's.
    pub api: edge_router::config::Api,
    /// Whether requests to the node carry its key (RFC 9111 §3.5 then applies).
    pub node_has_key: bool,
    /// When the request was sent, in milliseconds since the epoch.
    pub sent_ms: u64,
    /// The model the client asked for, when the answer should name it
    /// again after the router rewrote it (`model_routing.restore_requested_model`).
    pub restore_model: Option<&'a str>,
    /// The largest body the cache stores.
    pub max_entry: usize,
    /// The placeholders the node got for personal values (`pii` mode
    /// `pseudonymize`), to restore in the answer. Such an answer is never
    /// stored: restored, it holds the client's personal values.
    pub restore_pii: Option<std::sync::Arc<edge_router::pii::Vault>>,
}

/// A stored entry a request revalidates: the host's handle on it (`T`, the
/// entry and its body, however the host keeps them), and whether it may
/// answer an error (`stale-if-error`).
pub struct Stale<T> {
    /// The entry.
    pub entry: T,
    /// Whether an error may be answered with it.
    pub if_error: bool,
}

/// What becomes of an origin's answer.
pub struct Decision<T> {
    /// What the client gets.
    pub plan: Plan<T>,
    /// Cache keys the answer invalidates (see [`invalidated`]).
    pub invalidate: Vec<String>,
}

/// What the client gets of an origin's answer.
pub enum Plan<T> {
    /// A `304` confirmed the stale entry: serve `fresh`, its freshened head
    /// with `stale`'s body (`REVALIDATED`), and store that again if `keep`.
    Revalidated {
        /// The freshened head.
        fresh: Entry,
        /// The entry it freshens.
        stale: T,
        /// A shared cache may still keep it: the `304` did not make it
        /// `private` or `no-store` (RFC 9111 §5.2.2.5, §5.2.2.7, §3.5).
        keep: bool,
    },
    /// The origin failed and `stale-if-error` lets the stale entry answer.
    ServeStale(T),
    /// Pass the answer on.
    Deliver(Delivery),
}

/// How an answer is passed on.
pub struct Delivery {
    /// The answer kept for the cache, if it may be stored.
    pub capture: Option<Capture>,
    /// Whether the body is an SSE stream.
    pub sse: bool,
    /// The rewrite it goes through, if any.
    pub transform: Option<Box<dyn Transform>>,
}

/// Decides what becomes of an answer with `status` and header fields
/// `headers` to `forward`, given the stale entry being revalidated, if any,
/// and the answer's explanation (whose node the invalidated keys are of).
pub fn decide<T: HoldsEntry>(
    attempt: &Attempt<'_>,
    forward: &Forward,
    stale: Option<Stale<T>>,
    explain: &Explain,
    status: StatusCode,
    headers: &HeaderMap,
    now_ms: u64,
) -> Decision<T> {
    let invalidate = invalidated(attempt, &explain.node, status, headers);
    Decision { plan: plan(attempt, forward, stale, explain, status, headers, now_ms), invalidate }
}

fn plan<T: HoldsEntry>(
    attempt: &Attempt<'_>,
    forward: &Forward,
    stale: Option<Stale<T>>,
    explain: &Explain,
    status: StatusCode,
    headers: &HeaderMap,
    now_ms: u64,
) -> Plan<T> {
    if let Some(Stale { entry: held, if_error }) = stale {
        let entry = held.entry();
        if status == StatusCode::NOT_MODIFIED
            && let Some(stored) = &entry.http
        {
            let mut fresh = entry.clone();
            let mut meta = stored.clone();
            // The 304's own connection's fields are not the entry's.
            let mut updates = headers.clone();
            strip_hop_by_hop(&mut updates);
            let (status, headers) = (entry.status, &mut fresh.headers);
            let keep = freshen(&mut meta, status, headers, &updates, authorized(attempt), (attempt.sent_ms, now_ms));
            fresh.http = Some(meta);
            fresh.stored_ms = now_ms;
            return Plan::Revalidated { fresh, stale: held, keep };
        }
        if if_error && stale_may_answer(status.as_u16()) {
            return Plan::ServeStale(held);
        }
    }
    let sse = is_sse(headers);
    // A compressed body cannot be read to be rewritten (the node was asked
    // for `identity`): it goes as it came. Nor is it kept as an AI answer,
    // which is served whatever encodings the next client takes.
    let compressed = headers.get(http::header::CONTENT_ENCODING).is_some_and(|v| v.as_bytes() != b"identity");
    let capture = forward.fill.as_ref().filter(|_| attempt.restore_pii.is_none()).and_then(|fill| {
        if fill.http {
            let request = attempt.request;
            // A HEAD's answer has no body to keep for a later GET.
            if request.method != Method::GET {
                return None;
            }
            let (sent, method) = (attempt.sent_ms, &request.method);
            let stored = storable(method, &request.headers, authorized(attempt), status, headers, sent, now_ms).ok()?;
            Some(Capture::http(fill, status, headers, explain, stored, attempt.max_entry))
        } else {
            (status == StatusCode::OK && !compressed).then(|| Capture::ai(fill, headers, explain, attempt.max_entry))
        }
    });
    let transform = if compressed { None } else { rewrite(attempt, forward, explain, status, sse, now_ms) };
    Plan::Deliver(Delivery { capture, sse, transform })
}

/// The rewrite an answer goes through, if any: another API's answer into
/// the shape the client asked in first, then the model given back
/// (`restore_requested_model`) and response ids tagged with their node,
/// and last the personal values given back (`pii`), in every answer,
/// errors included (one may quote the request).
fn rewrite(
    attempt: &Attempt<'_>,
    forward: &Forward,
    explain: &Explain,
    status: StatusCode,
    sse: bool,
    now_ms: u64,
) -> Option<Box<dyn Transform>> {
    let restore = match (&forward.body, attempt.restore_model) {
        (ForwardBody::RewriteModel(_), Some(requested)) if status.is_success() => {
            Some(EditAnswer::restore_model(requested, sse))
        }
        _ => None,
    };
    // A response object's id names its node, so that what follows it
    // reaches the node holding it (`edge_router::facts::RESPONSE_TAG`).
    let holds = matches!(attempt.endpoint, Endpoint::Responses | Endpoint::ResponseById) && status.is_success();
    let tag = holds.then(|| EditAnswer::tag_response_ids(&explain.node, sse));
    let edit = match (restore, tag) {
        (Some(r), Some(t)) => Some(EditAnswer::both(r, t)),
        (r, t) => r.or(t),
    };
    let edit = edit.map(|t| Box::new(t) as Box<dyn Transform>);
    // Another API's answer becomes OpenAI's first; the edits work on that.
    let translate = crate::provider::answer_for(attempt.endpoint, attempt.api, status, sse, now_ms);
    let rewritten = match (translate, edit) {
        (Some(translate), Some(edit)) => Some(Box::new(Then(translate, edit)) as Box<dyn Transform>),
        (translate, edit) => translate.or(edit),
    };
    let restore = attempt.restore_pii.clone().map(|vault| Box::new(RestorePii::new(vault, sse)) as Box<dyn Transform>);
    match (rewritten, restore) {
        (Some(rewritten), Some(restore)) => Some(Box::new(Then(rewritten, restore)) as Box<dyn Transform>),
        (rewritten, restore) => rewritten.or(restore),
    }
}

/// Whether the request reached its node with `Authorization` (RFC 9111
/// §3.5), judged on the request as the origin got it: with the node's key
/// if it has one, or signed (Bedrock's nodes always are), never with the
/// client's own credentials.
fn authorized(attempt: &Attempt<'_>) -> bool {
    attempt.node_has_key || attempt.api == edge_router::config::Api::Bedrock
}

/// Whether a body is an SSE stream.
pub fn is_sse(headers: &HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

/// The head the client gets: the origin's without its hop-by-hop fields,
/// with the explanation. Without `Content-Length` when a transform may
/// change the body's length (it is then sent chunked).
pub fn deliver_head(headers: &mut HeaderMap, explain: &Explain, transformed: bool) {
    strip_hop_by_hop(headers);
    if transformed {
        headers.remove(http::header::CONTENT_LENGTH);
    }
    set_explanation(headers, explain);
}

/// Removes the hop-by-hop fields (RFC 9110 §7.6.1) of a message: the fixed
/// ones and those its `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // A message both chunked and with a length is framed by its chunking;
    // its length, which may be anything, must not go on (RFC 9112 §6.3).
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        headers.remove(http::header::CONTENT_LENGTH);
    }
    // Names the `Connection` header lists besides the fixed ones: usually
    // none (a bare `keep-alive`), and then nothing is allocated.
    let mut named: Vec<HeaderName> = Vec::new();
    for_each_connection_token(headers.get_all(http::header::CONNECTION).iter().map(HeaderValue::as_bytes), |t| {
        if !is_hop_by_hop(t, &[])
            && let Ok(name) = HeaderName::from_bytes(t.as_bytes())
        {
            named.push(name);
        }
    });
    // A `HeaderName` is in lower case: the fixed names are matched exactly.
    let fixed: Vec<HeaderName> = headers.keys().filter(|n| always_hop_by_hop_lowercase(n.as_str())).cloned().collect();
    for name in fixed.into_iter().chain(named) {
        headers.remove(name);
    }
}

/// The cache keys a successful unsafe request through a passthrough path
/// invalidates: its target's, and those of same-origin `Location` and
/// `Content-Location` (RFC 9111 §4.4). Cached entries of passthrough paths
/// are keyed `http/<node><target>`.
pub fn invalidated(attempt: &Attempt<'_>, node: &str, status: StatusCode, headers: &HeaderMap) -> Vec<String> {
    let request = attempt.request;
    if attempt.endpoint != Endpoint::Other || request.method.is_safe() {
        return Vec::new();
    }
    let target = crate::intake::path_and_query(&request.uri);
    rfc_invalidated(&request.method, status, &format!("http/{node}"), target, headers)
}

#[cfg(test)]
mod tests;
