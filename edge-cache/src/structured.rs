//! Structured Field Dictionaries (RFC 9651 §3.2), parsed as §4.2.2 says, as
//! far as a reader of `CDN-Cache-Control` needs: each member's key, and its
//! value when that is a bare Integer or Boolean. Every other value (Strings,
//! Tokens, Decimals, Byte Sequences, Dates, Display Strings, Inner Lists,
//! parameters) is checked for syntax and otherwise skipped. Any syntax error
//! fails the whole field, as §4.2 requires.
//!
//! Written for this one use rather than taken from a general parser crate:
//! that one's values, base64 decoding and errors made about 8 KiB of the
//! Worker's compressed upload. The tests hold it to the `sfv` crate.

/// A member's value, as far as directives read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// A bare Integer (`max-age=60`).
    Integer(i64),
    /// A bare Boolean: a key alone is `true`, `?0` is `false`.
    Boolean(bool),
    /// Anything else that parses.
    Other,
}

/// Parses `input` as a Dictionary. The members come in order; a key given
/// twice comes twice (the later value wins, §4.2.2). `None` when `input` is
/// not a Dictionary.
pub fn dictionary(input: &str) -> Option<Vec<(&str, Value)>> {
    let mut p = Parser { text: input, at: 0 };
    let mut members = Vec::new();
    p.skip(|c| c == b' ');
    while p.peek().is_some() {
        let key = p.key()?;
        let value = if p.eat(b'=') {
            p.member_value()?
        } else {
            p.parameters()?;
            Value::Boolean(true)
        };
        members.push((key, value));
        p.skip(|c| c == b' ' || c == b'\t');
        if p.peek().is_none() {
            break;
        }
        if !p.eat(b',') {
            return None;
        }
        p.skip(|c| c == b' ' || c == b'\t');
        // A trailing comma.
        p.peek()?;
    }
    Some(members)
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

/// An Integer or Decimal (§4.2.4).
enum Number {
    Integer(i64),
    Decimal,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let here = self.peek() == Some(c);
        self.at += usize::from(here);
        here
    }

    fn skip(&mut self, while_: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&while_) {
            self.at += 1;
        }
    }

    /// A Key (§4.2.3.3).
    fn key(&mut self) -> Option<&'a str> {
        let start = self.at;
        if !self.peek().is_some_and(|c| c.is_ascii_lowercase() || c == b'*') {
            return None;
        }
        self.skip(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'.' | b'*'));
        // Only ASCII was skipped: `at` is on a character boundary.
        self.text.get(start..self.at)
    }

    /// An Item or an Inner List, with its parameters (§4.2.1.1).
    fn member_value(&mut self) -> Option<Value> {
        if !self.eat(b'(') {
            let value = self.bare_item()?;
            self.parameters()?;
            return Some(value);
        }
        // An Inner List (§4.2.1.2).
        while self.peek().is_some() {
            self.skip(|c| c == b' ');
            if self.eat(b')') {
                self.parameters()?;
                return Some(Value::Other);
            }
            self.bare_item()?;
            self.parameters()?;
            if !matches!(self.peek(), None | Some(b' ' | b')')) {
                return None;
            }
        }
        None
    }

    /// Parameters (§4.2.3.2): their keys and values are checked, not kept.
    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.skip(|c| c == b' ');
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    /// A Bare Item (§4.2.3.1).
    fn bare_item(&mut self) -> Option<Value> {
        match self.peek()? {
            b'?' => {
                self.at += 1;
                let value = match self.peek()? {
                    b'0' => false,
                    b'1' => true,
                    _ => return None,
                };
                self.at += 1;
                Some(Value::Boolean(value))
            }
            b'"' => {
                self.at += 1;
                self.string()
            }
            b':' => {
                self.at += 1;
                self.byte_sequence()
            }
            b'@' => {
                // A Date (§4.2.9): an Integer of seconds.
                self.at += 1;
                matches!(self.number()?, Number::Integer(_)).then_some(Value::Other)
            }
            b'%' => {
                self.at += 1;
                self.display_string()
            }
            c if c.is_ascii_alphabetic() || c == b'*' => {
                // A Token (§4.2.6): tchar, `:` and `/` after the first.
                self.skip(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c));
                Some(Value::Other)
            }
            c if c == b'-' || c.is_ascii_digit() => match self.number()? {
                Number::Integer(n) => Some(Value::Integer(n)),
                Number::Decimal => Some(Value::Other),
            },
            _ => None,
        }
    }

    /// An Integer or Decimal (§4.2.4): at most 15 digits, or 12 before the
    /// point and 1 to 3 after it.
    fn number(&mut self) -> Option<Number> {
        let negative = self.eat(b'-');
        let mut value: i64 = 0;
        let mut digits = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            digits += 1;
            if digits > 15 {
                return None;
            }
            value = value * 10 + i64::from(c - b'0');
            self.at += 1;
        }
        if digits == 0 {
            return None;
        }
        if self.peek() != Some(b'.') {
            return Some(Number::Integer(if negative { -value } else { value }));
        }
        if digits > 12 {
            return None;
        }
        self.at += 1;
        let start = self.at;
        self.skip(|c| c.is_ascii_digit());
        (1..=3).contains(&(self.at - start)).then_some(Number::Decimal)
    }

    /// A String (§4.2.5), after its opening quote.
    fn string(&mut self) -> Option<Value> {
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(Value::Other);
                }
                b'\\' => {
                    self.at += 1;
                    if !matches!(self.peek()?, b'"' | b'\\') {
                        return None;
                    }
                }
                0x00..=0x1f | 0x7f..=0xff => return None,
                _ => {}
            }
            self.at += 1;
        }
    }

    /// A Display String (§4.2.10), after its `%`: a quoted string of
    /// printable ASCII in which `%` and two lower-case hex digits are a byte,
    /// and the bytes are UTF-8.
    fn display_string(&mut self) -> Option<Value> {
        if !self.eat(b'"') {
            return None;
        }
        let mut bytes = Vec::new();
        loop {
            let c = self.peek()?;
            self.at += 1;
            match c {
                b'"' => return std::str::from_utf8(&bytes).is_ok().then_some(Value::Other),
                0x00..=0x1f | 0x7f..=0xff => return None,
                b'%' => {
                    let mut byte = 0;
                    for _ in 0..2 {
                        let digit = match self.peek()? {
                            d @ b'0'..=b'9' => d - b'0',
                            d @ b'a'..=b'f' => d - b'a' + 10,
                            _ => return None,
                        };
                        byte = byte << 4 | digit;
                        self.at += 1;
                    }
                    bytes.push(byte);
                }
                _ => bytes.push(c),
            }
        }
    }

    /// A Byte Sequence (§4.2.7), after its opening colon: base64 up to the
    /// closing one. As §4.2.7 asks of recipients, padding may be left out
    /// and unused bits need not be zero; padding that is there must not be
    /// more than the length calls for.
    fn byte_sequence(&mut self) -> Option<Value> {
        let rest = &self.text.as_bytes()[self.at..];
        let length = rest.iter().position(|&c| c == b':')?;
        self.at += length + 1;
        let content = &rest[..length];
        let symbols = content.iter().position(|&c| c == b'=').unwrap_or(length);
        let (data, padding) = content.split_at(symbols);
        let valid = data.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
            && padding.iter().all(|&c| c == b'=')
            && symbols % 4 != 1
            && padding.len() <= (4 - symbols % 4) % 4;
        valid.then_some(Value::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the `sfv` crate makes of `input`, in this module's terms: the
    /// members in its order (a key given twice keeps its first place and its
    /// last value).
    fn by_sfv(input: &str) -> Option<Vec<(String, Value)>> {
        let parsed = sfv::Parser::new(input).parse_dictionary().ok()?;
        Some(
            parsed
                .iter()
                .map(|(key, entry)| {
                    let value = match entry {
                        sfv::ListEntry::Item(sfv::Item { bare_item: sfv::BareItem::Integer(n), .. }) => {
                            Value::Integer(i64::from(*n))
                        }
                        sfv::ListEntry::Item(sfv::Item { bare_item: sfv::BareItem::Boolean(b), .. }) => {
                            Value::Boolean(*b)
                        }
                        _ => Value::Other,
                    };
                    (key.as_str().to_string(), value)
                })
                .collect(),
        )
    }

    fn key() -> impl Strategy<Value = String> {
        "[a-z*][a-z0-9_.*-]{0,3}|[A-Z]|max-age|s-maxage|no-store"
    }

    fn bare_item() -> impl Strategy<Value = String> {
        prop_oneof![
            "-?([0-9]{1,2}|[0-9]{14,16})",
            "-?([0-9]{1,2}|[0-9]{12,13})[.][0-9]{0,4}",
            "\"([ !#-\\[\\]-~]|\\\\[\"\\\\a]){0,6}\"?",
            ":[A-Za-z0-9+/]{0,9}[=]{0,3}[ a]?:?",
            "[A-Za-z*][!#$%&'*+.^_`|~:/A-Za-z0-9-]{0,5}",
            "[?][012]?",
            "@-?[0-9]{1,3}([.][0-9])?",
            "%\"([a-z \"]|%[0-9a-fA-F]{2}|%[0-9a-f]?){0,4}\"?",
        ]
    }

    fn parameters() -> impl Strategy<Value = String> {
        prop::collection::vec((" ?", key(), prop::option::of(bare_item())), 0..3).prop_map(|ps| {
            ps.into_iter()
                .map(|(sp, k, v)| format!(";{sp}{k}{}", v.map(|v| format!("={v}")).unwrap_or_default()))
                .collect()
        })
    }

    fn member_value() -> impl Strategy<Value = String> {
        let item = || (bare_item(), parameters()).prop_map(|(b, p)| b + &p);
        prop_oneof![
            3 => item(),
            1 => (prop::collection::vec(item(), 0..3), "[ ]{0,2}", "[)]?", parameters())
                .prop_map(|(items, pad, close, p)| format!("({pad}{}{close}{p}", items.join(" "))),
        ]
    }

    /// This module's members folded as a dictionary keeps them.
    fn by_us(input: &str) -> Option<Vec<(String, Value)>> {
        let mut folded: Vec<(String, Value)> = Vec::new();
        for (key, value) in dictionary(input)? {
            match folded.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value,
                None => folded.push((key.to_string(), value)),
            }
        }
        Some(folded)
    }

    #[test]
    fn rfc9651_examples_and_edges_parse_as_sfv_parses_them() {
        for input in [
            "",
            "   ",
            "max-age=60",
            "en=\"Applepie\", da=:w4ZibGV0w6ZydGU=:",
            "a=?0, b, c; foo=bar",
            "rating=1.5, feelings=(joy sadness)",
            "a=(1 2), b=3, c=4;aa=bb, d=(5 6);valid",
            "foo=1, foo=2",
            "a=1,\tb=2",
            "a=1 ,b=2",
            "a=1,",
            "a=1,,b=2",
            "a=1 b=2",
            "A=1",
            "*a=1",
            "a=-0",
            "a=999999999999999",
            "a=9999999999999999",
            "a=-999999999999999",
            "a=123456789012.123",
            "a=1234567890123.1",
            "a=1.1234",
            "a=1.",
            "a=.5",
            "a=-",
            "a=@1659578233",
            "a=@-1",
            "a=@1.5",
            "a=%\"f%c3%bc%c3%bc\"",
            "a=%\"%C3\"",
            "a=%\"%c3\"",
            "a=%\"\\\"",
            "a=%x",
            "a=\"\\q\"",
            "a=\"tab\there\"",
            "a=\"unterminated",
            "a=:aGVsbG8:",
            "a=:aGVsbG8=:",
            "a=:aGVsbG8==:",
            "a=:aGVsbA==:",
            "a=:aGVsbA=:",
            "a=:aGVsbA:",
            "a=:aGVsb:",
            "a=:a:",
            "a=:=:",
            "a=:aG=V:",
            "a=:aGVs bG8=:",
            "a=::",
            "a=:unterminated",
            "a=tok/en:x*y",
            "a=*",
            "a=(",
            "a=(1",
            "a=(1 )",
            "a=( 1  2 )",
            "a=(1)(2)",
            "a=();p",
            "a=(1;x=?1 \"s\";y);z=2",
            "a;p=1;q",
            "a;P=1",
            "a; p=1",
            "a;p=",
            "a=?2",
            "a=?",
            "a=1 ",
            "a=1\t",
            " a=1",
            "\ta=1",
            "no-store=?0, no-cache=\"set-cookie\"",
            "max-age=60, private=\"a",
            "max-age=1.5.2",
            "caf\u{e9}=1",
            "a=\"caf\u{e9}\"",
        ] {
            assert_eq!(by_us(input), by_sfv(input), "{input:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Strings made of the grammar's pieces, joined anyhow, parse (or
        /// fail) as the `sfv` crate parses them.
        #[test]
        fn pieces_joined_anyhow_parse_as_sfv_parses_them(pieces in prop::collection::vec(prop::sample::select(vec![
            "a", "max-age", "s-maxage", "*", "no-store", "A", "x1", "_", "-", ".", "=", ",", " ", "\t", ";", "(", ")",
            "0", "1", "60", "-1", "123456789012", "999999999999999", ".", ".5", "1.234", "?0", "?1", "?",
            "\"", "\\", "\\\"", "\"s\"", ":", "aGk=", "aGk", "==", "+/", "@", "@12", "%", "%\"", "%c3", "%a9", "%C3",
            "tok", "/", "é", "\u{1}",
        ]), 0..14)) {
            let input = pieces.concat();
            prop_assert_eq!(by_us(&input), by_sfv(&input), "{:?}", input);
        }

        /// Dictionaries built from the grammar, with every kind of value
        /// near its limits, and separators right and wrong.
        #[test]
        fn dictionaries_near_the_grammar_parse_as_sfv_parses_them(
            members in prop::collection::vec((key(), prop::option::of(member_value()), parameters()), 0..5),
            separators in prop::collection::vec(prop::sample::select(vec![", ", ",", " , ", ",\t", ", ", ",", ",,", " ", ""]), 5),
        ) {
            let mut input = String::new();
            for (i, (key, value, params)) in members.iter().enumerate() {
                if i > 0 {
                    input.push_str(separators[i]);
                }
                input.push_str(key);
                if let Some(value) = value {
                    input.push('=');
                    input.push_str(value);
                }
                input.push_str(params);
            }
            prop_assert_eq!(by_us(&input), by_sfv(&input), "{:?}", input);
        }

        /// Any printable ASCII (and some beyond), as well.
        #[test]
        fn any_text_parses_as_sfv_parses_it(input in "[ -~\t\u{e9}]{0,24}") {
            prop_assert_eq!(by_us(&input), by_sfv(&input), "{:?}", input);
        }
    }
}
