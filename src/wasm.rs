//! The core-module ABI the native host calls (see `docs/abi.md`).
//!
//! The module is single-threaded and owns two buffers: the host asks for an
//! input buffer of a given size with `er_input`, writes postcard-encoded
//! messages into it, and calls `er_configure` or `er_handle` with their length.
//! The input buffer only moves when `er_input` is called, so a host may keep
//! writing to it until it needs a larger one.
//! The answer is written to an output buffer owned by the module and returned
//! as `(ptr << 32) | len`; it stays valid until the next call.

use std::cell::RefCell;

use crate::config::RouterConfig;
use crate::error::RouterError;
use crate::machine::Router;
use crate::wire::{Action, Configured, Notice, Reply, Spent};

// The module's heap. Decoding an event, routing and encoding the action
// allocate a few dozen small blocks per request; with talc instead of the
// default dlmalloc the wasm decision got about a tenth cheaper, and with
// free lists for the small blocks in front of talc (`crate::heap`) about
// another eighth (`decision-cost`, bench/README.md).
#[cfg(not(target_feature = "atomics"))]
#[global_allocator]
static HEAP: crate::heap::Heap<talc::wasm::WasmDynamicTalc> =
    crate::heap::Heap::new(talc::wasm::new_wasm_dynamic_allocator());

struct Module {
    input: Vec<u8>,
    output: Vec<u8>,
    /// Reused for every reply's spending.
    spent: Vec<Spent>,
    router: Option<Router>,
}

thread_local! {
    static MODULE: RefCell<Module> = const { RefCell::new(Module { input: Vec::new(), output: Vec::new(), spent: Vec::new(), router: None }) };
}

/// ABI version; the host refuses a module whose version it does not know.
#[unsafe(no_mangle)]
pub extern "C" fn er_abi_version() -> u32 {
    crate::wire::ABI_VERSION
}

/// Returns a pointer to an input buffer of at least `len` bytes.
#[unsafe(no_mangle)]
pub extern "C" fn er_input(len: u32) -> *mut u8 {
    MODULE.with_borrow_mut(|m| {
        m.input.clear();
        m.input.resize(len as usize, 0);
        m.input.as_mut_ptr()
    })
}

fn reply<T: serde::Serialize>(m: &mut Module, value: &T) -> u64 {
    m.output.clear();
    // Encoding into a Vec cannot fail for these types; an empty output makes
    // the host report a broken module rather than act on garbage.
    if let Ok(bytes) = crate::wire::encode_into(value, std::mem::take(&mut m.output)) {
        m.output = bytes;
    }
    ((m.output.as_ptr() as u64) << 32) | m.output.len() as u64
}

/// Input: postcard `(file_name, config_text)`. Output: postcard `Configured`.
#[unsafe(no_mangle)]
pub extern "C" fn er_configure(len: u32) -> u64 {
    configure(len, false)
}

/// As [`er_configure`], keeping the running router's state
/// ([`Router::reconfigure`]).
#[unsafe(no_mangle)]
pub extern "C" fn er_reconfigure(len: u32) -> u64 {
    configure(len, true)
}

fn configure(len: u32, keep: bool) -> u64 {
    MODULE.with_borrow_mut(|m| {
        let input = m.input.get(..len as usize).unwrap_or_default();
        let result = match postcard::from_bytes::<(String, String)>(input) {
            Err(e) => Configured::Refused(format!("malformed configure message: {e}")),
            Ok((file, text)) => match RouterConfig::load(&file, &text) {
                Err(errors) => Configured::Refused(errors.to_string()),
                Ok(config) => {
                    let node_ids = config.nodes.iter().map(|n| n.id.clone()).collect();
                    let rules = config.rules.len() as u32;
                    match m.router.as_mut() {
                        Some(router) if keep => router.reconfigure(config),
                        _ => m.router = Some(Router::new(config)),
                    }
                    Configured::Ok { node_ids, rules }
                }
            },
        };
        reply(m, &result)
    })
}

/// Input: one or more postcard `Event`s, back to back, handled in order.
/// Output: postcard `Reply`: the answer to the last event, the health
/// changes the events caused, and the spending they settled. The host sends earlier events only when it
/// does not need their answers (see `docs/abi.md`).
#[unsafe(no_mangle)]
pub extern "C" fn er_handle(len: u32) -> u64 {
    MODULE.with_borrow_mut(|m| {
        let answer = match m.router.as_mut() {
            None => fault("the module has no configuration".into(), Vec::new()),
            Some(router) => match router.handle_batch(m.input.get(..len as usize).unwrap_or_default()) {
                Ok(Some(action)) => {
                    let mut spent = std::mem::take(&mut m.spent);
                    router.take_spent_into(&mut spent);
                    let (claim, settled) = (router.take_claim(), router.take_settled());
                    Reply { action, notices: router.take_notices(), spent, claim, settled }
                }
                Ok(None) => fault("the module was called without an event".into(), router.take_notices()),
                Err(e) => fault(format!("malformed event: {e}"), router.take_notices()),
            },
        };
        let at = reply(m, &answer);
        m.spent = answer.spent;
        m.spent.clear();
        at
    })
}

/// A call the module could not handle: an internal error, with the detail
/// as a `Fault` notice for the host's log.
fn fault(detail: String, mut notices: Vec<Notice>) -> Reply {
    let (status, headers, body) = RouterError::Internal(detail.clone()).to_response(0, Vec::new());
    notices.push(Notice::Fault { id: 0, detail });
    Reply {
        action: Action::Respond { status, headers, body },
        notices,
        spent: Vec::new(),
        claim: None,
        settled: Vec::new(),
    }
}
