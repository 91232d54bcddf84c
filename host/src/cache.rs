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

use edge_cache::store::{MemoryStore, Store, StoreStats, Weigh};
use tokio::sync::watch;

use crate::lock;

pub use exchange::entry::Cached;

struct Weighed(Arc<Cached>);

impl Weigh for Weighed {
    fn weight(&self) -> usize {
        let c = &self.0;
        let e = &c.entry;
        // A header map's slots (name, value, links: about 100 bytes each) and
        // index, plus each value's own allocation (and a custom name's),
        // rounded as allocators do.
        let slots = e.headers.capacity() * 112;
        let alloc = |n: usize| n.next_multiple_of(16) + 16;
        let headers: usize =
            slots + e.headers.iter().map(|(n, v)| alloc(n.as_str().len()) + alloc(v.len())).sum::<usize>();
        let vary = e
            .http
            .as_ref()
            .map_or(0, |m| m.vary.iter().map(|(n, v)| n.len() + v.as_ref().map_or(0, String::len) + 48).sum());
        // The Arc's counts, then the entry itself.
        16 + std::mem::size_of::<Cached>()
            + c.body.len()
            + headers
            + vary
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
    shards: Vec<Mutex<MemoryStore<Weighed>>>,
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

    fn shard(&self, key: &str) -> &Mutex<MemoryStore<Weighed>> {
        let i = (self.hasher.hash_one(key) % self.shards.len() as u64) as usize;
        &self.shards[i]
    }

    /// The entry under `key` unless it expired by `now_ms` (an AI answer
    /// past its TTL); an expired one is dropped.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<Arc<Cached>> {
        let mut shard = lock(self.shard(key));
        let cached = shard.get(key).map(|c| c.0.clone())?;
        if now_ms >= cached.entry.expires_ms {
            shard.remove(key);
            return None;
        }
        Some(cached)
    }

    /// Stores `cached` under `key` (a body over `max_entry` is not stored).
    pub fn put(&self, key: String, cached: Cached) {
        self.put_shared(key, Arc::new(cached));
    }

    /// Stores an entry that is also being served.
    pub fn put_shared(&self, key: String, cached: Arc<Cached>) {
        if cached.body.len() <= self.max_entry {
            lock(self.shard(&key)).put(key, Weighed(cached));
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
    pub fn purge(&self, doomed: &dyn Fn(&str, &Cached) -> bool) -> usize {
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
