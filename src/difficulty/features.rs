//! What the difficulty scorer reads of a prompt: fifteen numbers, computed in
//! one pass over its bytes.
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

/// What a byte counts as. The first four make words.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Class {
    NonAscii,
    Digit,
    Upper,
    Lower,
    Math,
    Newline,
    Question,
    Code,
    Money,
    Other,
}

const CLASSES: usize = 10;

/// Each byte's [`Class`], looked up rather than matched: the loop over a
/// prompt's bytes is most of the scorer's time.
static CLASS_OF: [Class; 256] = {
    let mut table = [Class::Other; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            0x80.. => Class::NonAscii,
            b'0'..=b'9' => Class::Digit,
            b'A'..=b'Z' => Class::Upper,
            b'a'..=b'z' => Class::Lower,
            b'=' | b'+' | b'*' | b'/' | b'^' | b'<' | b'>' | b'\\' => Class::Math,
            b'\n' => Class::Newline,
            b'?' => Class::Question,
            b'{' | b'}' | b'[' | b']' | b';' | b'`' => Class::Code,
            b'$' | b'%' => Class::Money,
            _ => Class::Other,
        };
        b += 1;
    }
    table
};

/// Words, as the features count them: a word is a run of ASCII letters and
/// digits and non-ASCII bytes; a number is a word of digits only, an
/// alphabetic word one of ASCII letters only.
#[derive(Default)]
struct Words {
    all: u64,
    numbers: u64,
    alpha: u64,
    alpha_letters: u64,
    long: u64,
}

impl Words {
    /// Counts the word that just ended: `len` bytes, of which `digits` digits and `letters` ASCII letters.
    fn end(&mut self, len: u64, digits: u64, letters: u64) {
        self.all += 1;
        self.numbers += u64::from(digits == len);
        if letters == len {
            self.alpha += 1;
            self.alpha_letters += len;
            self.long += u64::from(len >= 9);
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
    let mut counts = [0u64; CLASSES];
    let mut words = Words::default();
    // The word being read: its length, and how many of its bytes are digits and ASCII letters.
    let (mut len, mut digits, mut letters) = (0u64, 0u64, 0u64);
    // Multiple-choice options, and the bytes before the first (all of them if none).
    let mut choices = u64::from(is_choice_line(bytes));
    let mut question = if choices > 0 { 0 } else { bytes.len() as u64 };
    for (i, &b) in bytes.iter().enumerate() {
        let class = CLASS_OF[usize::from(b)];
        counts[class as usize] += 1;
        match class {
            Class::NonAscii | Class::Digit | Class::Upper | Class::Lower => {
                len += 1;
                digits += u64::from(matches!(class, Class::Digit));
                letters += u64::from(matches!(class, Class::Upper | Class::Lower));
            }
            _ => {
                if len > 0 {
                    words.end(len, digits, letters);
                    (len, digits, letters) = (0, 0, 0);
                }
                if matches!(class, Class::Newline) && is_choice_line(&bytes[i + 1..]) {
                    if choices == 0 {
                        question = i as u64 + 1;
                    }
                    choices += 1;
                }
            }
        }
    }
    if len > 0 {
        words.end(len, digits, letters);
    }

    let count = |c: Class| counts[c as usize];
    let n = bytes.len() as u64;
    let (mean_word_len, long_word_share) = match words.alpha {
        0 => (0.0, 0.0),
        alpha => (words.alpha_letters as f64 / alpha as f64 / 10.0, share(words.long, alpha)),
    };
    [
        ln1p(n),
        ln1p(words.all),
        share(count(Class::Digit), n),
        ln1p(words.numbers),
        ln1p(count(Class::Math)),
        ln1p(count(Class::Newline)),
        ln1p(choices),
        ln1p(question),
        mean_word_len,
        long_word_share,
        ln1p(count(Class::Question)),
        ln1p(count(Class::Code)),
        share(count(Class::NonAscii), n),
        share(count(Class::Upper), count(Class::Upper) + count(Class::Lower)),
        ln1p(count(Class::Money)),
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
