//! Placeholders for personal values, and their restoration in an answer
//! that may arrive in pieces.
//!
//! A [`Vault`] lives for one exchange: [`Vault::pseudonymize`] replaces each
//! value found in a text with a placeholder such as `[EMAIL_1]` (the same
//! value, the same placeholder, across all the texts of the request), and
//! remembers the original; [`Restorer`] puts the originals back into the
//! answer's text as it streams, holding back at most the longest
//! placeholder's length, and never a half-restored value. Nothing in a
//! vault is logged, cached or kept past the exchange.

use std::collections::HashMap;

use super::{Finding, Kind, Pattern};

/// The placeholders of one exchange and the values they stand for. Its
/// debug form shows how many, never the values.
#[derive(Default)]
pub struct Vault {
    /// Placeholder to original value.
    originals: HashMap<String, String>,
    /// Original value to placeholder.
    placeholders: HashMap<String, String>,
    /// Each label in use (`EMAIL`; two kinds may share one) and the last
    /// number given to its placeholders: a few, so a list.
    numbers: Vec<(String, u32)>,
    /// The longest placeholder's length, in bytes.
    longest: usize,
    /// What the request itself holds that looks like a placeholder
    /// (`[EMAIL_1]` written by the client): never handed out.
    literal: std::collections::HashSet<String>,
    /// The whole request was searched for them already.
    noted: bool,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("placeholders", &self.originals.len()).finish_non_exhaustive()
    }
}

/// The longest text between a placeholder's brackets that is looked for
/// among the client's own (a label and a number).
const MAX_LABEL: usize = 64;

/// How a kind is written in its placeholders: `EMAIL`, `US_SSN`, an
/// operator pattern's name in capitals (letters, digits and `_` only).
fn label(kind: Kind, patterns: &[Pattern]) -> String {
    let name = kind.name(patterns);
    let label: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    if label.is_empty() { "PII".into() } else { label }
}

impl Vault {
    /// An empty vault.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether any value was replaced.
    pub fn is_empty(&self) -> bool {
        self.originals.is_empty()
    }

    /// Notes what `raw`, a whole request, holds that looks like a
    /// placeholder, so that no such placeholder is handed out (then its
    /// texts are not searched again one by one).
    pub fn note_request(&mut self, raw: &[u8]) {
        self.note_literals(raw);
        // An escape (`\u005f`) may hide one from a search of the raw
        // bytes: then each text is searched as decoded too.
        self.noted = !raw.windows(2).any(|w| w == b"\\u");
    }

