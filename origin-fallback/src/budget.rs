//! A retry budget: retries (fallback attempts after a failed one) may add at
//! most a fixed share to the requests of the last few seconds, plus a small
//! floor so a quiet router can still fail over. When every node is failing,
//! this turns a retry storm (each request tried on every node) into at most
//! `ratio` extra load. The idea is tower's retry budget; this one is a
//! deterministic sliding window of one-second buckets, with time passed in.

/// Seconds of history the budget looks at.
const WINDOW_S: usize = 10;

/// How generous the budget is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries allowed per request, e.g. `0.2` for one in five.
    pub ratio: f64,
    /// Retries allowed per second whatever the traffic.
    pub min_per_second: u32,
}

/// Requests and retries of the last `WINDOW_S` seconds.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    policy: RetryPolicy,
    /// Per second (index = second % WINDOW_S): (that second, requests, retries).
    buckets: [(u64, u32, u32); WINDOW_S],
}

impl RetryBudget {
    /// An empty budget.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy, buckets: [(u64::MAX, 0, 0); WINDOW_S] }
    }

    /// Goes on under `policy` (a reloaded config's), with the window as it is.
    pub fn set_policy(&mut self, policy: RetryPolicy) {
        self.policy = policy;
    }

    /// Counts a new client request.
    pub fn deposit(&mut self, now_ms: u64) {
        let bucket = self.bucket(now_ms);
        bucket.1 = bucket.1.saturating_add(1);
    }

    /// Takes one retry from the budget if it allows one.
    pub fn try_withdraw(&mut self, now_ms: u64) -> bool {
        if !self.allows(now_ms) {
            return false;
        }
        let bucket = self.bucket(now_ms);
        bucket.2 = bucket.2.saturating_add(1);
        true
    }

    /// Whether a retry would be allowed now, without taking it.
    pub fn allows(&self, now_ms: u64) -> bool {
        let second = now_ms / 1000;
        let (requests, retries) = self
            .buckets
            .iter()
            .filter(|(s, ..)| *s != u64::MAX && *s + WINDOW_S as u64 > second && *s <= second)
            .fold((0u64, 0u64), |(q, r), (_, bq, br)| (q + u64::from(*bq), r + u64::from(*br)));
        let allowed = f64::from(self.policy.min_per_second) * WINDOW_S as f64 + requests as f64 * self.policy.ratio;
        (retries as f64) + 1.0 <= allowed
    }

    fn bucket(&mut self, now_ms: u64) -> &mut (u64, u32, u32) {
        let second = now_ms / 1000;
        let bucket = &mut self.buckets[(second % WINDOW_S as u64) as usize];
        if bucket.0 != second {
            *bucket = (second, 0, 0);
        }
        bucket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy { ratio: 0.2, min_per_second: 1 };

    #[test]
    fn retries_are_capped_at_the_floor_plus_a_share_of_requests() {
        let mut b = RetryBudget::new(POLICY);
        for _ in 0..100 {
            b.deposit(5_000);
        }
        // Floor: 1/s over 10 s = 10, plus 20% of 100 requests = 20.
        let granted = (0..100).filter(|_| b.try_withdraw(5_500)).count();
        assert_eq!(granted, 30);
    }

    #[test]
    fn the_window_slides() {
        let mut b = RetryBudget::new(RetryPolicy { ratio: 0.0, min_per_second: 1 });
        assert_eq!((0..20).filter(|_| b.try_withdraw(0)).count(), 10);
        assert!(!b.try_withdraw(9_999), "the retries at second 0 still count");
        assert!(b.try_withdraw(10_000), "ten seconds later they have left the window");
    }

    #[test]
    fn a_quiet_router_can_still_fail_over() {
        let mut b = RetryBudget::new(POLICY);
        b.deposit(0);
        assert!(b.try_withdraw(0));
    }
}
