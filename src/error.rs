//! Errors the router, the hosts and the admin API answer themselves, and the
//! one place they become responses ([`RouterError::to_response`]).
//!
//! The body is OpenAI's error shape, `{"error": {"type", "message"}}`, so
//! unmodified clients show the message. Messages never carry secrets: keys are
//! neither logged nor echoed, and origin failures are described by kind. An
//! internal error's detail never reaches a client either: the client gets a
//! fixed message with the request's id (also in `x-request-id`), and the
//! detail goes to the log under the same id.

use crate::wire::Header;

/// Something the router refuses or could not do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    /// The geofence refused the client's country.
    #[error("{0}")]
    Geofenced(String),
    /// No valid API key where one is required.
    #[error("a valid API key is required: send it as `Authorization: Bearer <key>`")]
    Unauthorized,
    /// A known key, refused: its `not_after` has passed.
    #[error("{0}")]
    KeyRefused(String),
    /// The caller may not call from its address (an `allow_ips` list).
    #[error("{0}")]
    Forbidden(String),
    /// A key's or tenant's rate limit would be overdrawn.
    #[error("{0}")]
    RateLimited(crate::limits::Refusal),
    /// The request cannot be understood.
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than the configured limit.
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The request holds personal data that its node's `pii` policy
    /// (`block`) does not let through: the kinds found, with how many of
    /// each (never the values).
    #[error(
        "the request holds personal data that may not be sent to the node chosen for it ({0}); remove it and retry"
    )]
    PersonalData(String),
    /// The client sent its request too slowly.
    #[error("the request was not received within {0}")]
    ClientTimeout(String),
    /// No route for this path.
    #[error("no route for {method} {path}")]
    NoRoute {
        /// Method.
        method: String,
        /// Path.
        path: String,
    },
    /// Every candidate is outside the request's jurisdiction.
    #[error("no node permitted to process data from jurisdiction {jurisdiction} can serve this request")]
    ResidencyUnavailable {
        /// Jurisdiction name.
        jurisdiction: String,
    },
    /// No node can serve the request at all.
    #[error("no node can serve this request: {0}")]
    NoNode(String),
    /// Every candidate is unhealthy (its breaker open).
    #[error("every node that can serve this request is unhealthy ({nodes}); retry in {retry_after_s}s")]
    Unhealthy {
        /// The node ids.
        nodes: String,
        /// Seconds until the first may take a probe request.
        retry_after_s: u64,
    },
    /// Every candidate is at `max_concurrent`.
    #[error("every node that can serve this request is at capacity; retry shortly")]
    AtCapacity,
    /// Every candidate asked for a pause (a 429 or 503 with `retry-after`).
    #[error("every node that can serve this request asked for a pause ({nodes}); retry in {retry_after_s}s")]
    Paused {
        /// The node ids.
        nodes: String,
        /// Seconds until the first pause ends.
        retry_after_s: u64,
        /// 429 if a node was rate limited, else 503 (the status the nodes paused with).
        status: u16,
    },
    /// Every candidate has spent its `max_cost_per_day`.
    #[error(
        "every node that can serve this request has spent its daily cost budget ({nodes}); budgets start again in {retry_after_s}s"
    )]
    BudgetSpent {
        /// The node ids.
        nodes: String,
        /// Seconds until the next budget day.
        retry_after_s: u64,
    },
    /// Every candidate is being drained by an operator.
    #[error("every node that can serve this request is being drained ({0})")]
    Draining(String),
    /// Every attempt failed.
    #[error("every node failed: {0}")]
    UpstreamFailed(String),
    /// The last attempt timed out.
    #[error("every node failed, the last one by timing out: {0}")]
    UpstreamTimeout(String),
    /// The admin API was called without its token.
    #[error("the admin API needs `Authorization: Bearer <admin token>`")]
    AdminUnauthorized,
    /// What an operator asked for does not exist (an admin endpoint, a node).
    #[error("{0}")]
    NotFound(String),
    /// What an operator asked for conflicts with how the box runs.
    #[error("{0}")]
    Conflict(String),
    /// A reload (of the config or the module) was refused; what ran before still runs.
    #[error("the reload was refused, and what ran before still runs: {0}")]
    ReloadRefused(String),
    /// The router is shutting down.
    #[error("the router is shutting down")]
    ShuttingDown,
    /// A fault in the router or a host. The text is for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A request id as clients and logs show it: 16 hex digits.
