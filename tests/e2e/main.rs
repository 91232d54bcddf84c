//! End-to-end: the real wasm router module in the real host, against real
//! HTTP origins on 127.0.0.1: the project's fake OpenAI origin (`fake-origin`),
//! or raw TCP for the faults no HTTP server makes (a body that breaks off or
//! stalls, a peer that never answers).
#![allow(clippy::disallowed_methods)]

mod access;
mod cache;
mod conformance;
mod connections;
mod drills;
mod fallback;
mod geo;
mod health;
mod input;
mod providers;
mod routing;
mod streaming;
