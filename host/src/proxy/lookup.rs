//! The edge cache on the request path: lookups with single flight (one
//! request fills a key while the others wait for it), and answers from
//! stored entries, which the exchange shapes (`Age`, `304`, ranges).

use std::sync::Arc;

use edge_cache::http::{Lookup, Revalidate};
use edge_router::wire::{CacheLookup, CacheStatus, Explain};
use exchange::entry::verdict;
use http::Response;

use super::{Shared, now_ms};
use crate::cache::{Cached, Fill, FillGuard};
use crate::origins::ProxyBody;

/// What the cache had for a request.
pub(super) enum Looked {
    /// A fresh answer: serve it.
    Hit(Response<ProxyBody>),
    /// A stale answer to serve now and revalidate in the background.
    Stale { response: Response<ProxyBody>, entry: Arc<Cached> },
    /// A stale entry to revalidate before use; `leader` if this request fills the key.
    Revalidate { entry: Arc<Cached>, if_error: bool, leader: Option<FillGuard> },
    /// Nothing: go to the origin, filling the key if `Some`.
    Miss(Option<FillGuard>),
}

/// Looks a request's answer up in the cache. On a miss this request leads
/// the fill of its key, or waits for the fill under way and looks again
/// (going to the origin on its own, without filling, if that fill failed).
pub(super) async fn look_up(shared: &Arc<Shared>, lookup: &CacheLookup, request: &http::request::Parts) -> Looked {
    let mut waited = false;
    loop {
        let now = now_ms();
        if let Some(cached) = shared.cache.get(&lookup.key, now) {
            match verdict(&cached.entry, lookup, &request.headers, now) {
                Lookup::Fresh { age_s } => {
                    return Looked::Hit(serve(&cached, &lookup.explain, CacheStatus::Hit, age_s, request));
                }
                Lookup::Stale { age_s, revalidate: Revalidate::InBackground } => {
                    let response = serve(&cached, &lookup.explain, CacheStatus::Stale, age_s, request);
                    return Looked::Stale { response, entry: cached };
                }
                Lookup::Stale { revalidate: Revalidate::First { if_error }, .. } => {
                    let leader = match shared.cache.fill(&lookup.key) {
                        Fill::Leader(guard) => Some(guard),
                        Fill::Follower(_) => None,
                    };
                    return Looked::Revalidate { entry: cached, if_error, leader };
                }
                Lookup::Miss => {}
            }
        }
        if waited {
            return Looked::Miss(None);
        }
        match shared.cache.fill(&lookup.key) {
            Fill::Leader(guard) => return Looked::Miss(Some(guard)),
            Fill::Follower(mut done) => {
                // Returns when the leader's guard is dropped: stored or failed.
                let _ = done.changed().await;
                waited = true;
            }
        }
    }
}

/// An answer from the cache for `request`, `age_s` old, explained by
/// `explain` with `cache` as its `x-edge-cache`.
pub(super) fn serve(
    cached: &Cached,
    explain: &Explain,
    cache: CacheStatus,
    age_s: u64,
    request: &http::request::Parts,
) -> Response<ProxyBody> {
    super::ingress::own(exchange::answer::serve(cached, explain, cache, age_s, request))
}
