//! Observed latency per node, for `latency_first`.
//!
//! The router cannot read a clock, so the host reports how long each response
//! head took; this keeps an exponentially weighted moving average per node.

/// Smoothed time-to-response-head per node, in microseconds.
#[derive(Debug, Clone, Default)]
pub struct LatencyTracker {
    ewma_us: Vec<Option<u64>>,
}

/// Weight of the newest sample, in eighths (3/8 ≈ 0.375): recent enough to
/// follow a node that slows down, smooth enough to ignore one outlier.
const NEW_SAMPLE_EIGHTHS: u64 = 3;

impl LatencyTracker {
    /// A tracker for `nodes` nodes, none observed yet.
    pub fn new(nodes: usize) -> Self {
        Self { ewma_us: vec![None; nodes] }
    }

    /// Folds one observation for `node` into its average.
    pub fn observe(&mut self, node: usize, sample_us: u64) {
        if let Some(slot) = self.ewma_us.get_mut(node) {
            *slot = Some(match *slot {
                None => sample_us,
                Some(old) => {
                    let mul = crate::saturating_mul_by;
                    mul(old, 8 - NEW_SAMPLE_EIGHTHS).saturating_add(mul(sample_us, NEW_SAMPLE_EIGHTHS)) / 8
                }
            });
        }
    }

    /// The smoothed latency of `node`, if it was ever observed.
    pub fn latency_us(&self, node: usize) -> Option<u64> {
        self.ewma_us.get(node).copied().flatten()
    }

    /// The tracker for a new list of nodes, where node `i` of the new list
    /// was node `was[i]` of this one (`None`: a node new to the list).
    pub fn remapped(&self, was: &[Option<usize>]) -> Self {
        Self { ewma_us: was.iter().map(|old| old.and_then(|o| self.latency_us(o))).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_is_taken_as_is_and_later_ones_are_smoothed() {
        let mut t = LatencyTracker::new(2);
        assert_eq!(t.latency_us(0), None);
        t.observe(0, 800);
        assert_eq!(t.latency_us(0), Some(800));
        t.observe(0, 0);
        assert_eq!(t.latency_us(0), Some(500));
        assert_eq!(t.latency_us(1), None);
    }

    #[test]
    fn unknown_node_is_ignored() {
        let mut t = LatencyTracker::new(1);
        t.observe(7, 10);
        assert_eq!(t.latency_us(7), None);
    }
}
