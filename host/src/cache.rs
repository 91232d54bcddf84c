//! The edge cache's bytes: stored answers in memory, sharded by key, and
//! single flight for concurrent misses of the same key.
//!
//! The router module decides what is cacheable and under which key
//! (`Action::Lookup`, `Forward::fill`); this holds the entries. The budget
//! (`cache.memory`) is split evenly between shards, each an LRU
//! `edge_cache::store::MemoryStore` behind its own lock.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use edge_cache::store::{MemoryStore, Store, StoreStats, Weigh};
use http::{HeaderMap, StatusCode};
use tokio::sync::watch;

use crate::lock;

/// An answer kept in the cache.
#[derive(Debug)]
pub struct Entry {
    /// Status (always 200 for AI answers).
    pub status: StatusCode,
    /// The origin's response headers, without hop-by-hop and `x-edge-*` ones.
    pub headers: HeaderMap,
    /// The whole body: JSON, or an SSE stream as it passed.
    pub body: Bytes,
    /// The node that answered.
    pub node: String,
    /// The model the request was rewritten to, if it was.
    pub model: Option<String>,
    /// When it was stored, in milliseconds since the epoch.
    pub stored_ms: u64,
    /// When it stops being served.
    pub expires_ms: u64,
    /// Tokens the answer cost (its usage, or the request's estimate): what a hit saves.
    pub tokens: u64,
    /// For a `GET` of a passthrough path: what RFC 9111 needs to judge it
    /// (`expires_ms` is then never reached; freshness is the RFC's).
    pub meta: Option<edge_cache::Stored>,
}

struct Cached(Arc<Entry>);

impl Weigh for Cached {
    fn weight(&self) -> usize {
        let e = &self.0;
        // A header map's slots (name, value, links: about 100 bytes each) and
        // index, plus each value's own allocation (and a custom name's),
        // rounded as allocators do.
        let slots = e.headers.capacity() * 112;
        let alloc = |n: usize| n.next_multiple_of(16) + 16;
        let headers: usize =
            slots + e.headers.iter().map(|(n, v)| alloc(n.as_str().len()) + alloc(v.len())).sum::<usize>();
        let meta = e.meta.as_ref().map_or(0, |m| m.headers.iter().map(|(n, v)| n.len() + v.len() + 48).sum());
        // The Arc's counts, then the entry itself.
        16 + std::mem::size_of::<Entry>()
            + e.body.len()
            + headers
            + meta
            + e.node.len()
            + e.model.as_ref().map_or(0, String::len)
    }
}

/// Share of `cache.memory` the entries may count: the rest is left for what
/// no per-entry estimate sees (the allocator's free lists and partly used
/// pages under churn).
const COUNTED_SHARE: f64 = 0.9;

/// The largest shard count; small budgets get fewer, so an entry can still be large.
const MAX_SHARDS: usize = 16;
/// The least budget per shard.
const MIN_SHARD_BYTES: u64 = 4 << 20;

/// The cache store of an edge box.
pub struct EdgeCache {
    shards: Vec<Mutex<MemoryStore<Cached>>>,
    hasher: RandomState,
    /// Keys being filled, each with a channel closed when the fill ends.
    filling: Mutex<HashMap<String, watch::Receiver<()>>>,
    /// Bodies larger than this are not stored.
    max_entry: usize,
}

/// Whether a caller fills a key or waits for another's fill.
pub enum Fill {
    /// This caller fills it; others wait until the guard is dropped.
    Leader(FillGuard),
    /// Another request is filling it; `changed()` returns when that ends.
    Follower(watch::Receiver<()>),
}

/// Held by the request filling a key; dropping it (stored or failed) wakes the waiters.
pub struct FillGuard {
    cache: Arc<EdgeCache>,
    key: String,
    _done: watch::Sender<()>,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        lock(&self.cache.filling).remove(&self.key);
    }
}

impl EdgeCache {
    /// A cache of at most `budget` bytes.
    pub fn new(budget: u64) -> Self {
        let shards = usize::try_from(budget / MIN_SHARD_BYTES).unwrap_or(MAX_SHARDS).clamp(1, MAX_SHARDS);
        let counted = (budget as f64 * COUNTED_SHARE) as u64;
        let per_shard = usize::try_from(counted / shards as u64).unwrap_or(usize::MAX);
        Self {
            shards: (0..shards).map(|_| Mutex::new(MemoryStore::new(per_shard))).collect(),
            hasher: RandomState::new(),
            filling: Mutex::new(HashMap::new()),
            max_entry: per_shard / 2,
        }
    }

    /// The largest body stored.
    pub fn max_entry(&self) -> usize {
        self.max_entry
    }

    fn shard(&self, key: &str) -> &Mutex<MemoryStore<Cached>> {
        let i = (self.hasher.hash_one(key) % self.shards.len() as u64) as usize;
        &self.shards[i]
    }

    /// The entry under `key` if it is still fresh at `now_ms`; an expired one is dropped.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<Arc<Entry>> {
        let mut shard = lock(self.shard(key));
        let entry = shard.get(key).map(|c| c.0.clone())?;
        if now_ms >= entry.expires_ms {
            shard.remove(key);
            return None;
        }
        Some(entry)
    }

    /// Stores `entry` under `key` (a body over `max_entry` is not stored).
    pub fn put(&self, key: String, entry: Entry) {
        if entry.body.len() <= self.max_entry {
            lock(self.shard(&key)).put(key, Cached(Arc::new(entry)));
        }
    }

    /// Starts filling `key`, or joins the fill already under way.
    pub fn fill(self: &Arc<Self>, key: &str) -> Fill {
        let mut filling = lock(&self.filling);
        if let Some(waiting) = filling.get(key) {
            return Fill::Follower(waiting.clone());
        }
        let (done, waiting) = watch::channel(());
        filling.insert(key.to_string(), waiting);
        Fill::Leader(FillGuard { cache: self.clone(), key: key.to_string(), _done: done })
    }

    /// Drops the entry under `key`.
    pub fn remove(&self, key: &str) {
        lock(self.shard(key)).remove(key);
    }

    /// Drops every entry `doomed` says yes to; how many went.
    pub fn purge(&self, doomed: &dyn Fn(&str, &Entry) -> bool) -> usize {
        self.shards.iter().map(|s| lock(s).retain(&mut |key, c| !doomed(key, &c.0))).sum()
    }

    /// Counters summed over the shards.
    pub fn stats(&self) -> StoreStats {
        self.shards.iter().map(|s| lock(s).stats()).fold(StoreStats::default(), |a, b| StoreStats {
            hits: a.hits + b.hits,
            misses: a.misses + b.misses,
            evictions: a.evictions + b.evictions,
            entries: a.entries + b.entries,
            bytes: a.bytes + b.bytes,
            capacity: a.capacity + b.capacity,
        })
    }
}
