//! Whether a failed attempt's request may go to another node. The host
//! says how far the request got ([`RetryType`], as pingora-error's
//! `RetryType` does); the decision is made here from that field and what
//! the router knows of the request, never from an error's text.

use serde::{Deserialize, Serialize};

/// How far a failed attempt's request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetryType {
    /// It never left the edge: no connection could be made, or a pooled
    /// connection the origin had closed did not take it. The origin saw
    /// nothing.
    NotSent,
    /// It went out and no response head came back (the connection broke,
    /// or the head took too long): the origin may have acted on it.
    Sent,
}

/// Why a request is not sent to another node after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRetry {
    /// Its body streamed through and is gone.
    BodyGone,
    /// It may have reached the origin, and a second time may not be the same
    /// as once (its method is not idempotent).
    NotRepeatable,
}

/// Whether a request whose attempt failed as `retry` may be made again
/// elsewhere. `body_kept`: its body is still at hand (read whole, not
/// streamed through); `repeatable`: making it twice has no effect once
/// does not (an idempotent method, RFC 9110 §9.2.2, or an inference call,
/// which only generates). `Ok` when it may.
pub fn may_retry(retry: RetryType, body_kept: bool, repeatable: bool) -> Result<(), NoRetry> {
    if !body_kept {
        return Err(NoRetry::BodyGone);
    }
    match retry {
        RetryType::NotSent => Ok(()),
        RetryType::Sent if repeatable => Ok(()),
        RetryType::Sent => Err(NoRetry::NotRepeatable),
    }
}

/// Whether a method is idempotent (RFC 9110 §9.2.2).
pub fn idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_the_origin_never_saw_may_always_go_elsewhere_if_its_body_is_kept() {
        assert_eq!(may_retry(RetryType::NotSent, true, false), Ok(()));
        assert_eq!(may_retry(RetryType::NotSent, false, true), Err(NoRetry::BodyGone));
    }

    #[test]
    fn a_request_that_went_out_goes_elsewhere_only_if_repeating_it_is_harmless() {
        assert_eq!(may_retry(RetryType::Sent, true, true), Ok(()));
        assert_eq!(may_retry(RetryType::Sent, true, false), Err(NoRetry::NotRepeatable));
        assert_eq!(may_retry(RetryType::Sent, false, true), Err(NoRetry::BodyGone));
    }

    #[test]
    fn rfc9110_9_2_2_idempotent_methods() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(idempotent(m), "{m}");
        }
        for m in ["POST", "PATCH", "CONNECT", "get"] {
            assert!(!idempotent(m), "{m}");
        }
    }
}
