//! Where cached responses live: the [`Store`] trait, and a memory store
//! bounded by bytes with least-recently-used eviction.
//!
//! The memory store counts each entry as its value's [`Weigh::weight`] plus
//! its key twice (the index and the list each hold a copy) plus
//! [`ENTRY_OVERHEAD`] for the bookkeeping, and evicts the least
//! recently used entries until the total is within the budget again. It is
//! single-threaded; a host shares it behind a lock (or several, sharded by
//! key).

use std::collections::HashMap;

/// Bytes counted per entry besides its keys and value: the hash table slot
/// (with the table's spare capacity), the list node, and the allocators'
/// rounding of the two key copies, roughly.
pub const ENTRY_OVERHEAD: usize = 192;

/// A value that knows how many bytes it holds.
pub trait Weigh {
    /// Bytes held, headers and body included.
    fn weight(&self) -> usize;
}

/// What a store has done, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// Entries dropped to make room.
    pub evictions: u64,
    /// Entries now held.
    pub entries: u64,
    /// Bytes now counted.
    pub bytes: u64,
    /// The budget in bytes.
    pub capacity: u64,
}

/// A cache store.
pub trait Store<V> {
    /// The entry under `key`, counting a hit or a miss.
    fn get(&mut self, key: &str) -> Option<&V>;
    /// Stores `value` under `key`, replacing what was there. A value larger
    /// than the whole budget is not stored.
    fn put(&mut self, key: String, value: V);
    /// Drops the entry under `key`; whether there was one.
    fn remove(&mut self, key: &str) -> bool;
    /// Drops every entry `keep` returns false for; how many were dropped.
    fn retain(&mut self, keep: &mut dyn FnMut(&str, &V) -> bool) -> usize;
    /// Counters.
    fn stats(&self) -> StoreStats;
}

const NIL: usize = usize::MAX;

struct Node<V> {
    key: String,
    value: V,
    weight: usize,
    prev: usize,
    next: usize,
}

/// A memory store bounded by bytes, evicting the least recently used entry.
pub struct MemoryStore<V> {
    index: HashMap<String, usize>,
    nodes: Vec<Option<Node<V>>>,
    free: Vec<usize>,
    /// Most recently used.
    head: usize,
    /// Least recently used.
    tail: usize,
    bytes: usize,
    capacity: usize,
    stats: StoreStats,
}

impl<V: Weigh> MemoryStore<V> {
    /// An empty store holding at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            index: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            bytes: 0,
            capacity,
            stats: StoreStats { capacity: capacity as u64, ..StoreStats::default() },
        }
    }

    fn node(&mut self, i: usize) -> &mut Node<V> {
        self.nodes[i].as_mut().unwrap_or_else(|| unreachable!("linked slot {i} is occupied"))
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = {
            let n = self.node(i);
            (n.prev, n.next)
        };
        if prev == NIL {
            self.head = next
        } else {
            self.node(prev).next = next
        }
        if next == NIL { self.tail = prev } else { self.node(next).prev = prev }
    }

    fn push_front(&mut self, i: usize) {
        let head = self.head;
        {
            let n = self.node(i);
            n.prev = NIL;
            n.next = head;
        }
        if head == NIL {
            self.tail = i
        } else {
            self.node(head).prev = i
        }
        self.head = i;
    }

    fn drop_slot(&mut self, i: usize) -> Option<Node<V>> {
        self.unlink(i);
        let node = self.nodes[i].take()?;
        self.free.push(i);
        self.index.remove(&node.key);
        self.bytes -= node.weight;
        Some(node)
    }

    fn sync_stats(&mut self) {
        self.stats.entries = self.index.len() as u64;
        self.stats.bytes = self.bytes as u64;
    }
}

impl<V: Weigh> Store<V> for MemoryStore<V> {
    fn get(&mut self, key: &str) -> Option<&V> {
        let Some(&i) = self.index.get(key) else {
            self.stats.misses += 1;
            return None;
        };
        self.stats.hits += 1;
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
        self.nodes[i].as_ref().map(|n| &n.value)
    }

