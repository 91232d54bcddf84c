//! What a host logs of the router's notices, and how often it tells the
//! router the time when no request does.

use edge_router::error::request_id_text;
use edge_router::wire::Notice;

/// How often a host sends the router a `Tick` (the edge box from a timer;
/// the Worker, which has none between requests, before the first event of
/// a request once this long has passed).
pub const TICK_EVERY_MS: u64 = 30_000;

/// How much a notice matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Worth knowing.
    Info,
    /// Something is wrong with a node.
    Warn,
    /// Something is wrong with the router or a host.
    Error,
}

/// A notice as one log line: its level, what it concerns (a node, or the
/// request id of a fault) and the message.
pub fn describe(notice: &Notice) -> (Level, String, String) {
    match notice {
        Notice::Unhealthy { node, reason, probe_in_ms } => (
            Level::Warn,
            node.clone(),
            format!(
                "node unhealthy: {reason}; it gets no requests for {:.1}s, then one probe",
                *probe_in_ms as f64 / 1000.0
            ),
        ),
        Notice::Probing { node } => (Level::Info, node.clone(), "sending a probe request to an unhealthy node".into()),
        Notice::Healthy { node } => (Level::Info, node.clone(), "node healthy again".into()),
        Notice::Panic { node, healthy, candidates } => (
            Level::Warn,
            node.clone(),
            format!(
                "{healthy} of the {candidates} nodes a request may use are healthy, below \
                 health_check.panic_threshold: sending to this unhealthy node anyway (its cool-down ends first)"
            ),
        ),
        Notice::Fault { id, detail } => {
            (Level::Error, format!("request {}", request_id_text(*id)), format!("internal error: {detail}"))
        }
    }
}

/// Whether a tick is due at `now_ms`, the last having been at `*last_ms`
/// (which moves to `now_ms` when it is).
pub fn tick_due(last_ms: &mut u64, now_ms: u64) -> bool {
    if now_ms.saturating_sub(*last_ms) < TICK_EVERY_MS {
        return false;
    }
    *last_ms = now_ms;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_is_due_once_per_period() {
        let mut last = 0;
        assert!(tick_due(&mut last, TICK_EVERY_MS));
        assert!(!tick_due(&mut last, TICK_EVERY_MS + 1));
        assert!(tick_due(&mut last, 2 * TICK_EVERY_MS));
    }

    #[test]
    fn an_unhealthy_node_is_a_warning_with_its_cool_down() {
        let notice = Notice::Unhealthy { node: "a".into(), reason: "it answered 503".into(), probe_in_ms: 5_300 };
        let (level, node, message) = describe(&notice);
        assert_eq!((level, node.as_str()), (Level::Warn, "a"));
        assert!(message.contains("it answered 503") && message.contains("5.3s"), "{message}");
    }

    #[test]
    fn a_fault_is_an_error_naming_its_request() {
        let (level, subject, message) = describe(&Notice::Fault { id: 255, detail: "malformed event".into() });
        assert_eq!((level, subject.as_str()), (Level::Error, "request 00000000000000ff"));
        assert!(message.contains("malformed event"), "{message}");
    }
}