    fn note_literals(&mut self, raw: &[u8]) {
        let mut at = 0;
        while let Some(open) = raw[at..].iter().position(|&b| b == b'[').map(|i| at + i) {
            let tail = &raw[open + 1..raw.len().min(open + 1 + MAX_LABEL)];
            let body = tail.iter().take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || **b == b'_').count();
            // A placeholder's shape: a label, `_` and a number (`[EMAIL_1]`).
            let numbered = tail[..body]
                .rsplit(|&b| b == b'_')
                .next()
                .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
                && tail[..body].contains(&b'_');
            if tail.get(body) == Some(&b']') && numbered {
                let token = String::from_utf8_lossy(&raw[open..open + body + 2]).into_owned();
                self.literal.insert(token);
            }
            at = open + 1;
        }
    }

    /// `text` with each of `findings` (in text order, not overlapping, as
    /// [`super::Detector::find`] gives them) replaced by its placeholder.
    /// A placeholder that `text` (or the request noted with
    /// [`note_request`](Self::note_request)) already holds literally is
    /// never handed out, so restoring cannot change what the client wrote.
    pub fn pseudonymize(&mut self, text: &str, findings: &[Finding], patterns: &[Pattern]) -> String {
        if !self.noted && text.contains('[') {
            self.note_literals(text.as_bytes());
        }
        let mut out = String::with_capacity(text.len() + findings.len() * 8);
        let mut at = 0;
        for f in findings {
            let (Some(before), Some(value)) = (text.get(at..f.start), text.get(f.start..f.end)) else { continue };
            out.push_str(before);
            match self.placeholders.get(value) {
                Some(p) => out.push_str(p),
                None => out.push_str(&self.new_placeholder(f.kind, patterns, value)),
            }
            at = f.end;
        }
        out.push_str(text.get(at..).unwrap_or_default());
        out
    }

    fn new_placeholder(&mut self, kind: Kind, patterns: &[Pattern], value: &str) -> String {
        let label = label(kind, patterns);
        let at = match self.numbers.iter().position(|(l, _)| *l == label) {
            Some(at) => at,
            None => {
                self.numbers.push((label, 0));
                self.numbers.len() - 1
            }
        };
        let (label, number) = &mut self.numbers[at];
        let placeholder = loop {
            *number += 1;
            let candidate = format!("[{label}_{number}]");
            if !self.literal.contains(&candidate) {
                break candidate;
            }
        };
        self.longest = self.longest.max(placeholder.len());
        self.originals.insert(placeholder.clone(), value.to_string());
        self.placeholders.insert(value.to_string(), placeholder.clone());
        placeholder
    }

    /// `text` with every mask: each finding replaced by its kind in
    /// brackets, `[EMAIL]`, one way (`redact` mode).
    pub fn redact(text: &str, findings: &[Finding], patterns: &[Pattern]) -> String {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for f in findings {
            let Some(before) = text.get(at..f.start) else { continue };
            out.push_str(before);
            out.push('[');
            out.push_str(&label(f.kind, patterns));
            out.push(']');
            at = f.end;
        }
        out.push_str(text.get(at..).unwrap_or_default());
        out
    }

    /// `text` with every whole placeholder of this vault replaced by its
    /// value (a whole answer, not streamed); in a JSON text (`json`, such as
    /// a tool call's `arguments`), the value is escaped as a JSON string's
    /// content.
    pub fn restore(&self, text: &str, json: bool) -> String {
        let mut restorer = Restorer::new(json);
        let mut out = restorer.push(self, text);
        out.push_str(&restorer.finish());
        out
    }

    /// The value a placeholder stands for.
    fn original(&self, placeholder: &str) -> Option<&str> {
        self.originals.get(placeholder).map(String::as_str)
    }

    /// Whether `tail` (which starts with `[`) is the start of one of the
    /// vault's placeholders, not yet whole: it may become one as more text arrives.
    fn may_become(&self, tail: &str) -> bool {
        tail.len() < self.longest && self.originals.keys().any(|p| p.len() > tail.len() && p.starts_with(tail))
    }
}

/// Restores an answer's text as it arrives in pieces, split anywhere (in a
/// placeholder too): what it gives out is the answer so far with its whole
/// placeholders replaced, less a tail that may yet become a placeholder
/// (shorter than the longest one), which waits for the next piece. It
/// holds no reference to the vault, so that one vault serves every text
/// of an answer.
#[derive(Debug, Default)]
pub struct Restorer {
    held: String,
    /// The text is JSON (a tool call's `arguments`): values go in escaped.
    json: bool,
}

impl Restorer {
    /// A restorer of a text, or (`json`) of a JSON text that a string holds.
    pub fn new(json: bool) -> Self {
        Self { held: String::new(), json }
    }

    /// Takes the next piece; returns what can be given out now.
    pub fn push(&mut self, vault: &Vault, piece: &str) -> String {
        if vault.is_empty() {
            return piece.to_string();
        }
        self.held.push_str(piece);
        let held = std::mem::take(&mut self.held);
        // Placeholders hold no `[`: only the last one can open a placeholder still coming.
        let keep_from = held.rfind('[').filter(|&i| vault.may_become(&held[i..])).unwrap_or(held.len());
        let out = self.replace_whole(vault, &held[..keep_from]);
        self.held = held[keep_from..].to_string();
        out
    }