    fn put(&mut self, key: String, value: V) {
        self.remove(&key);
        let weight = value.weight() + 2 * key.len() + ENTRY_OVERHEAD;
        if weight > self.capacity {
            self.sync_stats();
            return;
        }
        while self.bytes + weight > self.capacity && self.tail != NIL {
            let lru = self.tail;
            self.drop_slot(lru);
            self.stats.evictions += 1;
        }
        let node = Node { key: key.clone(), value, weight, prev: NIL, next: NIL };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i] = Some(node);
                i
            }
            None => {
                self.nodes.push(Some(node));
                self.nodes.len() - 1
            }
        };
        self.index.insert(key, i);
        self.bytes += weight;
        self.push_front(i);
        self.sync_stats();
    }

    fn remove(&mut self, key: &str) -> bool {
        let Some(&i) = self.index.get(key) else { return false };
        self.drop_slot(i);
        self.sync_stats();
        true
    }

    fn retain(&mut self, keep: &mut dyn FnMut(&str, &V) -> bool) -> usize {
        let doomed: Vec<usize> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().filter(|n| !keep(&n.key, &n.value)).map(|_| i))
            .collect();
        for &i in &doomed {
            self.drop_slot(i);
        }
        self.sync_stats();
        doomed.len()
    }

    fn stats(&self) -> StoreStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Weigh for Vec<u8> {
        fn weight(&self) -> usize {
            self.len()
        }
    }

    fn entry(n: usize) -> Vec<u8> {
        vec![7; n]
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let each = 100 + 2 + ENTRY_OVERHEAD;
        let mut s = MemoryStore::new(3 * each);
        for k in ["a", "b", "c"] {
            s.put(k.into(), entry(100));
        }
        assert!(s.get("a").is_some(), "a is now the most recent");
        s.put("d".into(), entry(100));
        assert!(s.get("b").is_none(), "b was the least recently used");
        assert!(s.get("a").is_some() && s.get("c").is_some() && s.get("d").is_some());
        let stats = s.stats();
        assert_eq!((stats.hits, stats.misses, stats.evictions, stats.entries), (4, 1, 1, 3));
        assert_eq!(stats.bytes as usize, 3 * each);
    }

    #[test]
    fn a_fill_of_ten_times_the_budget_stays_within_it() {
        let budget = 1 << 20;
        let mut s = MemoryStore::new(budget);
        let mut put = 0;
        let mut i = 0u64;
        while put < 10 * budget {
            let size = 200 + (i as usize * 7919) % 5000;
            s.put(format!("key-{i}"), entry(size));
            put += size;
            i += 1;
            assert!(s.stats().bytes as usize <= budget);
        }
        let stats = s.stats();
        assert!(stats.bytes as f64 >= 0.9 * budget as f64, "the budget is used, not left idle: {stats:?}");
        assert!(stats.evictions > 0 && stats.entries > 0);
    }

    #[test]
    fn replacing_removing_and_purging_keep_the_count_right() {
        let mut s = MemoryStore::new(1 << 16);
        s.put("ai/acme/1".into(), entry(10));
        s.put("ai/acme/1".into(), entry(20));
        s.put("ai/acme/2".into(), entry(10));
        s.put("ai/globex/1".into(), entry(10));
        s.put("http/x".into(), entry(10));
        assert_eq!(s.stats().entries, 4);
        assert_eq!(s.retain(&mut |k, _| !k.starts_with("ai/acme/")), 2);
        assert!(s.get("ai/acme/1").is_none() && s.get("ai/globex/1").is_some());
        assert!(s.remove("http/x") && !s.remove("http/x"));
        assert_eq!(s.stats().entries, 1);
        assert_eq!(s.stats().bytes as usize, 10 + 2 * "ai/globex/1".len() + ENTRY_OVERHEAD);
        s.put("huge".into(), entry(1 << 17));
        assert!(s.get("huge").is_none(), "larger than the whole budget: not stored");
        // Slots are reused after removals.
        for i in 0..100 {
            s.put(format!("k{i}"), entry(1));
            s.remove(&format!("k{i}"));
        }
        assert!(s.nodes.len() < 10, "{} slots", s.nodes.len());
    }
}
