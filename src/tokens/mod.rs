//! Token estimation without a tokenizer.
//!
//! Rules want a token count before the request reaches a model, and a real
//! BPE vocabulary is megabytes the edge module should not carry. This
//! estimator walks the text once and prices each run of characters the way
//! cl100k-style tokenizers split it:
//!
//! - a word (letters and `_`, with the space before it) costs one token, plus one
//!   for every further `WORD_CHARS_PER_EXTRA_TOKEN` letters;
//! - a word with a non-ASCII letter (`photosynthèse`, `Länge`) costs one more,
//!   since English-trained vocabularies split such words finer;
//! - digits are split in groups of three, as BPE pre-tokenizers do;
//! - punctuation costs one token per `PUNCT_CHARS_PER_TOKEN` characters of a run;
//! - a run of whitespace that holds a newline, or several spaces, is one token;
//! - CJK ideographs, kana and hangul cost one token each, other non-ASCII
//!   symbols (emoji) two.
//!
//! `tokens::accuracy` measures it against the cl100k_base tokenizer on a
//! sample of prose, chat and code; `docs/token-estimate.md` has the figures.

/// Letters of a word covered by its first token, and by each further one.
const WORD_CHARS_PER_EXTRA_TOKEN: usize = 10;
/// Punctuation characters per token within one run.
const PUNCT_CHARS_PER_TOKEN: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Letter,
    Digit,
    Space,
    Newline,
    Punct,
    Wide,
    Symbol,
}

fn classify(c: char) -> Class {
    match c {
        // `_` joins identifiers such as `snake_case`, which BPE splits like words.
        'a'..='z' | 'A'..='Z' | '\'' | '_' => Class::Letter,
        '0'..='9' => Class::Digit,
        '\n' | '\r' => Class::Newline,
        ' ' | '\t' => Class::Space,
        c if c.is_ascii() => Class::Punct,
        '\u{3040}'..='\u{30ff}' | '\u{3400}'..='\u{9fff}' | '\u{ac00}'..='\u{d7af}' | '\u{f900}'..='\u{faff}' => {
            Class::Wide
        }
        c if c.is_alphabetic() => Class::Letter,
        c if c.is_whitespace() => Class::Space,
        _ => Class::Symbol,
    }
}

/// `classify` of each ASCII character, looked up rather than matched: most
/// prompts are mostly ASCII, and the estimate runs on every request's text.
const ASCII_CLASS: [Class; 128] = {
    let mut table = [Class::Punct; 128];
    let mut b = 0;
    while b < 128 {
        table[b] = match b as u8 {
            b'a'..=b'z' | b'A'..=b'Z' | b'\'' | b'_' => Class::Letter,
            b'0'..=b'9' => Class::Digit,
            b'\n' | b'\r' => Class::Newline,
            b' ' | b'\t' => Class::Space,
            _ => Class::Punct,
        };
        b += 1;
    }
    table
};

/// Estimated tokens in `text`.
pub fn estimate_text_tokens(text: &str) -> u64 {
    let mut tokens: usize = 0;
    let mut run_class: Option<Class> = None;
    let mut run_len = 0usize;
    let mut run_has_newline = false;
    let mut run_has_accent = false;
    let flush = |class: Option<Class>, len: usize, newline: bool, accent: bool| -> usize {
        match class {
            None => 0,
            Some(Class::Letter) => 1 + (len - 1) / WORD_CHARS_PER_EXTRA_TOKEN + usize::from(accent),
            Some(Class::Digit) => len.div_ceil(3),
            Some(Class::Punct) => len.div_ceil(PUNCT_CHARS_PER_TOKEN),
            // A single space is absorbed by the word after it.
            Some(Class::Space | Class::Newline) => usize::from(newline || len > 1),
            Some(Class::Wide) => len,
            Some(Class::Symbol) => 2 * len,
        }
    };
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        let (class, ascii) = if b.is_ascii() {
            at += 1;
            (ASCII_CLASS[usize::from(b)], true)
        } else {
            // `at` is always at a character's start: it moves by whole characters.
            let Some(c) = text.get(at..).and_then(|rest| rest.chars().next()) else { break };
            at += c.len_utf8();
            (classify(c), false)
        };
        let same_run = match (run_class, class) {
            (Some(Class::Space | Class::Newline), Class::Space | Class::Newline) => true,
            (Some(a), b) => a == b,
            (None, _) => false,
        };
        if !same_run {
            tokens += flush(run_class, run_len, run_has_newline, run_has_accent);
            run_class = Some(class);
            run_len = 0;
            run_has_newline = false;
            run_has_accent = false;
        }
        run_len += 1;
        run_has_newline |= class == Class::Newline;
        run_has_accent |= class == Class::Letter && !ascii;
    }
    tokens += flush(run_class, run_len, run_has_newline, run_has_accent);
    tokens as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_table_classifies_as_classify_does() {
        for b in 0u8..128 {
            assert_eq!(ASCII_CLASS[usize::from(b)], classify(char::from(b)), "byte {b}");
        }
    }

    #[test]
    fn mixed_scripts_are_priced_per_run() {
        // ASCII and non-ASCII runs side by side, accents inside ASCII words, emoji.
        assert_eq!(estimate_text_tokens("Länge 你好 ok"), estimate_text_tokens("Länge") + 2 + 1);
        assert_eq!(estimate_text_tokens("a😀b"), 1 + 2 + 1);
    }

    #[test]
    fn empty_text_costs_nothing() {
        assert_eq!(estimate_text_tokens(""), 0);
    }

    #[test]
    fn short_words_cost_one_token_each() {
        assert_eq!(estimate_text_tokens("the cat sat on the mat"), 6);
    }

    #[test]
    fn long_words_and_numbers_cost_more() {
        assert_eq!(estimate_text_tokens("internationalization"), 2);
        assert_eq!(estimate_text_tokens("1234567"), 3);
    }

    #[test]
    fn cjk_costs_a_token_per_character() {
        assert_eq!(estimate_text_tokens("你好世界"), 4);
    }

    #[test]
    fn estimate_grows_with_text() {
        let one = estimate_text_tokens("Summarise this paragraph, please. ");
        let many = estimate_text_tokens(&"Summarise this paragraph, please. ".repeat(10));
        assert!(many >= 9 * one && many <= 11 * one, "{one} vs {many}");
    }
}

#[cfg(test)]
mod accuracy;
