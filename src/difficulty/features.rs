//! What the difficulty scorer reads of a prompt: fifteen numbers, computed in
//! one pass over its bytes and one over its lines.
//!
//! `training/difficulty/train.py` computes the same features (its
//! `features()`), byte for byte; change both together, then retrain.

/// How many features there are.
pub const COUNT: usize = 15;

/// The features' names, in order (the training script's `FEATURES`).
pub const NAMES: [&str; COUNT] = [
    "ln_bytes",
    "ln_words",
    "digit_share",
    "ln_numbers",
    "ln_math_marks",
    "ln_lines",
    "ln_choices",
    "ln_question_bytes",
    "mean_word_len",
    "long_word_share",
    "ln_question_marks",
    "ln_code_marks",
    "non_ascii_share",
    "upper_share",
    "ln_money_marks",
];

/// Counts over a prompt's bytes. A word is a run of ASCII letters and digits
/// and non-ASCII bytes; a number is a word of digits only, an alphabetic word
/// one of ASCII letters only.
#[derive(Default)]
struct Counts {
    digits: u64,
    math_marks: u64,
    lines: u64,
    questions: u64,
    code: u64,
    non_ascii: u64,
    upper: u64,
    letters: u64,
    money: u64,
    words: u64,
    numbers: u64,
    alpha_words: u64,
    alpha_letters: u64,
    long_words: u64,
}

/// The word being read: its length, and how many of its bytes are digits
/// and ASCII letters.
#[derive(Default)]
struct Word {
    len: u64,
    digits: u64,
    letters: u64,
}

impl Counts {
    fn end_word(&mut self, word: &Word) {
        self.words += 1;
        if word.digits == word.len {
            self.numbers += 1;
        }
        if word.letters == word.len {
            self.alpha_words += 1;
            self.alpha_letters += word.len;
            if word.len >= 9 {
                self.long_words += 1;
            }
        }
    }
}

/// A line that starts a multiple-choice option: `A.`, `B)`, `(C)`… (letters A to H).
fn is_choice_line(line: &[u8]) -> bool {
    let i = usize::from(line.first() == Some(&b'('));
    matches!(line.get(i), Some(b'A'..=b'H')) && matches!(line.get(i + 1), Some(b'.' | b')'))
}

fn ln1p(n: u64) -> f64 {
    // Counts of a prompt's bytes are far below 2^53: exact as f64.
    (n as f64).ln_1p()
}

fn share(part: u64, whole: u64) -> f64 {
    part as f64 / whole.max(1) as f64
}

/// The features of `text`, in the order of [`NAMES`].
pub fn features(text: &str) -> [f64; COUNT] {
    let bytes = text.as_bytes();
    let mut c = Counts::default();
    let mut word = Word::default();
    for &b in bytes {
        match b {
            0x80.. => c.non_ascii += 1,
            b'0'..=b'9' => c.digits += 1,
            b'A'..=b'Z' => {
                c.upper += 1;
                c.letters += 1;
            }
            b'a'..=b'z' => c.letters += 1,
            b'=' | b'+' | b'*' | b'/' | b'^' | b'<' | b'>' | b'\\' => c.math_marks += 1,
            b'\n' => c.lines += 1,
            b'?' => c.questions += 1,
            b'{' | b'}' | b'[' | b']' | b';' | b'`' => c.code += 1,
            b'$' | b'%' => c.money += 1,
            _ => {}
        }
        if b >= 0x80 || b.is_ascii_alphanumeric() {
            word.len += 1;
            if b.is_ascii_digit() {
                word.digits += 1;
            } else if b < 0x80 {
                word.letters += 1;
            }
        } else if word.len > 0 {
            c.end_word(&word);
            word = Word::default();
        }
    }
    if word.len > 0 {
        c.end_word(&word);
    }

    let n = bytes.len() as u64;
    let mut choices = 0u64;
    let mut question = n;
    let mut offset = 0u64;
    for line in bytes.split(|&b| b == b'\n') {
        if is_choice_line(line) {
            if choices == 0 {
                question = offset;
            }
            choices += 1;
        }
        offset += line.len() as u64 + 1;
    }

    let (mean_word_len, long_word_share) = match c.alpha_words {
        0 => (0.0, 0.0),
        words => (c.alpha_letters as f64 / words as f64 / 10.0, share(c.long_words, words)),
    };
    [
        ln1p(n),
        ln1p(c.words),
        share(c.digits, n),
        ln1p(c.numbers),
        ln1p(c.math_marks),
        ln1p(c.lines),
        ln1p(choices),
        ln1p(question),
        mean_word_len,
        long_word_share,
        ln1p(c.questions),
        ln1p(c.code),
        share(c.non_ascii, n),
        share(c.upper, c.letters),
        ln1p(c.money),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_the_names_say() {
        let f = features("What is 12 + 30?\nA. 42\nB) 24\n(C) 7\nI. no");
        let at = |name: &str| f[NAMES.iter().position(|n| *n == name).unwrap()];
        assert_eq!(at("ln_choices"), 3f64.ln_1p(), "A., B) and (C), not I.");
        assert_eq!(at("ln_question_bytes"), 17f64.ln_1p(), "the bytes before the first choice");
        assert_eq!(at("ln_lines"), 4f64.ln_1p());
        assert_eq!(at("ln_numbers"), 5f64.ln_1p(), "12, 30, 42, 24 and 7");
        assert_eq!(at("ln_words"), 12f64.ln_1p(), "the option letters are words too");
        assert_eq!(at("ln_math_marks"), 1f64.ln_1p());
        assert_eq!(at("ln_question_marks"), 1f64.ln_1p());
        let empty = features("");
        assert!(empty.iter().all(|&x| x == 0.0), "an empty prompt is all zeros: {empty:?}");
        let wide = features("é");
        assert_eq!(wide[NAMES.iter().position(|n| *n == "non_ascii_share").unwrap()], 1.0);
    }
}
