//! What a host tells the router.

use serde::{Deserialize, Serialize};

use super::{Header, RequestBody};

/// Why an attempt failed before a response head arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// The connection (or TLS) could not be established; the origin saw nothing.
    Connect,
    /// No response head within the node's `first_byte` limit.
    Timeout,
    /// The connection broke after the request was sent.
    Reset,
}

impl Failure {
    /// A short description for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Connect => "connection failed",
            Self::Timeout => "timed out before responding",
            Self::Reset => "connection reset",
        }
    }
}

/// Tokens an origin reported using for one response (its `usage` object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

impl Usage {
    /// Prompt plus completion.
    pub fn total(self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// A JWT bearer token as the host read it (see [`crate::jwt::authenticate`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BearerToken {
    /// A valid token, for this tenant and (if it names one) tier.
    Valid {
        /// Tenant.
        tenant: String,
        /// Tier.
        tier: Option<String>,
    },
    /// A token refused, and why (a message for the client).
    Refused(String),
}

/// [`BearerToken`] borrowed, as [`super::RequestRef`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BearerTokenRef<'a> {
    /// See [`BearerToken::Valid`].
    Valid {
        /// Tenant.
        tenant: &'a str,
        /// Tier.
        tier: Option<&'a str>,
    },
    /// See [`BearerToken::Refused`].
    Refused(&'a str),
}

impl BearerToken {
    /// The token, borrowed.
    pub fn as_ref(&self) -> BearerTokenRef<'_> {
        match self {
            Self::Valid { tenant, tier } => BearerTokenRef::Valid { tenant, tier: tier.as_deref() },
            Self::Refused(why) => BearerTokenRef::Refused(why),
        }
    }
}

/// An operator's change to the running router (from the admin API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Control {
    /// Changes a node's `weight` until the next change or restart.
    SetWeight {
        /// Node id.
        node: String,
        /// The new weight, zero or more.
        weight: f64,
    },
    /// Sends the node no new requests; those in flight go on.
    Drain {
        /// Node id.
        node: String,
    },
    /// Ends a drain.
    Undrain {
        /// Node id.
        node: String,
    },
}

/// A node's settled spending on a budget day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spend {
    /// Node id.
    pub node: String,
    /// Budget day number (see `origin_fallback::BudgetDay`).
    pub day: u32,
    /// Cost settled that day.
    pub spent: f64,
}

impl Spend {
    /// Whether `spent` on `day` is later news than this record: a later day,
    /// or more of the same day (an exchange finishing on an older router
    /// reports less). Hosts keep the latest across config changes.
    pub fn superseded_by(&self, day: u32, spent: f64) -> bool {
        day > self.day || (day == self.day && spent > self.spent)
    }
}

/// A node's settled spending as a [`Reply`] reports it: the node by its
/// place in the config's list of nodes ([`Configured::Ok`] lists their ids
/// once), so that no id crosses the ABI with every metered request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spent {
    /// Index of the node in the config's `nodes`.
    pub node: u32,
    /// Budget day number (see `origin_fallback::BudgetDay`).
    pub day: u32,
    /// Cost settled that day.
    pub spent: f64,
}

/// State the host keeps for the router across a module reload: spending
/// (so a reload does not reset daily budgets) and operators' changes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Restore {
    /// The latest spending of each node.
    pub spent: Vec<Spend>,
    /// Weights set at run time.
    pub weights: Vec<(String, f64)>,
    /// Nodes being drained.
    pub draining: Vec<String>,
}

