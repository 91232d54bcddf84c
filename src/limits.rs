//! Rate limits of keys and tenants, with OpenAI's semantics.
//!
//! Each limit is a bucket holding a minute's allowance that refills
//! continuously (a `requests_per_minute` of 60 gives back one request a
//! second). A request takes one request and its estimated tokens from every
//! bucket of its key and of its tenant, or from none: if one would be
//! overdrawn it is refused with 429, `retry-after` saying when it would
//! fit. When the answer is over, its tokens are settled at what its `usage`
//! reported: the difference goes back to the buckets, or is taken from them
//! (which may leave them in debt). A cache hit and a request no node served
//! used no tokens.
//!
//! Every answer to a limited caller carries OpenAI's headers: the limit,
//! what remains and when the bucket is full again
//! (`x-ratelimit-{limit,remaining,reset}-{requests,tokens}`), of the
//! tighter of the key's and the tenant's buckets.

use std::collections::HashMap;
use std::sync::Arc;

use crate::wire::{RateLimit, Window};

/// The limits of one key or tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute.
    pub tokens_per_minute: Option<u64>,
}

impl Rates {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.requests_per_minute.is_some() || self.tokens_per_minute.is_some()
    }

    /// `percent` of these limits (at least 1 where one is set): what one box
    /// of a fleet may use alone while the store they share is unreachable.
    pub fn share(self, percent: u8) -> Self {
        let part = |l: Option<u64>| l.map(|l| (l.saturating_mul(u64::from(percent)) / 100).max(1));
        Self { requests_per_minute: part(self.requests_per_minute), tokens_per_minute: part(self.tokens_per_minute) }
    }
}

/// A limit's window, from what is `available` of it (negative: in debt).
pub fn window_of(available: f64, limit: u64) -> Window {
    Window { limit, remaining: available.max(0.0).floor() as u64, reset_ms: wait_ms(available, limit as f64, limit) }
}

/// Milliseconds until `amount` is available of `limit`, `available` now.
pub fn wait_ms(available: f64, amount: f64, limit: u64) -> u64 {
    let short = amount - available;
    if short <= 0.0 || limit == 0 { 0 } else { (short * MINUTE_MS / limit as f64).ceil() as u64 }
}

/// Whose limits: a key (by its digest, which survives reloads) or a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A client key.
    Key([u8; 32]),
    /// A tenant.
    Tenant(Arc<str>),
}

impl Scope {
    /// The scope's name in a store shared by many routers: `key:<sha256 hex>`
    /// or `tenant:<name>` (never the key itself).
    pub fn name(&self) -> String {
        match self {
            Self::Key(digest) => {
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                format!("key:{hex}")
            }
            Self::Tenant(t) => format!("tenant:{t}"),
        }
    }
}

/// A limited scope of a request: whose, its limits, and how a message names it.
#[derive(Debug, Clone)]
pub struct Limited {
    /// Whose.
    pub scope: Scope,
    /// Its limits.
    pub rates: Rates,
    /// `key ci-bot`, `tenant acme`.
    pub label: Arc<str>,
}

const MINUTE_MS: f64 = 60_000.0;

/// One continuously refilling allowance.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// What was available at `at_ms` (negative: in debt).
    level: f64,
    at_ms: u64,
}

impl Bucket {
    fn full(limit: u64, now_ms: u64) -> Self {
        Self { level: limit as f64, at_ms: now_ms }
    }

    /// What is available at `now_ms`, at most `limit`.
    fn available(&self, limit: u64, now_ms: u64) -> f64 {
        let refilled = now_ms.saturating_sub(self.at_ms) as f64 * limit as f64 / MINUTE_MS;
        (self.level + refilled).min(limit as f64)
    }

    /// Takes `amount` (negative: gives it back).
    fn take(&mut self, amount: f64, limit: u64, now_ms: u64) {
        self.level = (self.available(limit, now_ms) - amount).min(limit as f64);
        self.at_ms = now_ms.max(self.at_ms);
    }

    /// Milliseconds until `amount` is available.
    fn wait_ms(&self, amount: f64, limit: u64, now_ms: u64) -> u64 {
        wait_ms(self.available(limit, now_ms), amount, limit)
    }

    fn window(&self, limit: u64, now_ms: u64) -> Window {
        window_of(self.available(limit, now_ms), limit)
    }
}

