//! Daily cost budgets: a node's spending today, with the cost of requests
//! still in flight reserved ahead.
//!
//! Before a request is forwarded, its estimated cost is reserved; a node
//! whose spending plus reservations plus the new estimate would pass its
//! `max_cost_per_day` gets no attempt. When the response ends, the
//! reservation is released and the real cost (from the response's `usage`,
//! or the estimate when there is none) is added. Days start at midnight of a
//! fixed UTC offset. Time is passed in.

/// Milliseconds in a day.
pub const MS_PER_DAY: u64 = 86_400_000;

/// Budget days: midnight to midnight at a fixed offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BudgetDay {
    /// Minutes east of UTC (`+02:00` is 120).
    pub utc_offset_minutes: i32,
}

impl BudgetDay {
    fn shift_ms(self) -> i64 {
        i64::from(self.utc_offset_minutes) * 60_000
    }

    /// The number of the day `now_ms` falls in (days since 1970-01-01 at the offset).
    pub fn of(self, now_ms: u64) -> u32 {
        let local = i64::try_from(now_ms).unwrap_or(i64::MAX).saturating_add(self.shift_ms()).max(0);
        u32::try_from(local.unsigned_abs() / MS_PER_DAY).unwrap_or(u32::MAX)
    }

    /// When day `day` ends and the next begins, in milliseconds since the epoch.
    pub fn end_ms(self, day: u32) -> u64 {
        let local_end = (i64::from(day) + 1) * MS_PER_DAY as i64;
        u64::try_from(local_end - self.shift_ms()).unwrap_or(0)
    }
}

/// One node's spending on the current day.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DailySpend {
    day: u32,
    spent: f64,
    reserved: f64,
}

impl DailySpend {
    /// Moves to `day` if it is later: spending starts again from zero.
    /// Reservations stay, since their requests are still in flight.
    fn roll(&mut self, day: u32) {
        if day > self.day {
            self.day = day;
            self.spent = 0.0;
        }
    }

    /// Spending settled on `day` (zero if the record is of an earlier day).
    pub fn spent(&self, day: u32) -> f64 {
        if day > self.day { 0.0 } else { self.spent }
    }

    /// Cost reserved by requests in flight.
    pub fn reserved(&self) -> f64 {
        self.reserved
    }

    /// The day the record is of.
    pub fn day(&self) -> u32 {
        self.day
    }

    /// Whether a request estimated at `estimate` fits under `limit` on `day`.
    pub fn admits(&self, day: u32, limit: Option<f64>, estimate: f64) -> bool {
        limit.is_none_or(|limit| self.spent(day) + self.reserved + estimate <= limit)
    }

    /// Reserves `amount` for a request about to be forwarded.
    pub fn reserve(&mut self, day: u32, amount: f64) {
        self.roll(day);
        self.reserved += amount;
    }

    /// A request ended on `day`: releases its reservation and adds what it cost.
    pub fn settle(&mut self, day: u32, reserved: f64, cost: f64) {
        self.roll(day);
        self.reserved = (self.reserved - reserved).max(0.0);
        self.spent += cost;
    }

    /// Takes over spending recorded elsewhere (by the host, across a module
    /// reload); a record of an older day than the one held is ignored.
    pub fn restore(&mut self, day: u32, spent: f64) {
        if day > self.day || (day == self.day && spent > self.spent) {
            self.day = day;
            self.spent = spent;
        }
    }
}

/// A node's spending as a ledger shared by many routers keeps it (the
/// Workers build's `BudgetLedger` Durable Object, one per node): each router
/// reserves a request's estimate here before forwarding it and settles the
/// reservation at the real cost when the response ends. A reservation that
/// is never settled (its router went away) expires, so it cannot hold the
/// budget forever.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ledger {
    /// The day the spending is of.
    pub day: u32,
    /// Settled spending on `day`.
    pub spent: f64,
    /// Open reservations: token, amount, expiry (ms since the epoch).
    pub open: Vec<(u64, f64, u64)>,
    /// The last token handed out.
    pub last_token: u64,
}

/// What a [`Ledger`] says to a reservation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reserved {
    /// Held under this token until settled or expired.
    Granted { token: u64, spent: f64 },
    /// It would pass the limit; `spent` is today's settled spending.
    Refused { spent: f64 },
}

impl Ledger {
    /// Moves to `day` if it is later: spending starts again from zero, and
    /// the old day's reservations go (their settlements are of that day and
    /// are dropped).
    fn roll(&mut self, day: u32, now_ms: u64) {
        if day > self.day {
            self.day = day;
            self.spent = 0.0;
            self.open.clear();
        }
        self.open.retain(|&(_, _, expires_ms)| expires_ms > now_ms);
    }

    /// Reserves `amount` on `day` if settled spending, open reservations and
    /// `amount` stay within `limit`; the reservation lapses at `expires_ms`.
    pub fn reserve(&mut self, day: u32, amount: f64, limit: f64, now_ms: u64, expires_ms: u64) -> Reserved {
        self.roll(day, now_ms);
        let held: f64 = self.open.iter().map(|&(_, a, _)| a).sum();
        let spent = if day < self.day { 0.0 } else { self.spent };
        if spent + held + amount > limit {
            return Reserved::Refused { spent };
        }
        self.last_token += 1;
        self.open.push((self.last_token, amount, expires_ms));
        Reserved::Granted { token: self.last_token, spent }
    }