/// An input to the router.
// `Request` is the large one and the common one: an event is made per
// request and encoded at once, so boxing its facts would add an allocation
// to every request to save stack space nothing keeps.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A client request arrived.
    Request {
        /// Host-chosen id, unique among requests in flight.
        id: u64,
        /// Method, e.g. `POST`.
        method: String,
        /// Path and query.
        target: String,
        /// Client headers.
        headers: Vec<Header>,
        /// ISO country from a trusted source, if any.
        country: Option<String>,
        /// The client's IP address, as the host believes it (see
        /// [`crate::client`]), in text; read for keys' and tenants' `allow_ips`.
        client: Option<String>,
        /// The body.
        body: RequestBody,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
        /// A uniformly random value for weighted choices.
        random: u64,
        /// SHA-256 of the client key the headers present (the one
        /// [`crate::auth::presented_key`] finds), when the host hashed it;
        /// with `None` the router hashes it. A native host has SHA-256 in
        /// hardware, the module only in software. Encoded as a byte string:
        /// postcard writes an array element by element, and the module
        /// would read it back with 32 calls.
        #[serde(with = "serde_bytes")]
        key_sha256: Option<[u8; 32]>,
        /// What [`crate::facts::parse_body`] read from a buffered body of
        /// one of the three API endpoints, when the host read it; with
        /// `None` the router parses the body itself (and explains a body
        /// it cannot read). A native host parses faster than the module.
        body_facts: Option<crate::facts::BodyFacts>,
        /// What the host made of a JWT bearer token (`auth.jwt`, see
        /// [`crate::jwt`]): the caller it names, or why it was refused.
        /// With one, the router looks for no key.
        token: Option<BearerToken>,
        /// What the fleet's shared store said of the request's rate limits,
        /// when the host asked one (`state.redis`); `None`: the router
        /// counts alone.
        fleet: Option<super::Fleet>,
    },
    /// The origin of the current attempt sent its response head.
    ResponseHead {
        /// Request id.
        id: u64,
        /// Status code.
        status: u16,
        /// The `retry-after` of a 429 or 503, in seconds (an HTTP date is
        /// converted by the host), if it sent one.
        retry_after_s: Option<u32>,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// The current attempt failed before a response head.
    OriginFailed {
        /// Request id.
        id: u64,
        /// How.
        failure: Failure,
        /// How far the request got: whether it may go to another node is
        /// decided from this (`origin_fallback::may_retry`).
        retry: origin_fallback::RetryType,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// The exchange ended: the body was delivered, or the client went away.
    Finished {
        /// Request id.
        id: u64,
        /// The `usage` the response body reported, for a `Forward` with `meter` set.
        usage: Option<Usage>,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// The current attempt's response body broke off after its head was
    /// delivered: the node stalled (`Timeout`) or reset (`Reset`). Nothing
    /// can be retried any more; the router counts it against the node's
    /// health. The host needs no answer. `Finished` still follows.
    BodyFailed {
        /// Exchange id.
        id: u64,
        /// How it broke.
        failure: Failure,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// An active health probe of a node came back: `ok` unless it failed to
    /// connect, timed out, or answered with a status that counts as a node
    /// failure (`origin_fallback::counts_as_failure`). No answer needed.
    Probed {
        /// Node id.
        node: String,
        /// Whether the node looked healthy.
        ok: bool,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// Time passes.
    Tick {
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// An operator's change. Answered with `Respond`: 200 and the node's new
    /// state as JSON, or 404 / 400 with an error.
    Control {
        /// The change.
        command: Control,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// Asks for the status report. Answered with `Respond`: 200 and JSON
    /// (see `docs/admin.md`).
    Status {
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// The request's `Lookup` found the answer in the cache, which the host
    /// served; the exchange is over. No answer needed.
    CacheHit {
        /// Request id.
        id: u64,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// The request's `Lookup` found nothing (or another request's fill of
    /// the same key failed). Answered with the next action: a `Forward`.
    CacheMiss {
        /// Request id.
        id: u64,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// Hands back the state a previous instance reported (see [`Restore`]).
    /// Sent right after configuring a fresh instance. No answer needed.
    Restore(Restore),
    /// A ledger shared by many routers (the Workers build's `BudgetLedger`)
    /// refused the reservation of the current attempt (see
    /// `Router::reservation`): its node has spent `spent` today across all
    /// of them. The attempt is not made; answered with the next action, as
    /// for `OriginFailed`, but the node's health is not charged.
    BudgetRefused {
        /// Request id.
        id: u64,
        /// The node's spending today, as the ledger knows it.
        spent: f64,
        /// Milliseconds since the Unix epoch.
        now_ms: u64,
    },
}

impl Event {
    /// The request the event is about, if it is about one (0 otherwise).
    pub fn request_id(&self) -> u64 {
        match self {
            Self::Request { id, .. }
            | Self::ResponseHead { id, .. }
            | Self::OriginFailed { id, .. }
            | Self::Finished { id, .. }
            | Self::BodyFailed { id, .. }
            | Self::CacheHit { id, .. }
            | Self::CacheMiss { id, .. }
            | Self::BudgetRefused { id, .. } => *id,
            Self::Probed { .. } | Self::Tick { .. } | Self::Control { .. } | Self::Status { .. } | Self::Restore(_) => {
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_days_and_more_of_the_same_day_supersede_a_kept_spend() {
        let kept = Spend { node: "a".into(), day: 10, spent: 2.0 };
        assert!(kept.superseded_by(11, 0.0), "a later day");
        assert!(kept.superseded_by(10, 2.5), "more of the same day");
        assert!(!kept.superseded_by(10, 1.5), "less of the same day: an older router's report");
        assert!(!kept.superseded_by(9, 5.0), "an earlier day");
        assert!(!kept.superseded_by(10, 2.0), "the same news");
    }
}
