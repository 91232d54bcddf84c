//! What a host does with the router's next action for a request: answer
//! with the router's own response (or, for a 5xx, with the stale entry a
//! `stale-if-error` allows), or forward.

use bytes::Bytes;
use edge_router::error::RouterError;
use edge_router::geo::Country;
use edge_router::wire::{Action, Explain, Forward};
use http::Response;

use crate::answer::{host_error, respond, stale_explain, stale_may_answer};
use crate::entry::HoldsEntry;
use crate::head::Stale;

/// The host's next step.
pub enum Step<T> {
    /// Answer with this response.
    Answer(Response<Bytes>),
    /// Answer with the stale entry, explained so (`stale-if-error`).
    ServeStale {
        /// The entry.
        entry: T,
        /// Its explanation.
        explain: Explain,
    },
    /// Send the request to a node.
    Forward(Forward),
    /// The router gave no answer it should have: answer with this internal
    /// error, and log its detail.
    Fault {
        /// The client's answer (a fixed message and the request id).
        response: Response<Bytes>,
        /// What went wrong, for the log.
        detail: String,
    },
}

/// The step for `action`, the router's answer for request `id` that holds
/// `stale` (taken when it answers) from a client in `country`. An action
/// that is no answer is an internal error (the host logs it).
pub fn step<T: HoldsEntry>(action: Action, stale: &mut Option<Stale<T>>, country: Option<Country>, id: u64) -> Step<T> {
    match action {
        Action::Respond { status, headers, body } => match stale.take() {
            Some(s) if s.if_error && stale_may_answer(status) => {
                let explain = stale_explain(s.entry.entry(), country);
                Step::ServeStale { entry: s.entry, explain }
            }
            _ => Step::Answer(respond(status, &headers, body)),
        },
        Action::Forward(forward) => Step::Forward(forward),
        other => {
            let detail = format!("the router answered a request with {other:?}");
            Step::Fault { response: host_error(&RouterError::Internal(detail.clone()), country, id), detail }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Entry;
    use edge_router::wire::Header;
    use http::{HeaderMap, StatusCode};

    fn entry() -> Entry {
        Entry {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            node: "a".into(),
            model: None,
            stored_ms: 0,
            expires_ms: u64::MAX,
            tokens: 0,
            http: None,
        }
    }

    fn error(status: u16) -> Action {
        Action::Respond { status, headers: vec![Header::new("content-type", "application/json")], body: b"{}".to_vec() }
    }

    #[test]
    fn a_5xx_is_answered_stale_only_when_stale_if_error_allows() {
        let mut held = Some(Stale { entry: entry(), if_error: true });
        let Step::ServeStale { explain, .. } = step(error(502), &mut held, None, 1) else { panic!("served stale") };
        assert_eq!((explain.node.as_str(), explain.cache.as_str()), ("a", "STALE"));
        assert!(held.is_none(), "the stale entry was used");
        let mut held = Some(Stale { entry: entry(), if_error: true });
        assert!(matches!(step(error(404), &mut held, None, 1), Step::Answer(r) if r.status() == 404));
        let mut held = Some(Stale { entry: entry(), if_error: false });
        assert!(matches!(step(error(503), &mut held, None, 1), Step::Answer(r) if r.status() == 503));
    }

    #[test]
    fn an_action_that_is_no_answer_is_an_internal_error() {
        let mut none: Option<Stale<Entry>> = None;
        let Step::Fault { response, detail } = step(Action::Done, &mut none, None, 1) else { panic!("a fault") };
        assert_eq!(response.status(), 500);
        assert!(detail.contains("Done"), "{detail}");
    }
}