    /// Releases reservation `token` and adds `cost` to `day`'s spending (a
    /// cost of a day already over is dropped). Returns today's spending.
    pub fn settle(&mut self, token: u64, day: u32, cost: f64, now_ms: u64) -> f64 {
        self.roll(day, now_ms);
        self.open.retain(|&(t, _, _)| t != token);
        if day == self.day {
            self.spent += cost.max(0.0);
        }
        self.spent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_refuses_what_would_pass_the_limit_counting_open_reservations() {
        let mut ledger = Ledger::default();
        let Reserved::Granted { token: a, .. } = ledger.reserve(3, 4.0, 10.0, 0, 1_000) else { panic!() };
        assert!(matches!(ledger.reserve(3, 4.0, 10.0, 0, 1_000), Reserved::Granted { .. }));
        assert_eq!(ledger.reserve(3, 4.0, 10.0, 0, 1_000), Reserved::Refused { spent: 0.0 });
        // Settling below the estimate frees room.
        assert_eq!(ledger.settle(a, 3, 1.0, 10), 1.0);
        assert!(matches!(ledger.reserve(3, 4.0, 10.0, 10, 1_000), Reserved::Granted { spent, .. } if spent == 1.0));
    }

    #[test]
    fn unsettled_reservations_expire_and_a_new_day_starts_from_zero() {
        let mut ledger = Ledger::default();
        assert!(matches!(ledger.reserve(3, 9.0, 10.0, 0, 500), Reserved::Granted { .. }));
        assert_eq!(ledger.reserve(3, 2.0, 10.0, 499, 2_000), Reserved::Refused { spent: 0.0 });
        assert!(matches!(ledger.reserve(3, 2.0, 10.0, 500, 2_000), Reserved::Granted { .. }));
        let Reserved::Granted { token, .. } = ledger.reserve(3, 1.0, 10.0, 600, 2_000) else { panic!() };
        assert_eq!(ledger.settle(token, 3, 7.5, 700), 7.5);
        assert_eq!(ledger.reserve(3, 2.0, 10.0, 800, 2_000), Reserved::Refused { spent: 7.5 });
        // The next day: spending and the old day's reservations (2.5 still
        // open) start again; a late settlement of the old day is dropped.
        assert!(matches!(ledger.reserve(3, 0.5, 10.0, 850, 3_000), Reserved::Granted { .. }));
        assert!(matches!(ledger.reserve(4, 9.5, 10.0, 900, 3_000), Reserved::Granted { spent, .. } if spent == 0.0));
        assert_eq!(ledger.settle(99, 3, 5.0, 950), 0.0);
    }

    const DAY: u64 = MS_PER_DAY;

    #[test]
    fn days_start_at_midnight_of_the_offset() {
        let utc = BudgetDay::default();
        assert_eq!((utc.of(DAY - 1), utc.of(DAY)), (0, 1));
        assert_eq!(utc.end_ms(0), DAY);
        // At +02:00 the day starts two hours before UTC midnight.
        let cest = BudgetDay { utc_offset_minutes: 120 };
        assert_eq!(cest.of(DAY - 2 * 3_600_000 - 1), 0);
        assert_eq!(cest.of(DAY - 2 * 3_600_000), 1);
        assert_eq!(cest.end_ms(1), 2 * DAY - 2 * 3_600_000);
        let west = BudgetDay { utc_offset_minutes: -300 };
        assert_eq!(west.of(DAY + 5 * 3_600_000), 1);
        assert_eq!(west.of(0), 0, "before the epoch at the offset clamps to day 0");
    }

    #[test]
    fn reservations_count_against_the_limit_until_settled() {
        let mut s = DailySpend::default();
        assert!(s.admits(0, Some(1.0), 0.6));
        s.reserve(0, 0.6);
        assert!(!s.admits(0, Some(1.0), 0.6), "0.6 reserved + 0.6 would pass 1.0");
        s.settle(0, 0.6, 0.2);
        assert_eq!((s.spent(0), s.reserved()), (0.2, 0.0));
        assert!(s.admits(0, Some(1.0), 0.6));
        assert!(s.admits(0, None, 1e9), "no limit, no refusal");
    }

    #[test]
    fn a_new_day_starts_from_zero_but_keeps_reservations_in_flight() {
        let mut s = DailySpend::default();
        s.reserve(0, 0.5);
        s.settle(0, 0.0, 2.0);
        assert!(!s.admits(0, Some(2.0), 0.1));
        assert!(s.admits(1, Some(2.0), 0.1), "spending of yesterday does not count today");
        s.settle(1, 0.5, 0.4);
        assert_eq!((s.day(), s.spent(1), s.reserved()), (1, 0.4, 0.0));
    }

    #[test]
    fn restore_keeps_the_newer_record() {
        let mut s = DailySpend::default();
        s.settle(3, 0.0, 1.0);
        s.restore(2, 9.0);
        assert_eq!(s.spent(3), 1.0, "an older day's record is ignored");
        s.restore(3, 4.0);
        assert_eq!(s.spent(3), 4.0);
        s.restore(4, 0.5);
        assert_eq!((s.day(), s.spent(4)), (4, 0.5));
    }
}