    /// Whether a tail is held back, waiting for the next piece.
    pub fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// The answer ended: what was held, as it is (it did not become a placeholder).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// `text` with its whole placeholders replaced by their values.
    fn replace_whole(&self, vault: &Vault, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('[') {
            out.push_str(&rest[..open]);
            let after = &rest[open..];
            let close = after.find(']').map(|c| c + 1);
            match close.and_then(|c| vault.original(&after[..c]).map(|v| (c, v))) {
                Some((c, value)) if self.json => {
                    // A JSON string's content: the quotes of its encoding left off.
                    let encoded = serde_json::to_string(value).unwrap_or_default();
                    out.push_str(encoded.get(1..encoded.len().saturating_sub(1)).unwrap_or_default());
                    rest = &after[c..];
                }
                Some((c, value)) => {
                    out.push_str(value);
                    rest = &after[c..];
                }
                None => {
                    out.push('[');
                    rest = &after[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::Detector;
    use super::*;

    fn vault_of(texts: &[&str]) -> (Vault, Vec<String>) {
        let detector = Detector::default();
        let mut vault = Vault::new();
        let sent = texts.iter().map(|t| vault.pseudonymize(t, &detector.find(t), &[])).collect();
        (vault, sent)
    }

    #[test]
    fn the_same_value_gets_the_same_placeholder_and_the_client_s_own_brackets_are_left_alone() {
        let (vault, sent) = vault_of(&[
            "Mail jane@example.com and [EMAIL_1] is literal; call +1 415 555 2671",
            "again: jane@example.com, and bob@example.org",
        ]);
        assert_eq!(sent[0], "Mail [EMAIL_2] and [EMAIL_1] is literal; call [PHONE_1]");
        assert_eq!(sent[1], "again: [EMAIL_2], and [EMAIL_3]");
        assert!(!sent.concat().contains("jane@") && !sent.concat().contains("555"));
        let answer = "Wrote to [EMAIL_2] and [EMAIL_3]; [EMAIL_1] and [EMAIL_9] stay; rang [PHONE_1].";
        assert_eq!(
            vault.restore(answer, false),
            "Wrote to jane@example.com and bob@example.org; [EMAIL_1] and [EMAIL_9] stay; rang +1 415 555 2671."
        );
    }

    #[test]
    fn redact_masks_one_way() {
        let text = "card 4111 1111 1111 1111, mail a@example.com";
        let found = Detector::default().find(text);
        assert_eq!(Vault::redact(text, &found, &[]), "card [CARD], mail [EMAIL]");
    }

    #[test]
    fn a_stream_split_anywhere_restores_the_same_as_a_whole_answer() {
        let (vault, _) = vault_of(&["jane@example.com, 192.168.0.7 and 中文 +44 20 7946 0958"]);
        let answer = "Sure [EMAIL_1]! Your IP [IPV4_1], [PHONE_1]] and [[EMAIL_1] and [EMAIL_ and [PHONE_10] é[IPV4_1]";
        let whole = vault.restore(answer, false);
        assert_eq!(
            whole,
            "Sure jane@example.com! Your IP 192.168.0.7, +44 20 7946 0958] and [jane@example.com and [EMAIL_ \
             and [PHONE_10] é192.168.0.7"
        );
        // Every split into two, and many into several, at character boundaries.
        let bounds: Vec<usize> = (0..=answer.len()).filter(|&i| answer.is_char_boundary(i)).collect();
        for &cut in &bounds {
            let mut r = Restorer::new(false);
            let mut out = r.push(&vault, &answer[..cut]);
            out.push_str(&r.push(&vault, &answer[cut..]));
            out.push_str(&r.finish());
            assert_eq!(out, whole, "split at {cut}");
        }
        let mut state = 99u64;
        for _ in 0..2_000 {
            let mut r = Restorer::new(false);
            let (mut out, mut from) = (String::new(), 0);
            while from < answer.len() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let step = bounds.iter().copied().filter(|&b| b > from).nth((state >> 33) as usize % 5);
                let to = step.unwrap_or(answer.len());
                let given = r.push(&vault, &answer[from..to]);
                assert!(!given.contains("[EMAIL_1]") && !given.contains("[IPV4_1]"), "given out unrestored: {given}");
                out.push_str(&given);
                // Held back: never more than the longest placeholder.
                assert!(r.held.len() < vault.longest, "{:?}", r.held);
                from = to;
            }
            out.push_str(&r.finish());
            assert_eq!(out, whole);
        }
    }

    #[test]
    fn a_stream_ending_inside_a_would_be_placeholder_loses_nothing() {
        let (vault, _) = vault_of(&["jane@example.com"]);
        let mut r = Restorer::new(false);
        assert_eq!(r.push(&vault, "see [EMA"), "see ");
        assert!(r.is_holding());
        assert_eq!(r.finish(), "[EMA");
        let empty = Vault::new();
        assert_eq!(Restorer::new(false).push(&empty, "[EMAIL_1"), "[EMAIL_1", "nothing replaced, nothing held");
    }
}
