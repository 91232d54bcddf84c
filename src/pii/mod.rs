//! Personal data in prompts: what it is, and where in a text it is.
//!
//! [`Detector::find`] reports the personal values in a text by kind: e-mail
//! addresses, phone numbers, payment cards, IBANs, IPv4 and IPv6 addresses,
//! US Social Security numbers and Chinese resident IDs (each with its
//! checksum where one exists, [`detect`]), plus the operator's own patterns
//! and words. It is pure and does no I/O: the router, the edge box and the
//! Worker run the same code. `docs/pii.md` says what is found and what is
//! not, with the figures of `tests/pii/`.

mod body;
mod detect;
mod vault;

pub use body::{Mode, Protected, holds_json, protect_request, restore_answer, restore_value};
pub use detect::luhn;
pub use regex_lite::Regex;
pub use vault::{Restorer, Vault};

/// What a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Email,
    Phone,
    Card,
    Iban,
    Ipv4,
    Ipv6,
    UsSsn,
    CnResidentId,
    /// The operator's pattern at this index of the config's list.
    Pattern(u16),
    /// One of the operator's words.
    Word,
}

impl Kind {
    /// The built-in kinds, in the order they are reported.
    pub const BUILT_IN: [Kind; 8] =
        [Kind::Email, Kind::Phone, Kind::Card, Kind::Iban, Kind::Ipv4, Kind::Ipv6, Kind::UsSsn, Kind::CnResidentId];

    /// Its name in configs, logs and error messages; a pattern's is its own name.
    pub fn name<'a>(&self, patterns: &'a [Pattern]) -> &'a str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::Card => "card",
            Kind::Iban => "iban",
            Kind::Ipv4 => "ipv4",
            Kind::Ipv6 => "ipv6",
            Kind::UsSsn => "us_ssn",
            Kind::CnResidentId => "cn_resident_id",
            Kind::Pattern(i) => patterns.get(usize::from(*i)).map_or("pattern", |p| p.name.as_str()),
            Kind::Word => "word",
        }
    }

    /// The built-in kind of this name.
    pub fn built_in(name: &str) -> Option<Kind> {
        Self::BUILT_IN.into_iter().find(|k| k.name(&[]) == name)
    }

    /// When two findings overlap, the one of the more certain kind stays:
    /// a checksum is better evidence than a shape.
    fn precedence(self) -> u8 {
        match self {
            Kind::Pattern(_) | Kind::Word => 0,
            // A resident ID's check digit and birth date say more than a card's Luhn digit.
            Kind::Iban | Kind::CnResidentId => 1,
            Kind::Card => 2,
            Kind::Email => 3,
            Kind::UsSsn => 4,
            Kind::Ipv6 => 5,
            Kind::Ipv4 => 6,
            Kind::Phone => 7,
        }
    }
}

/// A value found: its kind and its place in the text (byte offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// An operator's pattern (`pii.patterns`): a regular expression with a name.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub name: String,
    pub regex: regex_lite::Regex,
}

/// What to look for: which built-in kinds, and the operator's patterns and
/// words (matched whole, ignoring ASCII case).
#[derive(Debug, Clone)]
pub struct Detector {
    pub kinds: Vec<Kind>,
    pub patterns: Vec<Pattern>,
    /// Lower-case.
    words: Vec<String>,
}

impl Default for Detector {
    fn default() -> Self {
        Self { kinds: Kind::BUILT_IN.to_vec(), patterns: Vec::new(), words: Vec::new() }
    }
}

impl Detector {
    /// Looks for `kinds`, the operator's `patterns` and `words`.
    pub fn new(kinds: Vec<Kind>, patterns: Vec<Pattern>, words: &[String]) -> Self {
        let words = words.iter().map(|w| w.trim().to_ascii_lowercase()).filter(|w| !w.is_empty()).collect();
        Self { kinds, patterns, words }
    }

    /// Whether the operator's words are looked for.
    pub fn has_words(&self) -> bool {
        !self.words.is_empty()
    }

    /// The values in `text`, in text order, none overlapping another.
    pub fn find(&self, text: &str) -> Vec<Finding> {
        let bytes = text.as_bytes();
        let mut found = Vec::new();
        for kind in &self.kinds {
            let scan: fn(&[u8], &mut Vec<Finding>) = match kind {
                Kind::Email => detect::emails,
                Kind::Phone => detect::phones,
                Kind::Card => detect::cards,
                Kind::Iban => detect::ibans,
                Kind::Ipv4 => detect::ipv4s,
                Kind::Ipv6 => detect::ipv6s,
                Kind::UsSsn => detect::us_ssns,
                Kind::CnResidentId => detect::cn_resident_ids,
                Kind::Pattern(_) | Kind::Word => continue,
            };
            scan(bytes, &mut found);
        }
        for (i, p) in self.patterns.iter().enumerate() {
            let kind = Kind::Pattern(u16::try_from(i).unwrap_or(u16::MAX));
            found.extend(p.regex.find_iter(text).filter(|m| !m.is_empty()).map(|m| Finding {
                kind,
                start: m.start(),
                end: m.end(),
            }));
        }
        if !self.words.is_empty() {
            self.find_words(bytes, &mut found);
        }
        settle(found)
    }

    fn find_words(&self, text: &[u8], found: &mut Vec<Finding>) {
        let boundary = |b: Option<&u8>| b.is_none_or(|b| !b.is_ascii_alphanumeric());
        for word in &self.words {
            let w = word.as_bytes();
            let mut i = 0;
            while i + w.len() <= text.len() {
                let hit = text[i..i + w.len()].eq_ignore_ascii_case(w)
                    && boundary(i.checked_sub(1).and_then(|k| text.get(k)))
                    && boundary(text.get(i + w.len()));
                if hit {
                    found.push(Finding { kind: Kind::Word, start: i, end: i + w.len() });
                    i += w.len();
                } else {
                    i += 1;
                }
            }
        }
    }
}

/// What a config says of personal data (`pii`): what is looked for, and
/// what each node gets of it.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// What is looked for.
    pub detector: Detector,
    /// What each node (by index) gets: `None`, the request as it came.
    pub modes: Vec<Option<Mode>>,
}

impl Policy {
    /// What the node at `index` gets.
    pub fn for_node(&self, index: usize) -> Option<Mode> {
        self.modes.get(index).copied().flatten()
    }

    /// Whether any node's requests are looked into.
    pub fn is_on(&self) -> bool {
        self.modes.iter().any(Option::is_some)
    }
}

/// The findings in text order, without overlaps: where two overlap, the one
/// of higher precedence (then the longer, then the earlier) stays.
fn settle(mut found: Vec<Finding>) -> Vec<Finding> {
    crate::order::sort_by_key(&mut found, |f| (f.kind.precedence(), std::cmp::Reverse(f.end - f.start), f.start));
    // Kept in text order; none overlaps another, so a new one can only clash with its neighbours.
    let mut kept: Vec<Finding> = Vec::with_capacity(found.len());
    for f in found {
        let at = kept.partition_point(|k| k.start < f.start);
        let clear_before = at == 0 || kept[at - 1].end <= f.start;
        let clear_after = kept.get(at).is_none_or(|k| f.end <= k.start);
        if clear_before && clear_after {
            kept.insert(at, f);
        }
    }
    kept
}

#[cfg(test)]
mod tests;
