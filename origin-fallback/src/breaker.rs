//! Passive health: a circuit breaker per node.
//!
//! `threshold` consecutive failures open the breaker: the node gets no
//! requests for a cool-down. Then exactly one request is let through as a
//! probe (half-open). Its success closes the breaker; its failure opens it
//! again for twice the previous cool-down, up to a bound, with jitter so
//! that several routers do not probe a recovering node in lockstep.
//!
//! What counts as a failure is the caller's business ([`counts_as_failure`]
//! gives the usual rule for HTTP statuses). Time and randomness are passed in.

/// How a breaker reacts to failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker (at least 1).
    pub threshold: u32,
    /// First cool-down, in milliseconds.
    pub cool_down_ms: u64,
    /// Largest cool-down after repeated failed probes, in milliseconds.
    pub max_cool_down_ms: u64,
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow; `failures` consecutive failures so far.
    Closed {
        /// Consecutive failures.
        failures: u32,
    },
    /// No requests until `until_ms`; the cool-down that got it here was `cool_down_ms`.
    Open {
        /// When a probe may go.
        until_ms: u64,
        /// The cool-down before this opening's jitter.
        cool_down_ms: u64,
    },
    /// One probe, exchange `probe`, is in flight; nothing else goes.
    HalfOpen {
        /// The probing exchange.
        probe: u64,
        /// The cool-down of the opening before.
        cool_down_ms: u64,
    },
}

/// A change worth telling an operator about, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The node stopped getting requests.
    Opened {
        /// Milliseconds until a probe.
        for_ms: u64,
    },
    /// A probe is on its way.
    Probing,
    /// The node is healthy again.
    Closed,
}

/// One node's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: BreakerState,
}

/// Whether a response status says the node (not the client) failed: 5xx
/// other than 501 Not Implemented. A 4xx is the client's fault.
pub fn counts_as_failure(status: u16) -> bool {
    (500..600).contains(&status) && status != 501
}