pub fn request_id_text(id: u64) -> String {
    String::from_utf8_lossy(&request_id_hex(id)).into_owned()
}

/// [`request_id_text`] without allocating: 16 lower-case hex digits (the
/// access log writes one a request).
pub fn request_id_hex(id: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((id >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

impl RouterError {
    /// HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::Geofenced(_) => 451,
            Self::Unauthorized | Self::KeyRefused(_) => 401,
            Self::Forbidden(_) => 403,
            Self::RateLimited(_) => 429,
            Self::BadRequest(_) => 400,
            Self::PayloadTooLarge { .. } => 413,
            Self::PersonalData(_) => 400,
            Self::ClientTimeout(_) => 408,
            Self::NoRoute { .. } => 404,
            Self::ResidencyUnavailable { .. }
            | Self::NoNode(_)
            | Self::Unhealthy { .. }
            | Self::BudgetSpent { .. }
            | Self::Draining(_) => 503,
            Self::AtCapacity => 429,
            Self::Paused { status, .. } => *status,
            Self::UpstreamFailed(_) => 502,
            Self::UpstreamTimeout(_) => 504,
            Self::AdminUnauthorized => 401,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::ReloadRefused(_) => 422,
            Self::ShuttingDown => 503,
            Self::Internal(_) => 500,
        }
    }

    /// The stable `error.type` value.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Geofenced(_) => "geofence_denied",
            Self::Unauthorized | Self::KeyRefused(_) => "authentication_error",
            Self::Forbidden(_) => "permission_denied",
            Self::RateLimited(_) => "rate_limited",
            Self::BadRequest(_) => "invalid_request_error",
            Self::PayloadTooLarge { .. } => "request_too_large",
            Self::PersonalData(_) => "personal_data",
            Self::ClientTimeout(_) => "request_timeout",
            Self::NoRoute { .. } => "not_found_error",
            Self::ResidencyUnavailable { .. } => "residency_unavailable",
            Self::NoNode(_) => "no_node_available",
            Self::Unhealthy { .. } => "nodes_unhealthy",
            Self::AtCapacity => "capacity_exceeded",
            Self::Paused { status: 429, .. } => "rate_limited",
            Self::Paused { .. } => "nodes_unavailable",
            Self::BudgetSpent { .. } => "budget_exhausted",
            Self::Draining(_) => "nodes_draining",
            Self::UpstreamFailed(_) => "upstream_error",
            Self::UpstreamTimeout(_) => "upstream_timeout",
            Self::AdminUnauthorized => "authentication_error",
            Self::NotFound(_) => "not_found_error",
            Self::Conflict(_) => "conflict",
            Self::ReloadRefused(_) => "reload_failed",
            Self::ShuttingDown => "shutting_down",
            Self::Internal(_) => "internal_error",
        }
    }

    /// Seconds a client should wait before trying again, when that is known.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            Self::AtCapacity => Some(1),
            Self::Unhealthy { retry_after_s, .. }
            | Self::Paused { retry_after_s, .. }
            | Self::BudgetSpent { retry_after_s, .. } => Some(*retry_after_s),
            Self::RateLimited(r) => r.retry_after_ms.map(|ms| ms.div_ceil(1000).max(1)),
            _ => None,
        }
    }

    /// The message a client gets: the error's own, except for an internal
    /// error, whose detail is for the log only.
    pub fn client_message(&self, request_id: u64) -> String {
        match self {
            Self::Internal(_) => format!(
                "internal error in the edge router; its log has the details under request id {}",
                request_id_text(request_id)
            ),
            other => other.to_string(),
        }
    }

    /// The response to request `request_id` (0: none): status, headers
    /// (content type, `x-request-id`, `retry-after` and `www-authenticate`
    /// where they apply, then `extra`) and JSON body. Every error becomes a
    /// response here and nowhere else.
    pub fn to_response(&self, request_id: u64, extra: Vec<Header>) -> (u16, Vec<Header>, Vec<u8>) {
        let body = serde_json::json!({"error": {"type": self.kind(), "message": self.client_message(request_id)}});
        let mut headers = vec![Header::new("content-type", "application/json")];
        if request_id != 0 {
            headers.push(Header::new(headers::REQUEST_ID, &request_id_text(request_id)));
        }
        if let Some(seconds) = self.retry_after_s() {
            headers.push(Header::new("retry-after", &seconds.to_string()));
        }
        if let Self::RateLimited(crate::limits::Refusal { retry_after_ms: Some(ms), .. }) = self {
            // OpenAI's SDKs read the exact wait from here first.
            headers.push(Header::new("retry-after-ms", &ms.to_string()));
        }
        if matches!(self, Self::Unauthorized | Self::KeyRefused(_) | Self::AdminUnauthorized) {
            headers.push(Header::new("www-authenticate", "Bearer"));
        }
        headers.extend(extra);
        (self.status(), headers, serde_json::to_vec(&body).unwrap_or_default())
    }
}

