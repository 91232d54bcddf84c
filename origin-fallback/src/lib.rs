//! Node selection for edge-router, kept free of I/O and clocks.
//!
//! A routing rule or the default strategy names a set of candidate nodes; this
//! crate decides the order in which they are tried. Time and randomness are
//! arguments, so every decision can be replayed in a test.

mod breaker;
mod budget;
mod latency;
mod selection;
mod spend;
mod stats;

pub use breaker::{Breaker, BreakerPolicy, BreakerState, Transition, counts_as_failure};
pub use budget::{RetryBudget, RetryPolicy};
pub use latency::LatencyTracker;
pub use selection::{Candidate, Strategy, canary_draw, order_candidates};
pub use spend::{BudgetDay, DailySpend, Ledger, MS_PER_DAY, Reserved};
pub use stats::{TrafficSummary, TrafficWindow};

/// The SplitMix64 step between counter values: adding it to a `u64` state and
/// [`mix64`]-ing the sum gives well-spread pseudo-random numbers.
pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finalizer: spreads any `u64` over all of `u64`, so seeds that
/// differ in few bits (counters, ids, times) give unrelated random numbers.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