impl Breaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy: BreakerPolicy { threshold: policy.threshold.max(1), ..policy },
            state: BreakerState::Closed { failures: 0 },
        }
    }

    /// Goes on under `policy` (a reloaded config's) in the state it is in.
    pub fn set_policy(&mut self, policy: BreakerPolicy) {
        self.policy = BreakerPolicy { threshold: policy.threshold.max(1), ..policy };
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a request may go to the node now, without taking the probe slot.
    pub fn admits(&self, now_ms: u64) -> bool {
        self.next_chance_ms(now_ms).is_none()
    }

    /// `None` when a request may go now; otherwise the earliest time one
    /// might (`now_ms` when a probe is out and its outcome decides).
    pub fn next_chance_ms(&self, now_ms: u64) -> Option<u64> {
        match self.state {
            BreakerState::Closed { .. } => None,
            BreakerState::Open { until_ms, .. } => (now_ms < until_ms).then_some(until_ms),
            BreakerState::HalfOpen { .. } => Some(now_ms),
        }
    }

    /// Claims the node for exchange `id`. `None` when the breaker refuses;
    /// otherwise the transition this caused, if any (a cooled-down breaker
    /// makes `id` its probe).
    pub fn acquire(&mut self, id: u64, now_ms: u64) -> Option<Option<Transition>> {
        match self.state {
            BreakerState::Closed { .. } => Some(None),
            BreakerState::Open { until_ms, cool_down_ms } if now_ms >= until_ms => {
                self.state = BreakerState::HalfOpen { probe: id, cool_down_ms };
                Some(Some(Transition::Probing))
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => None,
        }
    }

    /// The node answered exchange `id` well.
    pub fn on_success(&mut self, id: u64) -> Option<Transition> {
        match self.state {
            BreakerState::Closed { .. } => {
                self.state = BreakerState::Closed { failures: 0 };
                None
            }
            BreakerState::HalfOpen { probe, .. } if probe == id => {
                self.state = BreakerState::Closed { failures: 0 };
                Some(Transition::Closed)
            }
            // A late answer from before the breaker opened proves little; the probe decides.
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => None,
        }
    }

    /// A request sent to the node while its breaker was open (every node the
    /// request could use was unhealthy, and the router's panic threshold
    /// let it through) got a good answer: the node is serving, so the
    /// breaker closes, as after a good probe. A failed one changes nothing:
    /// the breaker is open already, and its probe decides when it reopens.
    pub fn on_panic_answer(&mut self, ok: bool) -> Option<Transition> {
        match self.state {
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } if ok => {
                self.state = BreakerState::Closed { failures: 0 };
                Some(Transition::Closed)
            }
            _ => None,
        }
    }

    /// The node failed exchange `id`; `random` jitters a new cool-down.
    pub fn on_failure(&mut self, id: u64, now_ms: u64, random: u64) -> Option<Transition> {
        match self.state {
            BreakerState::Closed { failures } => self.count(failures, now_ms, random),
            BreakerState::HalfOpen { probe, cool_down_ms } if probe == id => {
                Some(self.reopen(cool_down_ms, now_ms, random))
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => None,
        }
    }

    /// An active health probe (not a request) came back: `ok` when the node
    /// answered without a node failure. A failed probe counts like a failed
    /// request. A good one resets the failure count of a closed breaker, and
    /// closes an open breaker whose cool-down is over, as a request probe
    /// would; while cooling down, or while a request probe is out, the
    /// breaker waits for that instead.
    pub fn on_probe(&mut self, ok: bool, now_ms: u64, random: u64) -> Option<Transition> {
        match (self.state, ok) {
            (BreakerState::Closed { .. }, true) => {
                self.state = BreakerState::Closed { failures: 0 };
                None
            }
            (BreakerState::Closed { failures }, false) => self.count(failures, now_ms, random),
            (BreakerState::Open { until_ms, .. }, true) if now_ms >= until_ms => {
                self.state = BreakerState::Closed { failures: 0 };
                Some(Transition::Closed)
            }
            (BreakerState::Open { until_ms, cool_down_ms }, false) if now_ms >= until_ms => {
                Some(self.reopen(cool_down_ms, now_ms, random))
            }
            (BreakerState::Open { .. } | BreakerState::HalfOpen { .. }, _) => None,
        }
    }

    /// Exchange `id` ended without telling whether the node is healthy (the
    /// client went away). If it was the probe, the next request probes instead.
    pub fn on_abandoned(&mut self, id: u64, now_ms: u64) {
        if let BreakerState::HalfOpen { probe, cool_down_ms } = self.state
            && probe == id
        {
            self.state = BreakerState::Open { until_ms: now_ms, cool_down_ms };
        }
    }

    /// One more failure of a closed breaker that had `failures` already.
    fn count(&mut self, failures: u32, now_ms: u64, random: u64) -> Option<Transition> {
        let failures = failures.saturating_add(1);
        if failures >= self.policy.threshold {
            return Some(self.open(self.policy.cool_down_ms, now_ms, random));
        }
        self.state = BreakerState::Closed { failures };
        None
    }

    /// A probe failed after a cool-down of `previous_ms`: rest twice as long, up to the bound.
    fn reopen(&mut self, previous_ms: u64, now_ms: u64, random: u64) -> Transition {
        let bound = self.policy.max_cool_down_ms.max(self.policy.cool_down_ms);
        self.open(previous_ms.saturating_mul(2).min(bound), now_ms, random)
    }

    /// Opens for `cool_down_ms` with "equal jitter": between half and all of it.
    fn open(&mut self, cool_down_ms: u64, now_ms: u64, random: u64) -> Transition {
        let half = cool_down_ms / 2;
        let wait = half + random % (cool_down_ms - half + 1);
        self.state = BreakerState::Open { until_ms: now_ms.saturating_add(wait), cool_down_ms };
        Transition::Opened { for_ms: wait }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::{any, proptest};

    use super::*;

    const POLICY: BreakerPolicy = BreakerPolicy { threshold: 3, cool_down_ms: 1_000, max_cool_down_ms: 8_000 };

    fn opened(b: &mut Breaker, now_ms: u64) {
        for id in 0..3 {
            assert!(b.acquire(id, now_ms).is_some());
            b.on_failure(id, now_ms, 0);
        }
    }

    #[test]
    fn a_good_answer_in_panic_closes_an_open_breaker_and_a_bad_one_leaves_it() {
        let mut b = Breaker::new(POLICY);
        opened(&mut b, 0);
        assert_eq!(b.on_panic_answer(false), None);
        assert!(matches!(b.state(), BreakerState::Open { .. }));
        assert_eq!(b.on_panic_answer(true), Some(Transition::Closed));
        assert!(b.admits(1));
        assert_eq!(b.on_panic_answer(true), None, "nothing to close");
    }

    #[test]
    fn threshold_consecutive_failures_open_it_and_a_success_resets_the_count() {
        let mut b = Breaker::new(POLICY);
        assert_eq!(b.on_failure(1, 0, 0), None);
        assert_eq!(b.on_failure(2, 0, 0), None);
        assert_eq!(b.on_success(3), None);
        assert_eq!(b.on_failure(4, 0, 0), None);
        assert_eq!(b.on_failure(5, 0, 0), None);
        assert!(matches!(b.on_failure(6, 10, 0), Some(Transition::Opened { for_ms: 500 })));
        assert!(!b.admits(10));
        assert_eq!(b.next_chance_ms(10), Some(510));
        assert_eq!(b.acquire(7, 10), None);
    }

    #[test]
    fn after_the_cool_down_exactly_one_probe_goes_and_its_success_closes() {
        let mut b = Breaker::new(POLICY);
        opened(&mut b, 0);
        assert!(b.admits(500));
        assert_eq!(b.acquire(10, 500), Some(Some(Transition::Probing)));
        assert_eq!(b.acquire(11, 500), None, "only one probe at a time");
        assert_eq!(b.next_chance_ms(600), Some(600), "the probe's outcome decides");
        assert_eq!(b.on_success(9), None, "an older exchange's success does not close it");
        assert_eq!(b.on_success(10), Some(Transition::Closed));
        assert_eq!(b.acquire(12, 501), Some(None));
    }

    #[test]
    fn a_failed_probe_doubles_the_cool_down_up_to_the_bound() {
        let mut b = Breaker::new(POLICY);
        opened(&mut b, 0);
        let mut now = 0;
        for expected in [2_000, 4_000, 8_000, 8_000] {
            now += 10_000;
            assert_eq!(b.acquire(now, now), Some(Some(Transition::Probing)));
            // random = u64::MAX - 1 picks near the top of [half, all].
            let Some(Transition::Opened { for_ms }) = b.on_failure(now, now, u64::MAX - 1) else {
                panic!("a failed probe reopens")
            };
            assert!((expected / 2..=expected).contains(&for_ms), "{for_ms} for {expected}");
            assert_eq!(b.state(), BreakerState::Open { until_ms: now + for_ms, cool_down_ms: expected });
        }
    }

    #[test]
    fn an_abandoned_probe_hands_the_probe_to_the_next_request() {
        let mut b = Breaker::new(POLICY);
        opened(&mut b, 0);
        assert_eq!(b.acquire(10, 1_000), Some(Some(Transition::Probing)));
        b.on_abandoned(10, 1_200);
        assert_eq!(b.acquire(11, 1_200), Some(Some(Transition::Probing)));
    }

    #[test]
    fn active_probes_feed_the_same_breaker() {
        let mut b = Breaker::new(POLICY);
        assert_eq!(b.on_probe(false, 0, 0), None);
        assert_eq!(b.on_probe(true, 0, 0), None, "a good probe resets the count");
        assert_eq!(b.on_probe(false, 0, 0), None);
        assert_eq!(b.on_probe(false, 0, 0), None);
        assert!(matches!(b.on_probe(false, 0, 0), Some(Transition::Opened { .. })));
        assert_eq!(b.on_probe(true, 100, 0), None, "still cooling down");
        assert!(
            matches!(b.on_probe(false, 1_000, u64::MAX - 1), Some(Transition::Opened { for_ms }) if for_ms > 1_000)
        );
        let BreakerState::Open { until_ms, .. } = b.state() else { panic!("open") };
        assert_eq!(b.on_probe(true, until_ms, 0), Some(Transition::Closed));
        // A request probe in flight is left to decide.
        opened(&mut b, 10_000);
        assert_eq!(b.acquire(99, 20_000), Some(Some(Transition::Probing)));
        assert_eq!(b.on_probe(true, 20_000, 0), None);
    }

    #[test]
    fn statuses_that_count_as_node_failures() {
        assert!(counts_as_failure(500) && counts_as_failure(502) && counts_as_failure(503) && counts_as_failure(504));
        assert!(!counts_as_failure(501), "501 is a missing feature, not a sick node");
        assert!(!counts_as_failure(404) && !counts_as_failure(429) && !counts_as_failure(200));
    }

    proptest! {
        #[test]
        fn jitter_stays_within_half_and_all_of_the_cool_down(random in any::<u64>(), now in 0u64..1 << 40) {
            let mut b = Breaker::new(POLICY);
            for id in 0..3 {
                b.on_failure(id, now, random);
            }
            let BreakerState::Open { until_ms, .. } = b.state() else { panic!("open") };
            assert!((now + 500..=now + 1_000).contains(&until_ms));
        }
    }
}