/// Every `error.type` a [`RouterError`] can have ([`RouterError::kind`]).
pub const KINDS: [&str; 22] = [
    "geofence_denied",
    "authentication_error",
    "permission_denied",
    "invalid_request_error",
    "request_too_large",
    "personal_data",
    "request_timeout",
    "not_found_error",
    "residency_unavailable",
    "no_node_available",
    "nodes_unhealthy",
    "capacity_exceeded",
    "rate_limited",
    "nodes_unavailable",
    "budget_exhausted",
    "nodes_draining",
    "upstream_error",
    "upstream_timeout",
    "conflict",
    "reload_failed",
    "shutting_down",
    "internal_error",
];

/// The `error.type` of an error body of the router's shape
/// (`{"error": {"type": ...}}`, [`RouterError::to_response`]), as one of
/// [`KINDS`]; `None` for any other body.
pub fn kind_of_body(body: &[u8]) -> Option<&'static str> {
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        error: Inner<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Inner<'a> {
        #[serde(borrow, rename = "type")]
        kind: std::borrow::Cow<'a, str>,
    }
    let body: Body<'_> = serde_json::from_slice(body).ok()?;
    KINDS.iter().copied().find(|k| *k == body.error.kind)
}

/// Why the router refused a request, for metrics and logs: `geofence`,
/// `residency`, `auth`, `address`, `budget`, `capacity`, `rate` or `pii`, and otherwise the
/// error's kind itself (one of [`KINDS`], so the set of values is closed).
pub fn refusal_reason(kind: &'static str) -> &'static str {
    match kind {
        "geofence_denied" => "geofence",
        "residency_unavailable" => "residency",
        "authentication_error" => "auth",
        "permission_denied" => "address",
        "budget_exhausted" => "budget",
        "capacity_exceeded" => "capacity",
        "rate_limited" => "rate",
        "personal_data" => "pii",
        other => other,
    }
}

/// Names of the explanation headers.
pub mod headers {
    /// The node that served the response, `-` when the router answered itself.
    pub const NODE: &str = "x-edge-node";
    /// The rule (or `strategy:<name>`) that chose it.
    pub const RULE: &str = "x-edge-rule";
    /// Nodes tried.
    pub const ATTEMPTS: &str = "x-edge-attempts";
    /// The client's country as the router saw it, `XX` when unknown.
    pub const COUNTRY: &str = "x-edge-country";
    /// The model a request was rewritten to.
    pub const MODEL: &str = "x-edge-model";
    /// What the edge cache did: `HIT`, `MISS`, `STALE`, `BYPASS` or `REVALIDATED`.
    pub const CACHE: &str = "x-edge-cache";
    /// Tokens a cached answer saved.
    pub const TOKENS_SAVED: &str = "x-edge-cache-tokens-saved";
    /// `true` when the node was used although its breaker was open (every
    /// node the request could use was unhealthy: `health_check.panic_threshold`).
    pub const PANIC: &str = "x-edge-panic";
    /// The request's id, on errors: what the log names it by.
    pub const REQUEST_ID: &str = "x-request-id";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_16_lower_case_hex_digits() {
        for id in [0, 1, 0xab, 0x0123_4567_89ab_cdef, u64::MAX] {
            assert_eq!(request_id_text(id), format!("{id:016x}"));
        }
    }

    fn response(e: &RouterError, id: u64) -> (u16, Vec<Header>, serde_json::Value) {
        let (status, headers, body) = e.to_response(id, Vec::new());
        (status, headers, serde_json::from_slice(&body).expect("a JSON body"))
    }

    #[test]
    fn an_internal_errors_detail_never_reaches_the_client_its_request_id_does() {
        let (status, headers, body) = response(&RouterError::Internal("wasm trap at 0x1f in er_handle".into()), 0xabc);
        assert_eq!(status, 500);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.contains("wasm") && message.contains("0000000000000abc"), "{message}");
        assert_eq!(body["error"]["type"], "internal_error");
        assert!(headers.contains(&Header::new("x-request-id", "0000000000000abc")));
    }

    #[test]
    fn every_kind_is_listed_and_read_back_from_its_body() {
        let errors = [
            RouterError::Geofenced("x".into()),
            RouterError::Unauthorized,
            RouterError::BadRequest("x".into()),
            RouterError::PayloadTooLarge { limit: 1 },
            RouterError::PersonalData("email: 1".into()),
            RouterError::ClientTimeout("x".into()),
            RouterError::NoRoute { method: "GET".into(), path: "/".into() },
            RouterError::ResidencyUnavailable { jurisdiction: "EU".into() },
            RouterError::NoNode("x".into()),
            RouterError::Unhealthy { nodes: "a".into(), retry_after_s: 1 },
            RouterError::AtCapacity,
            RouterError::Paused { nodes: "a".into(), retry_after_s: 1, status: 429 },
            RouterError::Paused { nodes: "a".into(), retry_after_s: 1, status: 503 },
            RouterError::BudgetSpent { nodes: "a".into(), retry_after_s: 1 },
            RouterError::Draining("a".into()),
            RouterError::UpstreamFailed("x".into()),
            RouterError::UpstreamTimeout("x".into()),
            RouterError::AdminUnauthorized,
            RouterError::NotFound("x".into()),
            RouterError::Conflict("x".into()),
            RouterError::ReloadRefused("x".into()),
            RouterError::ShuttingDown,
            RouterError::Internal("x".into()),
        ];
        for e in &errors {
            let (_, _, body) = e.to_response(1, Vec::new());
            assert_eq!(kind_of_body(&body), Some(e.kind()), "{e:?}");
        }
        assert_eq!(refusal_reason(RouterError::Geofenced("x".into()).kind()), "geofence");
        assert_eq!(refusal_reason(RouterError::AtCapacity.kind()), "capacity");
        assert_eq!(kind_of_body(br#"{"error":{"type":"made_up"}}"#), None);
        assert_eq!(kind_of_body(b"not json"), None);
    }

    #[test]
    fn every_error_has_its_status_type_and_headers_from_one_place() {
        let (status, headers, body) = response(&RouterError::AdminUnauthorized, 1);
        assert_eq!((status, body["error"]["type"].as_str()), (401, Some("authentication_error")));
        assert!(headers.contains(&Header::new("www-authenticate", "Bearer")));
        let (status, headers, _) = response(&RouterError::AtCapacity, 0);
        assert_eq!(status, 429);
        assert!(headers.contains(&Header::new("retry-after", "1")));
        assert!(!headers.iter().any(|h| h.name == "x-request-id"), "no request, no id");
        let (status, _, body) = response(&RouterError::NotFound("no node has the id `x`".into()), 1);
        assert_eq!((status, body["error"]["message"].as_str()), (404, Some("no node has the id `x`")));
    }
}