/// A scope's buckets.
#[derive(Debug, Clone, Copy, Default)]
struct Buckets {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `key ci-bot`, `tenant acme`.
    pub label: Arc<str>,
    /// The limit overdrawn: requests (true) or tokens.
    pub requests: bool,
    /// Its size per minute.
    pub limit: u64,
    /// What the request asked for.
    pub requested: u64,
    /// When it would fit; `None` when it never will (more tokens than a minute's allowance).
    pub retry_after_ms: Option<u64>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, unit) = if self.requests { ("requests", "RPM") } else { ("tokens", "TPM") };
        match self.retry_after_ms {
            Some(ms) => write!(
                f,
                "rate limit of {} reached for {what} per minute ({unit}): limit {}, requested {}; try again in {}",
                self.label,
                self.limit,
                self.requested,
                duration_text(ms)
            ),
            None => write!(
                f,
                "request too large for {} {what} per minute ({unit}): limit {}, requested {} (an estimate of the prompt and `max_tokens`); send a smaller request",
                self.label, self.limit, self.requested
            ),
        }
    }
}

/// The buckets of every limited key and tenant.
#[derive(Debug, Default)]
pub struct Limiter {
    buckets: HashMap<Scope, Buckets>,
}

impl Limiter {
    /// Takes one request and `tokens` from every scope of `limited`, or
    /// nothing: the refusal of the first scope that would be overdrawn.
    /// Either way, the headers of the tightest scopes.
    pub fn admit(&mut self, limited: &[Limited], tokens: u64, now_ms: u64) -> (Result<(), Refusal>, RateLimit) {
        let mut refusal = None;
        for l in limited {
            let b = self.buckets.entry(l.scope.clone()).or_default();
            for (requests, limit, amount) in
                [(true, l.rates.requests_per_minute, 1), (false, l.rates.tokens_per_minute, tokens)]
            {
                let Some(limit) = limit else { continue };
                let bucket = if requests { &mut b.requests } else { &mut b.tokens };
                let bucket = bucket.get_or_insert_with(|| Bucket::full(limit, now_ms));
                if refusal.is_none() && bucket.available(limit, now_ms) < amount as f64 {
                    let retry_after_ms = (amount <= limit).then(|| bucket.wait_ms(amount as f64, limit, now_ms));
                    refusal =
                        Some(Refusal { label: l.label.clone(), requests, limit, requested: amount, retry_after_ms });
                }
            }
        }
        if refusal.is_none() {
            for l in limited {
                self.take(l, 1.0, tokens as f64, now_ms);
            }
        }
        (refusal.map_or(Ok(()), Err), self.headers(limited, now_ms))
    }

    /// Settles a request admitted with `reserved` tokens at `used`.
    pub fn settle(&mut self, limited: &[Limited], reserved: u64, used: u64, now_ms: u64) {
        if reserved != used {
            for l in limited {
                self.take(l, 0.0, used as f64 - reserved as f64, now_ms);
            }
        }
    }

    /// Gives back all a request admitted with `tokens` took: a request that
    /// was refused after all, for another reason.
    pub fn refund(&mut self, limited: &[Limited], tokens: u64, now_ms: u64) {
        for l in limited {
            self.take(l, -1.0, -(tokens as f64), now_ms);
        }
    }

    fn take(&mut self, l: &Limited, requests: f64, tokens: f64, now_ms: u64) {
        let b = self.buckets.entry(l.scope.clone()).or_default();
        for (bucket, limit, amount) in [
            (&mut b.requests, l.rates.requests_per_minute, requests),
            (&mut b.tokens, l.rates.tokens_per_minute, tokens),
        ] {
            if let Some(limit) = limit {
                bucket.get_or_insert_with(|| Bucket::full(limit, now_ms)).take(amount, limit, now_ms);
            }
        }
    }

    /// The headers of `limited`: per dimension, the scope with the least remaining.
    fn headers(&self, limited: &[Limited], now_ms: u64) -> RateLimit {
        let windows = limited.iter().flat_map(|l| {
            let b = self.buckets.get(&l.scope).copied().unwrap_or_default();
            [(true, b.requests, l.rates.requests_per_minute), (false, b.tokens, l.rates.tokens_per_minute)]
                .into_iter()
                .filter_map(move |(requests, bucket, limit)| Some((requests, bucket?.window(limit?, now_ms))))
        });
        tightest(windows)
    }

    /// Keeps only the buckets of scopes `keep` names (after a reload).
    pub fn retain(&mut self, keep: impl Fn(&Scope) -> bool) {
        self.buckets.retain(|s, _| keep(s));
    }
}

/// The headers of several scopes' windows (`true`: a requests window):
/// per dimension, the one with the least remaining.
pub fn tightest(windows: impl IntoIterator<Item = (bool, Window)>) -> RateLimit {
    let mut out = RateLimit::default();
    for (requests, w) in windows {
        let slot = if requests { &mut out.requests } else { &mut out.tokens };
        if slot.is_none_or(|s| w.remaining < s.remaining) {
            *slot = Some(w);
        }
    }
    out
}

