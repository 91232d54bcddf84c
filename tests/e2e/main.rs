//! End-to-end: the real wasm router module in the real host, against real
//! HTTP origins on 127.0.0.1 (wiremock, or raw TCP for faults wiremock cannot
//! script).
#![allow(clippy::disallowed_methods)]

mod cache;
mod conformance;
mod connections;
mod drills;
mod fallback;
mod geo;
mod health;
mod input;
mod routing;
mod streaming;
