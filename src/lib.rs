//! edge-router: a sans-IO router for OpenAI-compatible LLM traffic.
//!
//! The crate is the policy of the edge: it decides, per request, whether to
//! refuse it (geofence, residency, auth, bad input), which node serves it,
//! which model that node is asked for, and what to do when a node fails. It
//! performs no I/O and reads no clock; hosts feed it [`wire::Event`]s and
//! carry out the [`wire::Action`]s it returns.
//!
//! Built for `wasm32-unknown-unknown` it exports the small ABI in [`wasm`]
//! (documented in `docs/abi.md`), which the native host in `host/` runs
//! under wasmtime.

pub mod auth;
pub mod client;
pub mod config;
pub mod difficulty;
pub mod error;
pub mod facts;
pub mod geo;
pub mod hop;
pub mod jwt;
pub mod limits;
pub mod machine;
pub mod model;
pub mod order;
pub mod pii;
pub mod rules;
pub mod tokens;
pub mod wire;

#[cfg(any(test, all(target_arch = "wasm32", feature = "abi")))]
mod heap;
#[cfg(all(target_arch = "wasm32", feature = "abi"))]
pub mod wasm;

pub use config::RouterConfig;
pub use machine::Router;
