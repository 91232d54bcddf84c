//! The fake OpenAI-compatible origin: a real HTTP/1.1 server on loopback
//! that speaks OpenAI's wire format, scripted per test. The demo, both
//! hosts' conformance suites (the Worker's through the `fake-origin`
//! binary), the end-to-end tests and the benchmarks all use this one.
//!
//! Every request gets a [`Reply`]: by default a chat completion that names
//! the origin (`origin`), the `model` it was asked for and the `method` it
//! got, with `usage` of 5 + 5 tokens; streamed as SSE when the request asked
//! for a stream (or the script says `sse`), one chunk per word, as OpenAI
//! streams. The script can set the status and headers, a raw body, an `ETag`
//! honoured by `If-None-Match`, byte ranges, interim (1xx) responses before
//! the answer, delays, and a different reply for each request in turn.
//! `/v1/responses` speaks OpenAI's Responses API: the origin keeps the
//! response objects it makes, so a follow-up that reaches another origin is
//! refused as OpenAI would refuse it. `/v1/messages` speaks Anthropic's
//! Messages API, `/v1beta/models/{model}:generateContent` Google's Gemini
//! API, and `/openai/deployments/…` Azure OpenAI's, each behind its own
//! auth header.
//! Every request is kept ([`FakeOrigin::seen`]).
#![allow(clippy::disallowed_methods)]

mod dialects;
mod reply;
mod responses;
mod server;

pub use dialects::BEDROCK_SECRET;
pub use reply::{Interim, Reply, Route, Script};
pub use server::{FakeOrigin, Seen};
