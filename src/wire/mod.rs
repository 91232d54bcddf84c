//! The messages that cross the wasm boundary: events in, actions out.
//!
//! Both the module and the host link these files, and messages are encoded
//! with postcard, so the two sides cannot disagree on the format.
//! `docs/abi.md` describes the exported functions that carry them.
//!
//! - [`events`]: what a host tells the router;
//! - [`actions`]: what the router answers;
//! - [`request`]: a client request's headers and body as the router gets them;
//! - [`codec`]: the encoding, and a request read in place.

mod actions;
mod codec;
mod events;
mod request;

pub use actions::*;
pub use codec::*;
pub use events::*;
pub use request::*;

/// The version of the module's ABI (`docs/abi.md`): the module exports it
/// (`er_abi_version`) and the edge box refuses a module of another one, at
/// start and at reload. It changes whenever the messages or the exported
/// functions change.
pub const ABI_VERSION: u32 = 16;
