//! Node selection for edge-router, kept free of I/O and clocks.
//!
//! A routing rule or the default strategy names a set of candidate nodes; this
//! crate decides the order in which they are tried. Time and randomness are
//! arguments, so every decision can be replayed in a test.

mod breaker;
mod budget;
mod latency;
mod retry;
mod selection;
mod spend;
mod stats;

pub use breaker::{Breaker, BreakerPolicy, BreakerState, Transition, counts_as_failure};
pub use budget::{RetryBudget, RetryPolicy};
pub use latency::LatencyTracker;
pub use retry::{NoRetry, RetryType, idempotent, may_retry};
pub use selection::{Candidate, Strategy, canary_draw, order_candidates};
pub use spend::{BudgetDay, DailySpend, Ledger, MS_PER_DAY, Reserved};
pub use stats::{TrafficSummary, TrafficWindow};

/// The SplitMix64 step between counter values: adding it to a `u64` state and
/// [`mix64`]-ing the sum gives well-spread pseudo-random numbers.
pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// `x * k`, saturating at `u64::MAX`: `x.saturating_mul(k)` without the
/// 128-bit multiply. In wasm a 64-bit multiply that checks for overflow is
/// done in 128 bits, which is a call out (`__multi3`); with `k` a constant
/// this is a comparison and a plain multiply.
#[inline]
pub fn saturating_mul_by(x: u64, k: u64) -> u64 {
    if k != 0 && x > u64::MAX / k { u64::MAX } else { x * k }
}

/// SplitMix64's finalizer: spreads any `u64` over all of `u64`, so seeds that
/// differ in few bits (counters, ids, times) give unrelated random numbers.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn saturating_mul_by_is_saturating_mul() {
        let edges =
            [0, 1, 2, 7, 8, 999, 1000, u64::MAX / 1000, u64::MAX / 1000 + 1, u64::MAX / 7, u64::MAX - 1, u64::MAX];
        for x in edges {
            for k in [0, 1, 2, 7, 8, 1000, u64::MAX] {
                assert_eq!(super::saturating_mul_by(x, k), x.saturating_mul(k), "{x} × {k}");
            }
        }
    }
}
