//! Calls into the router module. A module call takes microseconds, so the
//! one instance sits behind a lock that is held only for the call itself:
//! events are encoded and replies decoded in per-thread buffers outside it.

use bytes::Bytes;
use edge_router::error::{RouterError, request_id_text};
use edge_router::wire::{Action, Event, Header, Notice, Reply, RequestRef};
use std::sync::{Mutex, MutexGuard};

use super::{Shared, now_ms};
use crate::lock;
use crate::module::{self, WasmRouter};

thread_local! {
    /// Per-thread buffers for encoding events and copying out replies.
    static BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Tries at the module's lock before sleeping on it (tens of microseconds at most).
const SPIN: usize = 1000;

/// Takes a shared module's lock. A module call takes microseconds, so a
/// thread finding it taken spins a little before it sleeps: on a busy
/// proxy, sleeping and being woken cost more than the wait.
fn spin_lock(router: &Mutex<WasmRouter>) -> MutexGuard<'_, WasmRouter> {
    // A panic while holding the lock cannot leave the module half-called:
    // `WasmRouter` rebuilds its instance on any failed call.
    for _ in 0..SPIN {
        match router.try_lock() {
            Ok(guard) => return guard,
            Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => std::hint::spin_loop(),
        }
    }
    lock(router)
}

/// Calls a shared module with the event `encode` writes, as the edge box
/// does for every request (`bench/src/hyper_floor.rs` does it the same way):
/// encoding and decoding happen in this thread's buffers, outside the lock,
/// which is held only for the module call itself.
pub fn call_module(
    router: &Mutex<WasmRouter>,
    encode: impl FnOnce(&mut Vec<u8>) -> anyhow::Result<()>,
) -> anyhow::Result<Reply> {
    call_module_at(router, encode).map(|(reply, _)| reply)
}

/// [`call_module`], with the number of the config the module answered
/// under (`WasmRouter::generation`): a reply names nodes by their place in it.
fn call_module_at(
    router: &Mutex<WasmRouter>,
    encode: impl FnOnce(&mut Vec<u8>) -> anyhow::Result<()>,
) -> anyhow::Result<(Reply, u64)> {
    BUFFERS.with_borrow_mut(|(encoded, reply)| {
        encode(encoded)?;
        let generation = {
            let mut router = spin_lock(router);
            router.handle_encoded(encoded, reply)?;
            router.generation()
        };
        Ok((module::decode(reply)?, generation))
    })
}

/// Queues an event whose answer is not needed for a shared module's next
/// call (see `WasmRouter::defer`), encoded outside the lock.
pub fn defer_event(router: &Mutex<WasmRouter>, event: &Event) {
    BUFFERS.with_borrow_mut(|(encoded, _)| match module::encode(event, encoded) {
        Ok(()) => spin_lock(router).defer_encoded(encoded),
        Err(e) => tracing::error!("cannot encode an event for the router module: {e:#}"),
    });
}

/// The answer to request `id` (0: none) when the module could not be asked
/// (the caller logs why).
pub(super) fn internal_error(id: u64) -> Action {
    let (status, headers, body) = RouterError::Internal("the routing module failed".into()).to_response(id, Vec::new());
    Action::Respond { status, headers, body }
}

/// Gives request `id` to a `Fault` the module reported without one; whether
/// there was such a fault.
fn name_the_fault(notices: &mut [Notice], id: u64) -> bool {
    let mut named = false;
    for notice in notices {
        if let Notice::Fault { id: fault_id @ 0, .. } = notice
            && id != 0
        {
            *fault_id = id;
            named = true;
        }
    }
    named
}

/// The parts of a `Respond`; anything else is the router failing to answer.
pub(super) fn answer(action: Action) -> (u16, Vec<Header>, Bytes) {
    match action {
        Action::Respond { status, headers, body } => (status, headers, Bytes::from(body)),
        _ => answer(internal_error(0)),
    }
}

/// The router's answer, and the number of the config it was given under.
pub(super) struct Decided {
    pub(super) action: Action,
    pub(super) generation: u64,
    /// The reservation at a budgeted node the answer's attempt holds, for
    /// the fleet's shared ledger (`state.redis`).
    pub(super) claim: Option<edge_router::machine::BudgetClaim>,
}

impl Shared {
    pub(super) fn event(&self, event: &Event) -> Action {
        self.decide(event).action
    }

    /// [`event`](Self::event), with the number of the config of its answer.
    pub(super) fn decide(&self, event: &Event) -> Decided {
        self.call(event.request_id(), |encoded| module::encode(event, encoded))
    }

    /// A client request (an `Event::Request`, borrowed).
    pub(super) fn request(&self, request: &RequestRef<'_>) -> Decided {
        self.call(request.id, |encoded| module::encode_request(request, encoded))
    }

    /// Calls the module with the event `encode` writes, about request `id`.
    fn call(&self, id: u64, encode: impl FnOnce(&mut Vec<u8>) -> anyhow::Result<()>) -> Decided {
        call_module_at(&self.router, encode)
            .map(|(mut r, generation)| {
                if name_the_fault(&mut r.notices, id) {
                    // The module could not tell which request it failed
                    // (an event it could not read): the host can.
                    r.action = internal_error(id);
                }
                module::log_notices(&r.notices);
                if !r.spent.is_empty() {
                    // Outside the call's lock, so replies may be kept out of
                    // order; `keep` only ever moves a node's record forward.
                    self.lock().keep(&r);
                }
                if let Some(fleet) = self.fleet.as_ref().filter(|_| !r.settled.is_empty()) {
                    fleet.settle_budgets(std::mem::take(&mut r.settled), now_ms());
                }
                Decided { action: r.action, generation, claim: r.claim }
            })
            .unwrap_or_else(|e| {
                tracing::error!("request {}: router module call failed: {e:#}", request_id_text(id));
                // An answer of the router's own names no node: any generation reads it.
                Decided { action: internal_error(id), generation: u64::MAX, claim: None }
            })
    }

    /// Queues an event whose answer is not needed (see `WasmRouter::defer`).
    pub(super) fn defer(&self, event: &Event) {
        if let Some(fleet) = &self.fleet {
            fleet.ended(event);
        }
        defer_event(&self.router, event);
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, WasmRouter> {
        spin_lock(&self.router)
    }

    /// Lets the router reap exchanges its host lost track of (see `Event::Tick`).
    pub fn tick(&self) {
        self.event(&Event::Tick { now_ms: now_ms() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_the_module_could_not_place_is_given_the_request_and_answered_with_its_id() {
        let mut notices = vec![
            Notice::Fault { id: 0, detail: "malformed event".into() },
            Notice::Fault { id: 9, detail: "another request's".into() },
        ];
        assert!(name_the_fault(&mut notices, 7));
        assert!(matches!(&notices[0], Notice::Fault { id: 7, .. }));
        assert!(matches!(&notices[1], Notice::Fault { id: 9, .. }), "a placed fault keeps its request");
        assert!(!name_the_fault(&mut [Notice::Fault { id: 0, detail: String::new() }], 0), "no request to give");
        let Action::Respond { headers, .. } = internal_error(7) else { panic!("an answer") };
        let id = headers.iter().find(|h| h.name == "x-request-id").map(|h| h.value.clone());
        assert_eq!(id.as_deref(), Some(request_id_text(7).as_bytes()));
    }
}
