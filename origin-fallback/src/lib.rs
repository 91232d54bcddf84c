//! Node selection for edge-router, kept free of I/O and clocks.
//!
//! A routing rule or the default strategy names a set of candidate nodes; this
//! crate decides the order in which they are tried. Time and randomness are
//! arguments, so every decision can be replayed in a test.

mod breaker;
mod budget;
mod latency;
mod selection;

pub use breaker::{Breaker, BreakerPolicy, BreakerState, Transition, counts_as_failure};
pub use budget::{RetryBudget, RetryPolicy};
pub use latency::LatencyTracker;
pub use selection::{Candidate, Strategy, order_candidates};
