//! A value per thread, all of them reachable from any thread: what lets a
//! request write only memory its own thread writes (its access log lines,
//! its latest records), while the access log's writer and the admin API
//! read them all.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::lock;

/// Counts the `PerThread`s a process makes: their ids.
static MADE: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's values, by the id of the `PerThread` they belong to.
    static MINE: std::cell::RefCell<Vec<(u64, Arc<dyn Any + Send + Sync>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One `T` per thread that uses it.
pub(super) struct PerThread<T> {
    id: u64,
    all: Mutex<Vec<Arc<T>>>,
}

impl<T: Default + Send + Sync + 'static> PerThread<T> {
    pub(super) fn new() -> Self {
        Self { id: MADE.fetch_add(1, Ordering::Relaxed), all: Mutex::new(Vec::new()) }
    }

    /// Calls `f` with this thread's value, made the first time.
    pub(super) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        let mine = MINE.with_borrow_mut(|mine| {
            if let Some(found) = mine.iter().find(|(id, _)| *id == self.id).and_then(|(_, v)| v.clone().downcast().ok())
            {
                return found;
            }
            // Values of `PerThread`s gone (held here only) go first.
            mine.retain(|(_, v)| Arc::strong_count(v) > 1);
            let value = Arc::new(T::default());
            lock(&self.all).push(value.clone());
            mine.push((self.id, value.clone()));
            value
        });
        f(&mine)
    }

    /// Calls `f` with every thread's value.
    pub(super) fn each(&self, mut f: impl FnMut(&T)) {
        for value in lock(&self.all).iter() {
            f(value);
        }
    }
}
