//! Sorting through one compiled instance of the standard library's sort.
//!
//! `slice::sort_by` is compiled anew for every element type and comparison,
//! 1.5 to 5 KB of WebAssembly each: the Worker's upload carries every copy
//! (issue "Lean at the edge"). [`sort_by`] sorts positions instead, with one
//! compiled sort that calls the comparison through a pointer, then moves
//! the elements into place. Stable, and `O(n log n)` like the standard sort
//! (some of these sort what requests hold, such as PII findings).

use std::cmp::Ordering;

/// Sorts `v` stably by `cmp`.
pub fn sort_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    if v.len() < 2 {
        return;
    }
    let order = positions(v.len(), &mut |a, b| cmp(&v[a], &v[b]));
    permute(v, order);
}

/// Sorts `v` stably by the key `key` gives each element.
pub fn sort_by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    sort_by(v, |a, b| key(a).cmp(&key(b)));
}

/// Sorts `v` stably.
pub fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, T::cmp);
}

/// `0..n` sorted by `cmp` of the elements at those positions. Not generic:
/// the one instance of the standard sort.
fn positions(n: usize, cmp: &mut dyn FnMut(usize, usize) -> Ordering) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| cmp(a, b));
    order
}

/// Puts the element at `order[i]` at `i`, for every `i`, following each
/// cycle of the permutation once (`O(n)` swaps).
fn permute<T>(v: &mut [T], mut order: Vec<usize>) {
    for start in 0..v.len() {
        let mut at = start;
        // Each swap settles `at`; the element that was at `start` travels
        // along the cycle to the place that wants it.
        while order[at] != start {
            let from = order[at];
            v.swap(at, from);
            order[at] = at;
            at = from;
        }
        order[at] = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The same order as the standard library's stable sort, ties included.
        #[test]
        fn sorts_as_the_standard_sort_does(v in proptest::collection::vec((0u8..8, any::<u16>()), 0..200)) {
            let mut ours = v.clone();
            sort_by_key(&mut ours, |&(k, _)| k);
            let mut std = v.clone();
            std.sort_by_key(|&(k, _)| k);
            prop_assert_eq!(&ours, &std);
            let mut whole = v;
            sort(&mut whole);
            std.sort();
            prop_assert_eq!(whole, std);
        }
    }
}