/// A duration as OpenAI writes `x-ratelimit-reset-*`: `20ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`.
pub fn duration_text(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let seconds =
        if frac == 0 { format!("{s}s") } else { format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0')) };
    match (h, m) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(name: &str, rpm: Option<u64>, tpm: Option<u64>) -> Limited {
        Limited {
            scope: Scope::Tenant(name.into()),
            rates: Rates { requests_per_minute: rpm, tokens_per_minute: tpm },
            label: format!("tenant {name}").into(),
        }
    }

    #[test]
    fn a_minute_of_requests_then_one_more_each_refill() {
        let mut l = Limiter::default();
        let acme = [scope("acme", Some(60), None)];
        for i in 0..60 {
            let (ok, headers) = l.admit(&acme, 0, 1_000);
            assert!(ok.is_ok(), "request {i}");
            assert_eq!(headers.requests.unwrap().remaining, 59 - i);
        }
        let (refused, headers) = l.admit(&acme, 0, 1_000);
        let refused = refused.unwrap_err();
        assert_eq!((refused.requests, refused.limit, refused.retry_after_ms), (true, 60, Some(1000)));
        assert_eq!(headers.requests.unwrap(), Window { limit: 60, remaining: 0, reset_ms: 60_000 });
        // One request a second comes back.
        assert!(l.admit(&acme, 0, 2_000).0.is_ok());
        assert!(l.admit(&acme, 0, 2_000).0.is_err());
    }

    #[test]
    fn tokens_are_reserved_then_settled_at_the_usage() {
        let mut l = Limiter::default();
        let acme = [scope("acme", None, Some(1_000))];
        assert!(l.admit(&acme, 800, 0).0.is_ok());
        // 800 reserved: a 300-token estimate does not fit...
        let refused = l.admit(&acme, 300, 0).0.unwrap_err();
        assert_eq!((refused.requests, refused.retry_after_ms), (false, Some(6_000)));
        // ...until the first answer reports it used 100.
        l.settle(&acme, 800, 100, 0);
        let (ok, headers) = l.admit(&acme, 300, 0);
        assert!(ok.is_ok());
        assert_eq!(headers.tokens.unwrap().remaining, 600);
        // Using more than reserved leaves the bucket in debt.
        l.settle(&acme, 300, 2_000, 0);
        assert_eq!(l.admit(&acme, 1, 0).1.tokens.unwrap().remaining, 0);
    }

    #[test]
    fn more_tokens_than_a_minute_holds_never_fit() {
        let mut l = Limiter::default();
        let refused = l.admit(&[scope("acme", None, Some(1_000))], 1_001, 0).0.unwrap_err();
        assert_eq!(refused.retry_after_ms, None);
        assert!(refused.to_string().contains("request too large"), "{refused}");
    }

    #[test]
    fn all_scopes_or_none_and_the_tightest_headers() {
        let mut l = Limiter::default();
        let both = [scope("key", Some(2), None), scope("tenant", Some(10), Some(1_000))];
        assert!(l.admit(&both, 10, 0).0.is_ok());
        let (ok, headers) = l.admit(&both, 10, 0);
        assert!(ok.is_ok());
        assert_eq!(headers.requests.unwrap().remaining, 0, "the key's, the tighter");
        assert_eq!(headers.tokens.unwrap().remaining, 980);
        // The key refuses: the tenant's buckets are not charged.
        let (refused, headers) = l.admit(&both, 10, 0);
        assert_eq!(&*refused.unwrap_err().label, "tenant key");
        assert_eq!(headers.tokens.unwrap().remaining, 980);
        assert!(l.admit(&[both[1].clone()], 10, 0).0.is_ok());
    }

    #[test]
    fn a_scope_is_named_in_a_shared_store_by_digest_or_tenant() {
        let mut digest = [0u8; 32];
        digest[0] = 0xab;
        assert_eq!(Scope::Key(digest).name(), format!("key:ab{}", "0".repeat(62)));
        assert_eq!(Scope::Tenant("acme".into()).name(), "tenant:acme");
    }

    #[test]
    fn reset_durations_are_written_as_openai_writes_them() {
        for (ms, text) in [(20, "20ms"), (1_000, "1s"), (1_500, "1.5s"), (360_000, "6m0s"), (3_723_000, "1h2m3s")] {
            assert_eq!(duration_text(ms), text);
        }
    }
}
