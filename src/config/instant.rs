//! Moments in time as configs write them: RFC 3339 (`2027-01-31T12:00:00Z`,
//! `2027-01-31T13:00:00+01:00`, with or without fractions of a second) or a
//! date (`2027-01-31`, its midnight UTC).

/// Milliseconds since the Unix epoch of `text`, or `None` if it is not such a moment.
pub fn parse_instant_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let (date, time) = match text.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let (year, month, day) = (number(parts.next()?, 4)?, number(parts.next()?, 2)?, number(parts.next()?, 2)?);
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || day == 0 || day > days_in(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let Some(time) = time else { return u64::try_from(days * 86_400_000).ok() };
    // The offset: `Z`, or `+hh:mm` / `-hh:mm`.
    let (clock, offset_min) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (c, off) = time.split_at(at);
        let (h, m) = off[1..].split_once(':')?;
        let minutes = number(h, 2)? * 60 + number(m, 2)?;
        (c, if off.starts_with('-') { -minutes } else { minutes })
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms = hms.splitn(3, ':');
    let (h, m, s) = (number(hms.next()?, 2)?, number(hms.next()?, 2)?, number(hms.next()?, 2)?);
    if h > 23 || m > 59 || s > 60 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis =
        fraction.bytes().chain(std::iter::repeat(b'0')).take(3).fold(0, |acc, b| acc * 10 + i64::from(b - b'0'));
    let ms = days * 86_400_000 + ((h * 60 + m - offset_min) * 60 + s.min(59)) * 1000 + millis;
    u64::try_from(ms).ok()
}

/// A number of exactly `digits` ASCII digits.
fn number(text: &str, digits: usize) -> Option<i64> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok()).flatten()
}

fn days_in(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_3339_moments_and_dates_are_read() {
        assert_eq!(parse_instant_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_instant_ms("2027-01-31"), Some(1_801_353_600_000));
        assert_eq!(parse_instant_ms("2027-01-31T00:00:00Z"), Some(1_801_353_600_000));
        assert_eq!(parse_instant_ms("2027-01-31T01:00:00+01:00"), Some(1_801_353_600_000));
        assert_eq!(parse_instant_ms("2027-01-30T23:00:00.250-01:00"), Some(1_801_353_600_250));
        assert_eq!(parse_instant_ms("2024-02-29T12:00:00Z"), Some(1_709_208_000_000));
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in
            ["", "2027-02-29", "2027-13-01", "2027-1-31", "2027-01-31T25:00:00Z", "2027-01-31T00:00:00", "tomorrow"]
        {
            assert_eq!(parse_instant_ms(bad), None, "{bad}");
        }
    }
}
