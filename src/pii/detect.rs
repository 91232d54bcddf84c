//! The detectors: hand-written scanners over a text's bytes, one pass each
//! at most, with the checksums that tell a real value from a look-alike
//! (Luhn for cards, MOD 97 for IBANs, MOD 11-2 for Chinese resident IDs).
//! No regular expressions: the edge module and the Worker carry no regex
//! engine for the built-in kinds, and each scanner skips ahead at once
//! over text that cannot start a value.

use super::{Finding, Kind};

fn is_digit(b: u8) -> bool {
    b.is_ascii_digit()
}

/// Whether the byte before `at` (if any) continues a word, so that a value
/// starting at `at` would be the tail of something longer.
fn word_before(text: &[u8], at: usize) -> bool {
    at > 0 && (text[at - 1].is_ascii_alphanumeric() || text[at - 1] == b'_')
}

/// Whether the byte at `at` (if any) continues a word.
fn word_after(text: &[u8], at: usize) -> bool {
    text.get(at).is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The first digit at or after `from`.
fn next_digit(text: &[u8], from: usize) -> Option<usize> {
    text[from..].iter().position(|&b| is_digit(b)).map(|p| from + p)
}

/// Just past the run of digits that goes on after `at`: no value starts
/// inside a run (the digit before it continues it), so a scanner that
/// rules out a start at `at` goes on from here.
fn past_run(text: &[u8], at: usize) -> usize {
    let mut i = at + 1;
    while i < text.len() && is_digit(text[i]) {
        i += 1;
    }
    i
}

/// E-mail addresses: a local part of letters, digits and `._%+-`, an `@`,
/// and a domain of at least two labels whose last is two or more letters.
pub(super) fn emails(text: &[u8], found: &mut Vec<Finding>) {
    let local = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-');
    let domain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-');
    let mut from = 0;
    while let Some(at) = text[from..].iter().position(|&b| b == b'@').map(|i| from + i) {
        from = at + 1;
        let mut start = at;
        while start > 0 && local(text[start - 1]) {
            start -= 1;
        }
        while start < at && text[start] == b'.' {
            start += 1;
        }
        let mut end = at + 1;
        while end < text.len() && domain(text[end]) {
            end += 1;
        }
        while end > at + 1 && matches!(text[end - 1], b'.' | b'-') {
            end -= 1;
        }
        if start == at || end == at + 1 || text[at - 1] == b'.' {
            continue;
        }
        let host = &text[at + 1..end];
        let labels: Vec<&[u8]> = host.split(|&b| b == b'.').collect();
        let tld = labels.last().copied().unwrap_or_default();
        let ok = labels.len() >= 2
            && labels.iter().all(|l| !l.is_empty() && l[0] != b'-')
            && tld.len() >= 2
            && tld.iter().all(u8::is_ascii_alphabetic);
        if ok {
            found.push(Finding { kind: Kind::Email, start, end });
            from = end;
        }
    }
}

/// Up to 24 small numbers (digits, or the lengths of digit groups), on the
/// stack: the scanners look at every run of digits in a text, and an
/// allocation each would cost more than the scan.
#[derive(Default)]
struct Small {
    values: [u8; 24],
    len: usize,
}

impl Small {
    fn push(&mut self, v: u8) {
        if let Some(slot) = self.values.get_mut(self.len) {
            *slot = v;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.values[..self.len]
    }
}

impl std::ops::Deref for Small {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// A run of digits with single separators (`sep`) between groups, from
/// `start`: its end and the digits in it (reading stops past `max`, at most 23).
fn digit_run(text: &[u8], start: usize, seps: &[u8], max: usize) -> (usize, Small) {
    let mut digits = Small::default();
    let mut i = start;
    let mut end = start;
    while i < text.len() && digits.len() <= max {
        let b = text[i];
        if is_digit(b) {
            digits.push(b - b'0');
            i += 1;
            end = i;
        } else if seps.contains(&b) && i + 1 < text.len() && is_digit(text[i + 1]) && end == i {
            i += 1;
        } else {
            break;
        }
    }
    (end, digits)
}

/// Luhn's checksum (ISO/IEC 7812-1), over digits most significant first.
pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether `digits` start like a card of a network that issues them, at a
/// length it uses (Visa, Mastercard, Maestro, Amex, Discover, JCB, Diners,
/// UnionPay).
fn card_prefix(digits: &[u8]) -> bool {
    let n = digits.len();
    let lead = |k: usize| digits.iter().take(k).fold(0u32, |acc, &d| acc * 10 + u32::from(d));
    // Maestro: 50 and 56 to 69, 12 to 19 digits, as the network publishes its ranges.
    let maestro = (lead(2) == 50 || (56..=69).contains(&lead(2))) && (12..=19).contains(&n);
    let old_jcb = matches!(lead(4), 1800 | 2131) && n == 15;
    maestro
        || old_jcb
        || match digits.first() {
            Some(4) => matches!(n, 13 | 16 | 19),
            Some(5) => (51..=55).contains(&lead(2)) && n == 16,
            Some(2) => (2221..=2720).contains(&lead(4)) && n == 16,
            Some(3) => {
                (matches!(lead(2), 34 | 37) && n == 15)
                    || ((3528..=3589).contains(&lead(4)) && (16..=19).contains(&n))
                    || ((matches!(lead(2), 36 | 38 | 39) || (300..=305).contains(&lead(3))) && (14..=19).contains(&n))
            }
            Some(6) => {
                (lead(4) == 6011 || lead(2) == 65 || (644..=649).contains(&lead(3)) || lead(2) == 62)
                    && (16..=19).contains(&n)
            }
            _ => false,
        }
}

/// Payment card numbers: 12 (Maestro) to 19 digits, in groups separated by single
/// spaces or hyphens or none, with a card network's prefix and length and
/// a valid Luhn check digit.
pub(super) fn cards(text: &[u8], found: &mut Vec<Finding>) {
    let mut i = 0;
    while i < text.len() {
        let Some(digit) = next_digit(text, i) else { break };
        i = digit;
        if word_before(text, i) || (i > 0 && matches!(text[i - 1], b'.' | b'-' | b'+')) {
            i = past_run(text, i);
            continue;
        }
        let (end, digits) = digit_run(text, i, b" -", 19);
        let ok = (12..=19).contains(&digits.len())
            && !word_after(text, end)
            && !(end < text.len()
                && matches!(text[end], b'.' | b'-')
                && text.get(end + 1).is_some_and(|b| is_digit(*b)))
            && card_prefix(&digits)
            && luhn(&digits);
        if ok {
            found.push(Finding { kind: Kind::Card, start: i, end });
        }
        i = end.max(i + 1);
    }
}

/// The length of an IBAN in each country that issues them (SWIFT's IBAN
/// registry); other country codes are not IBANs.
fn iban_length(country: &[u8]) -> Option<usize> {
    const LENGTHS: &[(&[u8; 2], usize)] = &[
        (b"AD", 24),
        (b"AE", 23),
        (b"AL", 28),
        (b"AT", 20),
        (b"AZ", 28),
        (b"BA", 20),
        (b"BE", 16),
        (b"BG", 22),
        (b"BH", 22),
        (b"BR", 29),
        (b"BY", 28),
        (b"CH", 21),
        (b"CR", 22),
        (b"CY", 28),
        (b"CZ", 24),
        (b"DE", 22),
        (b"DK", 18),
        (b"DO", 28),
        (b"EE", 20),
        (b"EG", 29),
        (b"ES", 24),
        (b"FI", 18),
        (b"FO", 18),
        (b"FR", 27),
        (b"GB", 22),
        (b"GE", 22),
        (b"GI", 23),
        (b"GL", 18),
        (b"GR", 27),
        (b"GT", 28),
        (b"HR", 21),
        (b"HU", 28),
        (b"IE", 22),
        (b"IL", 23),
        (b"IQ", 23),
        (b"IS", 26),
        (b"IT", 27),
        (b"JO", 30),
        (b"KW", 30),
        (b"KZ", 20),
        (b"LB", 28),
        (b"LC", 32),
        (b"LI", 21),
        (b"LT", 20),
        (b"LU", 20),
        (b"LV", 21),
        (b"MC", 27),
        (b"MD", 24),
        (b"ME", 22),
        (b"MK", 19),
        (b"MR", 27),
        (b"MT", 31),
        (b"MU", 30),
        (b"NL", 18),
        (b"NO", 15),
        (b"PK", 24),
        (b"PL", 28),
        (b"PS", 29),
        (b"PT", 25),
        (b"QA", 29),
        (b"RO", 24),
        (b"RS", 22),
        (b"SA", 24),
        (b"SC", 31),
        (b"SE", 24),
        (b"SI", 19),
        (b"SK", 24),
        (b"SM", 27),
        (b"ST", 25),
        (b"SV", 28),
        (b"TL", 23),
        (b"TN", 24),
        (b"TR", 26),
        (b"UA", 29),
        (b"VA", 22),
        (b"VG", 24),
        (b"XK", 20),
    ];
    LENGTHS.iter().find(|(c, _)| &c[..] == country).map(|&(_, n)| n)
}

/// ISO 13616's check: the first four characters moved to the end, letters
/// as 10..35, the number modulo 97 is 1.
fn iban_valid(chars: &[u8]) -> bool {
    let mut rem = 0u32;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

/// IBANs: a country's code, two check digits and its length of letters and
/// digits, whole or in groups of four separated by single spaces, with a
/// valid MOD 97 check.
pub(super) fn ibans(text: &[u8], found: &mut Vec<Finding>) {
    let mut i = 0;
    while i + 4 <= text.len() {
        let head = &text[i..i + 4];
        let starts = head[0].is_ascii_uppercase()
            && head[1].is_ascii_uppercase()
            && is_digit(head[2])
            && is_digit(head[3])
            && !word_before(text, i);
        let Some(len) = starts.then(|| iban_length(&head[..2])).flatten() else {
            i += 1;
            continue;
        };
        // Collect up to `len` characters, allowing one space between groups of four.
        let mut chars = Vec::with_capacity(len);
        let mut j = i;
        while j < text.len() && chars.len() < len {
            let b = text[j];
            if b.is_ascii_digit() || b.is_ascii_uppercase() {
                chars.push(b);
                j += 1;
            } else if b == b' ' && chars.len() % 4 == 0 && j + 1 < text.len() && text[j + 1].is_ascii_alphanumeric() {
                j += 1;
            } else {
                break;
            }
        }
        if chars.len() == len && !word_after(text, j) && iban_valid(&chars) {
            found.push(Finding { kind: Kind::Iban, start: i, end: j });
            i = j;
        } else {
            i += 1;
        }
    }
}

/// IPv4 addresses: four decimal numbers 0 to 255 joined by dots, not part
/// of a longer dotted run (a version `1.2.3.4.5`) nor after a `v`.
pub(super) fn ipv4s(text: &[u8], found: &mut Vec<Finding>) {
    // An address's first number is followed by a dot: the scan goes from dot to dot.
    let mut from = 0;
    while let Some(dot) = text[from..].iter().position(|&b| b == b'.').map(|d| from + d) {
        let mut i = dot;
        while i > from && is_digit(text[i - 1]) {
            i -= 1;
        }
        // It starts a run of digits that follows no word or dot.
        if i == dot || (i > 0 && (text[i - 1].is_ascii_alphanumeric() || text[i - 1] == b'.')) {
            from = dot + 1;
            continue;
        }
        let mut j = i;
        let mut parts = 0;
        let mut ok = true;
        while parts < 4 {
            let start = j;
            while j < text.len() && is_digit(text[j]) && j - start < 4 {
                j += 1;
            }
            let digits = &text[start..j];
            let value: u32 = digits.iter().fold(0, |a, &d| a * 10 + u32::from(d - b'0'));
            if digits.is_empty() || digits.len() > 3 || value > 255 || (digits.len() > 1 && digits[0] == b'0') {
                ok = false;
                break;
            }
            parts += 1;
            if parts < 4 {
                if j < text.len() && text[j] == b'.' {
                    j += 1;
                } else {
                    ok = false;
                    break;
                }
            }
        }
        let longer = j < text.len()
            && (text[j].is_ascii_alphanumeric() || (text[j] == b'.' && text.get(j + 1).is_some_and(|b| is_digit(*b))));
        if ok && !longer {
            found.push(Finding { kind: Kind::Ipv4, start: i, end: j });
            from = j;
        } else {
            // Skip the rest of this run of digits and dots.
            from = i;
            while from < text.len() && (is_digit(text[from]) || text[from] == b'.') {
                from += 1;
            }
        }
    }
}

/// IPv6 addresses, as `std::net::Ipv6Addr` reads them, written with at
/// least two colons and either all eight groups or `::` with a digit: a
/// clock time (`12:30:45`) has too few groups, `std::vec` no hex run.
pub(super) fn ipv6s(text: &[u8], found: &mut Vec<Finding>) {
    let allowed = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
    // Only a run of hex digits, colons and dots that holds a colon can be
    // one: the scan goes from colon to colon.
    let mut from = 0;
    while let Some(colon) = text[from..].iter().position(|&b| b == b':').map(|c| from + c) {
        let (mut run, mut j) = (colon, colon);
        while run > from && allowed(text[run - 1]) {
            run -= 1;
        }
        while j < text.len() && allowed(text[j]) {
            j += 1;
        }
        from = j;
        // A run that continues a word (`x1::2`) starts after its first colon or dot.
        let i = if word_before(text, run) {
            match text[run..j].iter().position(|&b| b == b':' || b == b'.') {
                Some(p) => run + p + 1,
                None => continue,
            }
        } else {
            run
        };
        // A sentence's full stop after the address is not part of it.
        let mut end = j;
        while end > i && text[end - 1] == b'.' {
            end -= 1;
        }
        let candidate = &text[i..end];
        let colons = candidate.iter().filter(|&&b| b == b':').count();
        let shaped = colons >= 2
            && !word_after(text, j)
            && (colons == 7 || (candidate.windows(2).any(|w| w == b"::") && candidate.iter().any(|b| is_digit(*b))));
        if shaped
            && std::str::from_utf8(candidate).ok().and_then(|s| s.parse::<std::net::Ipv6Addr>().ok()).is_some()
            && candidate != b"::"
        {
            found.push(Finding { kind: Kind::Ipv6, start: i, end });
        }
    }
}

/// US Social Security numbers written `AAA-GG-SSSS` (or with spaces), with
/// the areas, groups and serials the SSA never issues left out (000, 666,
/// 9xx; 00; 0000).
pub(super) fn us_ssns(text: &[u8], found: &mut Vec<Finding>) {
    let mut i = 0;
    while i + 11 <= text.len() {
        match next_digit(text, i) {
            Some(digit) if digit + 11 <= text.len() => i = digit,
            _ => break,
        }
        let s = &text[i..i + 11];
        let sep = s[3];
        let shaped = matches!(sep, b'-' | b' ')
            && s[6] == sep
            && s.iter().enumerate().all(|(k, &b)| k == 3 || k == 6 || is_digit(b))
            && !word_before(text, i)
            && !(i > 0 && matches!(text[i - 1], b'-' | b'.'))
            && !word_after(text, i + 11)
            && !(i + 11 < text.len() && matches!(text[i + 11], b'-') && text.get(i + 12).is_some_and(|b| is_digit(*b)));
        if shaped {
            let area = &s[..3];
            let valid = area != b"000" && area != b"666" && area[0] != b'9' && &s[4..6] != b"00" && &s[7..] != b"0000";
            if valid {
                found.push(Finding { kind: Kind::UsSsn, start: i, end: i + 11 });
                i += 11;
                continue;
            }
        }
        i = past_run(text, i);
    }
}

/// Chinese resident identity numbers (GB 11643-1999): 17 digits, a check
/// character (a digit or `X`) by ISO 7064 MOD 11-2, and a birth date
/// (YYYYMMDD, 1900 to 2099) at digits 7 to 14.
pub(super) fn cn_resident_ids(text: &[u8], found: &mut Vec<Finding>) {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let mut i = 0;
    while i + 18 <= text.len() {
        let Some(digit) = next_digit(text, i) else { break };
        i = digit;
        if i + 18 > text.len() {
            break;
        }
        if (i > 0 && is_digit(text[i - 1])) || word_before(text, i) {
            i = past_run(text, i);
            continue;
        }
        let id = &text[i..i + 18];
        let shaped = id[..17].iter().all(|&b| is_digit(b))
            && (is_digit(id[17]) || matches!(id[17], b'X' | b'x'))
            && !word_after(text, i + 18);
        if shaped {
            let d = |k: usize| u32::from(id[k] - b'0');
            let sum: u32 = (0..17).map(|k| d(k) * WEIGHTS[k]).sum();
            let year = d(6) * 1000 + d(7) * 100 + d(8) * 10 + d(9);
            let month = d(10) * 10 + d(11);
            let day = d(12) * 10 + d(13);
            let dated = (1900..=2099).contains(&year) && (1..=12).contains(&month) && (1..=31).contains(&day);
            if dated && CHECK[(sum % 11) as usize] == id[17].to_ascii_uppercase() {
                found.push(Finding { kind: Kind::CnResidentId, start: i, end: i + 18 });
                i += 18;
                continue;
            }
        }
        i = past_run(text, i);
    }
}

/// Phone numbers: international (E.164, `+` and 8 to 15 digits, in groups
/// separated by single spaces, hyphens, dots or a parenthesised area code),
/// and the national forms common enough to be safe: North American
/// `(AAA) EEE-NNNN` and `AAA-EEE-NNNN`, trunk-prefixed numbers (`0` then 9
/// or 10 more digits, grouped or not), `00` and a country code, in groups,
/// and Chinese mobiles
/// (`1[3-9]` and 9 more digits). A bare run of digits of another shape (an
/// order number) is not taken for a phone number.
pub(super) fn phones(text: &[u8], found: &mut Vec<Finding>) {
    let sep = |b: u8| matches!(b, b' ' | b'-' | b'.');
    let mut i = 0;
    while i < text.len() {
        // Straight to the next byte a number can start with.
        match text[i..].iter().position(|&b| b == b'+' || b == b'(' || is_digit(b)) {
            Some(p) => i += p,
            None => break,
        }
        let b = text[i];
        let starts =
            !(word_before(text, i) || (i > 0 && matches!(text[i - 1], b'-' | b'.' | b'+' | b'/' | b':' | b'#')));
        if !starts {
            i = past_run(text, i);
            continue;
        }
        // Read digits, single separators and one parenthesised group.
        let mut j = i + usize::from(b == b'+');
        let mut digits = 0usize;
        let mut groups = Small::default();
        let mut group = 0usize;
        let mut parens = 0;
        let mut end = j;
        while j < text.len() {
            let c = text[j];
            if is_digit(c) {
                digits += 1;
                group += 1;
                j += 1;
                end = j;
            } else if c == b'(' && parens == 0 && j + 1 < text.len() && is_digit(text[j + 1]) {
                // An area code, or the trunk `(0)` after a country code: `+44 (0)20 …`.
                if group > 0 {
                    groups.push(u8::try_from(group).unwrap_or(u8::MAX));
                    group = 0;
                }
                parens = 1;
                j += 1;
            } else if c == b')' && parens == 1 && group > 0 {
                parens = 2;
                groups.push(u8::try_from(group).unwrap_or(u8::MAX));
                group = 0;
                j += 1;
                if j + 1 < text.len() && sep(text[j]) && is_digit(text[j + 1]) {
                    j += 1;
                }
            } else if sep(c) && group > 0 && j + 1 < text.len() && (is_digit(text[j + 1]) || text[j + 1] == b'(') {
                groups.push(u8::try_from(group).unwrap_or(u8::MAX));
                group = 0;
                j += 1;
            } else {
                break;
            }
            if digits > 15 {
                break;
            }
        }
        if group > 0 {
            groups.push(u8::try_from(group).unwrap_or(u8::MAX));
        }
        // An extension: `x123`, `ext. 123`.
        let extension = [&b"x"[..], b" x", b" ext. ", b" ext "].iter().find_map(|prefix| {
            let after = end + prefix.len();
            let digits = text.get(after..)?.iter().take_while(|c| is_digit(**c)).count();
            (text[end..].starts_with(prefix) && (1..=5).contains(&digits)).then_some(after + digits)
        });
        let number_end = end;
        let end = extension.unwrap_or(end);
        let runs_on = end < text.len()
            && matches!(text[end], b'-' | b'.' | b':' | b'/')
            && text.get(end + 1).is_some_and(|c| is_digit(*c));
        let tail_ok = !word_after(text, end) && !runs_on;
        let digits_of = |from: usize| {
            let mut d = Small::default();
            text[from..number_end].iter().filter(|c| is_digit(**c)).for_each(|c| d.push(c - b'0'));
            d
        };
        let phone = tail_ok
            && parens != 1
            && digits <= 15
            && if b == b'+' {
                // International: a country code (no leading 0) and 8 to 15 digits in all.
                (8..=15).contains(&digits) && text.get(i + 1).is_some_and(|c| (b'1'..=b'9').contains(c))
            } else if b == b'(' {
                // `(AAA) EEE-NNNN`, or `(0AA) …` nationally.
                parens == 2 && (10..=11).contains(&digits) && groups.len() >= 2
            } else {
                let d = digits_of(i);
                let north_american =
                    groups.as_slice() == [3, 3, 4] && (2..=9).contains(&d[0]) && (2..=9).contains(&d[3]);
                // A trunk `0` and 9 or 10 more digits, grouped or not; or `00` and a country code.
                let trunk = d[0] == 0 && d.get(1).is_some_and(|&x| x != 0) && (10..=11).contains(&digits);
                let international = d[0] == 0
                    && d.get(1) == Some(&0)
                    && d.get(2).is_some_and(|&x| x != 0)
                    && (10..=15).contains(&digits)
                    && groups.len() >= 2;
                let cn_mobile = digits == 11 && groups.len() <= 3 && d[0] == 1 && (3..=9).contains(&d[1]);
                north_american || trunk || international || cn_mobile
            };
        if phone {
            found.push(Finding { kind: Kind::Phone, start: i, end });
            i = end;
        } else {
            i = end.max(i + 1);
        }
    }
}
