//! The exchange: what the bytes of one request and its answer go through
//! around the router's decisions, written once for both hosts.
//!
//! The router (`edge-router`) decides; this crate carries out the parts of
//! each decision that touch a message: the request an origin gets, what
//! becomes of its answer, the streamed body's watchdog and rewrites, and
//! answers from the cache. It works on `http` types, does no I/O and reads
//! no clock (`now_ms` is passed in), so the edge box (tokio and hyper) and
//! the Worker (`fetch` and the Cache API) both drive it natively. It is not
//! behind the router module's ABI: a call per chunk would cost too much. So
//! a module reload swaps decisions, not exchange mechanics; those change
//! with a new build of the host.
//!
//! - [`intake`]: the client's request: body limits, what the router is given.
//! - [`action`]: what a host does with the router's next action.
//! - [`upstream`]: the request to the origin: header filter, model rewrite, validators.
//! - [`head`]: the origin's response head: the router's event, the plan
//!   (deliver, capture, revalidated, stale), hop-by-hop fields, invalidation.
//! - [`watch`]: the streamed body's watchdog: time limits, drains, usage, capture.
//! - [`transform`]: the seam for streaming rewrites of bodies, and the first one.
//! - [`finish`]: the end of an exchange, as the router hears of it.
//! - [`capture`], [`entry`]: answers kept in the cache, and lookup verdicts.
//! - [`answer`]: answers that do not stream from an origin: the router's,
//!   errors, and answers from the cache (`Age`, `304`, ranges).
//! - [`explain`]: the explanation headers.
//! - [`notices`]: log lines of the router's notices, and the tick cadence.
//! - [`usage`]: the `usage` an answer reports.
//! - [`record`]: one record per request: the access log's line, what the
//!   metrics count and the routing log streams.

pub mod action;
pub mod answer;
pub mod capture;
pub mod entry;
pub mod explain;
pub mod finish;
pub mod head;
pub mod intake;
pub mod notices;
pub mod provider;
pub mod record;
pub mod restore;
pub mod transform;
pub mod upstream;
pub mod usage;
pub mod watch;

#[cfg(test)]
mod test_support;

pub use entry::Entry;
