//! A node's traffic over the last hour, for `edge-router status`: attempts,
//! failures, requests served, and a latency histogram, kept in twelve
//! five-minute slots so that old traffic ages out without a clock.
//!
//! Latencies go into log-linear buckets (four per power of two), so a
//! percentile read back is within about 12% of the true value.

/// Length of one slot.
const SLOT_MS: u64 = 5 * 60 * 1000;
/// Slots kept: one hour.
pub const SLOTS: usize = 12;
/// Histogram buckets: enough for 2^36 µs (19 hours).
const BUCKETS: usize = 4 * 36;

#[derive(Debug, Clone)]
struct Slot {
    /// `now_ms / SLOT_MS` of the slot's traffic; `u64::MAX` when empty.
    index: u64,
    attempts: u32,
    failures: u32,
    served: u32,
    latency: [u32; BUCKETS],
}

impl Slot {
    const EMPTY: Self = Self { index: u64::MAX, attempts: 0, failures: 0, served: 0, latency: [0; BUCKETS] };
}

/// What a window holds for the last hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrafficSummary {
    /// Attempts sent to the node (fallbacks included).
    pub attempts: u64,
    /// Attempts that failed (connection, timeout, 5xx other than 501, a broken body).
    pub failures: u64,
    /// Client requests the node served.
    pub served: u64,
    /// Median time to the response head, in microseconds.
    pub p50_us: Option<u64>,
    /// 95th percentile of the same.
    pub p95_us: Option<u64>,
    /// 99th percentile of the same.
    pub p99_us: Option<u64>,
    /// Client requests served in each five minutes of the hour, oldest
    /// first; the last is the five minutes under way.
    pub served_per_slot: [u64; SLOTS],
}

/// One node's traffic of the last hour.
#[derive(Debug, Clone)]
pub struct TrafficWindow {
    slots: Box<[Slot; SLOTS]>,
}

impl Default for TrafficWindow {
    fn default() -> Self {
        Self { slots: Box::new([Slot::EMPTY; SLOTS]) }
    }
}

fn bucket(us: u64) -> usize {
    if us < 8 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros() as usize; // ≥ 3
    let sub = ((us >> (exp - 2)) & 3) as usize;
    (4 * (exp - 1) + sub).min(BUCKETS - 1)
}

/// The middle of bucket `b`, in microseconds.
fn bucket_value(b: usize) -> u64 {
    if b < 8 {
        return b as u64;
    }
    let exp = b / 4 + 1;
    let sub = (b % 4) as u64;
    let width = 1u64 << (exp - 2);
    (1u64 << exp) + sub * width + width / 2
}

impl TrafficWindow {
    fn slot(&mut self, now_ms: u64) -> &mut Slot {
        let index = now_ms / SLOT_MS;
        let slot = &mut self.slots[(index % SLOTS as u64) as usize];
        if slot.index != index {
            *slot = Slot { index, ..Slot::EMPTY };
        }
        slot
    }

    /// An attempt got a response head after `latency_us`; `failed` if its
    /// status counts as the node's failure.
    pub fn answered(&mut self, now_ms: u64, latency_us: u64, failed: bool) {
        let slot = self.slot(now_ms);
        slot.attempts = slot.attempts.saturating_add(1);
        slot.failures = slot.failures.saturating_add(u32::from(failed));
        let b = &mut slot.latency[bucket(latency_us)];
        *b = b.saturating_add(1);
    }

    /// An attempt failed without a response head.
    pub fn failed(&mut self, now_ms: u64) {
        let slot = self.slot(now_ms);
        slot.attempts = slot.attempts.saturating_add(1);
        slot.failures = slot.failures.saturating_add(1);
    }

    /// An answered attempt's body broke off: it becomes a failure.
    pub fn broke_off(&mut self, now_ms: u64) {
        let slot = self.slot(now_ms);
        slot.failures = slot.failures.saturating_add(1);
    }

    /// The node served a client request.
    pub fn served(&mut self, now_ms: u64) {
        let slot = self.slot(now_ms);
        slot.served = slot.served.saturating_add(1);
    }

    /// Totals and latency percentiles of the last hour.
    pub fn summary(&self, now_ms: u64) -> TrafficSummary {
        let current = now_ms / SLOT_MS;
        let mut sum = TrafficSummary::default();
        let mut histogram = [0u64; BUCKETS];
        for slot in self.slots.iter().filter(|s| s.index <= current && current - s.index < SLOTS as u64) {
            sum.attempts += u64::from(slot.attempts);
            sum.failures += u64::from(slot.failures);
            sum.served += u64::from(slot.served);
            sum.served_per_slot[SLOTS - 1 - (current - slot.index) as usize] = u64::from(slot.served);
            for (h, n) in histogram.iter_mut().zip(slot.latency.iter()) {
                *h += u64::from(*n);
            }
        }
        let total: u64 = histogram.iter().sum();
        let percentile = |q: u64| {
            let rank = (total * q).div_ceil(100).max(1);
            let mut seen = 0;
            histogram.iter().position(|n| {
                seen += n;
                seen >= rank
            })
        };
        if total > 0 {
            sum.p50_us = percentile(50).map(bucket_value);
            sum.p95_us = percentile(95).map(bucket_value);
            sum.p99_us = percentile(99).map(bucket_value);
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_within_an_eighth_of_their_values() {
        let mut last = 0;
        for us in (0..200_000u64).chain([10_000_000, 1 << 35]) {
            let b = bucket(us);
            assert!(b >= last, "bucket order at {us}");
            last = b;
            if us >= 8 {
                let v = bucket_value(b) as f64;
                assert!((v - us as f64).abs() / us as f64 <= 0.125, "{us} µs read back as {v}");
            }
        }
    }

    #[test]
    fn percentiles_and_totals_cover_the_last_hour_only() {
        let mut w = TrafficWindow::default();
        // 90 answers at ~1 ms, 8 at ~100 ms and 2 at ~1 s, one failure among them.
        for i in 0..100u64 {
            let latency = match i {
                0..90 => 1_000,
                90..98 => 100_000,
                _ => 1_000_000,
            };
            w.answered(1_000 + i, latency, i == 0);
        }
        w.failed(2_000);
        w.served(2_000);
        let s = w.summary(3_000);
        assert_eq!((s.attempts, s.failures, s.served), (101, 2, 1));
        let p50 = s.p50_us.unwrap_or_default();
        let p95 = s.p95_us.unwrap_or_default();
        assert!((900..=1_100).contains(&p50), "p50 {p50}");
        assert!((90_000..=110_000).contains(&p95), "p95 {p95}");
        let p99 = s.p99_us.unwrap_or_default();
        assert!((900_000..=1_100_000).contains(&p99), "p99 {p99}: the 99th of 100 is a ~1 s one");
        assert_eq!(s.served_per_slot[SLOTS - 1], 1);
        // Ten minutes on, that slot is the third from the end.
        let mut on = w.clone();
        on.served(3_000 + 2 * SLOT_MS);
        assert_eq!(on.summary(3_000 + 2 * SLOT_MS).served_per_slot[SLOTS - 3..], [1, 0, 1]);
        // An hour later that traffic has aged out.
        let later = 1_000 + 12 * SLOT_MS;
        assert_eq!(w.summary(later), TrafficSummary::default());
        w.served(later);
        assert_eq!(w.summary(later).served, 1, "the slot is reused for new traffic");
    }
}
