//! How hard a prompt is for a small model: the score behind
//! `model_routing.strategy: learned`.
//!
//! The score estimates the chance that the node's smallest model would fail
//! where its largest would succeed. It is a logistic regression over the
//! cheap features of [`features`], read from the last user turn of the
//! request (see [`prompt_of`]); its weights (`weights.json`, written by
//! `training/difficulty/train.py`) are compiled in. No model is called and
//! nothing is looked up.
//!
//! Which share of requests gets the large model is the operator's
//! (`large_share`): a [`Calibrator`] places each score among the latest ones
//! the router saw, so the share holds whatever the traffic's mix.
//! `docs/model-routing.md` has the figures and what limits them.

pub mod eval;
pub mod features;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use features::COUNT;

/// The trained scorer.
#[derive(Debug, Deserialize)]
pub struct Scorer {
    bias: f64,
    weights: [f64; COUNT],
    /// Each feature's range in training: a prompt unlike any there is held
    /// to it rather than extrapolated from.
    low: [f64; COUNT],
    high: [f64; COUNT],
    /// The scores of the training prompts at each percentile, 0 to 100:
    /// where a router's calibration starts before it has seen traffic.
    quantiles: Vec<f64>,
}

impl Scorer {
    /// The scorer compiled into the router.
    pub fn trained() -> &'static Scorer {
        static SCORER: OnceLock<Scorer> = OnceLock::new();
        SCORER.get_or_init(|| {
            let scorer: Scorer = serde_json::from_slice(include_bytes!("weights.json"))
                .expect("src/difficulty/weights.json is the training script's output, checked by the tests");
            scorer
        })
    }

    /// The training prompts' scores at each percentile, 0 to 100.
    pub fn quantiles(&self) -> &[f64] {
        &self.quantiles
    }

    /// The score of a prompt's text, between 0 and 1.
    pub fn score(&self, text: &str) -> f64 {
        let x = features::features(text);
        let mut z = self.bias;
        // In feature order, as the training script sums.
        for (((w, x), lo), hi) in self.weights.iter().zip(x).zip(self.low).zip(self.high) {
            z += w * x.clamp(lo, hi);
        }
        1.0 / (1.0 + (-z).exp())
    }
}

/// How many recent scores the calibration keeps.
pub const WINDOW: usize = 1000;

/// Where a score stands among the latest [`WINDOW`] scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibrator {
    /// The scores in the order they came, oldest first.
    recent: VecDeque<f64>,
    /// The same scores, sorted.
    sorted: Vec<f64>,
}

/// A request's place in the traffic, as routing sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Its score.
    pub score: f64,
    /// The share of recent requests that scored lower, from 0 to 1.
    pub rank: f64,
    /// Its tenth of the traffic, 1 (easiest) to 10 (hardest).
    pub band: u8,
}

impl Placement {
    /// Whether the request is among the hardest `large_share` of traffic.
    pub fn large(&self, large_share: f64) -> bool {
        // `rank` is a count over WINDOW: a hair of slack keeps 1 − 0.3 from rounding the 70% out.
        large_share >= 1.0 || (large_share > 0.0 && self.rank >= 1.0 - large_share - 1e-9)
    }
}

impl From<Placement> for crate::wire::Difficulty {
    fn from(p: Placement) -> Self {
        // A score is between 0 and 1: at most 1000 thousandths.
        Self { score_milli: (p.score.clamp(0.0, 1.0) * 1000.0).round() as u16, band: p.band }
    }
}

impl Calibrator {
    /// A window filled with the training prompts' score distribution
    /// (`quantiles`, at each percentile), for the first requests to be
    /// placed against; traffic replaces it one score at a time.
    pub fn seeded(quantiles: &[f64]) -> Self {
        let last = quantiles.len().saturating_sub(1);
        let at = |q: f64| {
            let x = q * last as f64;
            let i = (x.floor() as usize).min(last.saturating_sub(1));
            let (lo, hi) = (quantiles.get(i).copied().unwrap_or(0.5), quantiles.get(i + 1).copied().unwrap_or(0.5));
            lo + (hi - lo) * (x - i as f64)
        };
        let sorted: Vec<f64> = (0..WINDOW).map(|i| at((i as f64 + 0.5) / WINDOW as f64)).collect();
        // Spread the seed over time so that traffic replaces it evenly across the range.
        let recent = (0..WINDOW).map(|i| sorted[(i * 7919) % WINDOW]).collect();
        Self { recent, sorted }
    }

    /// Places `score` among the recent ones, then counts it in (the
    /// router ranks first and counts only once the request is admitted).
    #[cfg(test)]
    pub fn place(&mut self, score: f64, random: u64) -> Placement {
        let placement = self.rank(score, random);
        self.count(score);
        placement
    }

    /// Where `score` stands among the recent ones. Among equal scores the
    /// place is drawn with `random` (uniform): when many requests score the
    /// same (one prompt sent over and over), the share given the largest
    /// model still holds.
    pub fn rank(&self, score: f64, random: u64) -> Placement {
        let below = self.sorted.partition_point(|&s| s < score);
        let equal = self.sorted[below..].partition_point(|&s| s <= score);
        // The top 53 bits of `random`, as a fraction in [0, 1).
        let draw = (random >> 11) as f64 / (1u64 << 53) as f64;
        let rank = (below as f64 + draw * equal as f64) / self.sorted.len().max(1) as f64;
        let band = ((rank * 10.0) as u8).min(9) + 1;
        Placement { score, rank, band }
    }

    /// Counts `score` among the recent ones, in place of the oldest: the
    /// scores between the two places move by one, in one copy.
    pub fn count(&mut self, score: f64) {
        let to = self.sorted.partition_point(|&s| s < score);
        let oldest = if self.recent.len() >= WINDOW { self.recent.pop_front() } else { None };
        self.recent.push_back(score);
        let Some(oldest) = oldest else {
            self.sorted.insert(to, score);
            return;
        };
        // The oldest is in `sorted` (the two hold the same scores): at the first place equal to it.
        let from = self.sorted.partition_point(|&s| s < oldest).min(self.sorted.len().saturating_sub(1));
        if to <= from {
            self.sorted.copy_within(to..from, to + 1);
            self.sorted[to] = score;
        } else {
            self.sorted.copy_within(from + 1..to, from);
            self.sorted[to - 1] = score;
        }
    }
}

/// The text the scorer reads of a request body: the last user turn with
/// text of `messages` (chat, Anthropic's Messages) or of `input`
/// (`/v1/responses`), or the last text of `input` or `prompt`, with the
/// text parts of a turn joined by newlines. Empty when the body has none;
/// `None` when it is not JSON of that shape. Other roles' turns, when their
/// `role` comes before their `content`, are skipped without being read.
pub fn prompt_of(body: &[u8]) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        messages: Option<Turns<'a>>,
        #[serde(borrow)]
        input: Option<Turns<'a>>,
        #[serde(borrow)]
        prompt: Option<Turns<'a>>,
    }
    let body: Body<'_> = serde_json::from_slice(body).ok()?;
    let last = [body.messages, body.input, body.prompt].into_iter().flatten().find_map(|t| t.0);
    Some(last.unwrap_or(Cow::Borrowed("")))
}

/// Visitor methods that read a JSON scalar of no interest as `None`.
macro_rules! scalars_are_none {
    ($out:ident) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<$out<'a>, E> {
            Ok($out(None))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<$out<'a>, E> {
            Ok($out(None))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<$out<'a>, E> {
            Ok($out(None))
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<$out<'a>, E> {
            Ok($out(None))
        }
        fn visit_unit<E: de::Error>(self) -> Result<$out<'a>, E> {
            Ok($out(None))
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<$out<'a>, E> {
            Ok($out(Some(Cow::Borrowed(v))))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<$out<'a>, E> {
            Ok($out(Some(Cow::Owned(v.to_string()))))
        }
    };
}

/// An object's key, borrowed from the body unless it has escapes (serde's
/// own `Cow<str>` always copies).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The last user turn (or bare text) of a list of turns, or a text itself.
struct Turns<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Turns<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Turns<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("text or a list of turns")
            }
            scalars_are_none!(Turns);
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Turns<'a>, A::Error> {
                let mut last = None;
                while let Some(turn) = seq.next_element::<Turn<'a>>()? {
                    if let Some(text) = turn.0 {
                        last = Some(text);
                    }
                }
                Ok(Turns(last))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Turns<'a>, A::Error> {
                IgnoredAny::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Turns(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// One element of a list of turns: the text of a user turn, or a bare
/// text; `None` for anything else (other roles, token ids, tool output).
struct Turn<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Turn<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Turn<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a turn or a text")
            }
            scalars_are_none!(Turn);
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Turn<'a>, A::Error> {
                let mut user = None;
                let mut content = None;
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    match key.as_ref() {
                        "role" => user = Some(map.next_value::<Text<'a>>()?.0.is_some_and(|r| r == "user")),
                        // Another role's content (said first, as clients write it) is skipped unread.
                        "content" if user == Some(false) => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        "content" => content = map.next_value::<Text<'a>>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Turn(content.filter(|_| user == Some(true))))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Turn<'a>, A::Error> {
                IgnoredAny::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Turn(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A text: a string, or the texts of content parts (their `text`, or
/// themselves when they are strings) joined by newlines; `None` when there
/// is none (an image part, a number).
struct Text<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("text or content parts")
            }
            scalars_are_none!(Text);
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Text<'a>, A::Error> {
                let mut joined: Option<Cow<'a, str>> = None;
                while let Some(Text(part)) = seq.next_element::<Text<'a>>()? {
                    let Some(text) = part else { continue };
                    joined = Some(match joined {
                        None => text,
                        Some(mut all) => {
                            let owned = all.to_mut();
                            owned.push('\n');
                            owned.push_str(&text);
                            all
                        }
                    });
                }
                Ok(Text(joined))
            }
            /// A content part: its `text`.
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text<'a>, A::Error> {
                let mut text = None;
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    if key == "text" {
                        text = map.next_value::<Text<'a>>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Text(text))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_equal_the_training_script() {
        #[derive(Deserialize)]
        struct Check {
            prompt: String,
            score: f64,
        }
        let checks: Vec<Check> = serde_json::from_str(include_str!("check.json")).unwrap();
        assert!(checks.len() >= 50, "the script writes a sample of the file and some shapes it lacks");
        let scorer = Scorer::trained();
        for c in &checks {
            let ours = scorer.score(&c.prompt);
            assert!((ours - c.score).abs() < 1e-9, "{:?}: the router says {ours}, the script {}", c.prompt, c.score);
        }
        let spread = checks.iter().map(|c| c.score).fold((1.0f64, 0.0f64), |(lo, hi), s| (lo.min(s), hi.max(s)));
        assert!(spread.1 - spread.0 > 0.3, "the scores differ between prompts: {spread:?}");
    }

    #[test]
    fn the_weights_file_names_the_features_the_router_computes() {
        #[derive(Deserialize)]
        struct Names {
            features: Vec<String>,
        }
        let names: Names = serde_json::from_str(include_str!("weights.json")).unwrap();
        assert_eq!(names.features, features::NAMES);
        assert_eq!(Scorer::trained().quantiles.len(), 101);
    }

    #[test]
    fn the_prompt_is_the_last_user_turn_in_every_api_shape() {
        let text = |body: &str| prompt_of(body.as_bytes()).map(|t| t.into_owned());
        let chat = r#"{"model":"auto","messages":[{"role":"system","content":"be brief"},
            {"role":"user","content":"first"},{"role":"assistant","content":"ok"},
            {"content":[{"type":"text","text":"line\none"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"two"}],"role":"user"},
            {"role":"tool","content":"42"}]}"#;
        assert_eq!(
            text(chat).as_deref(),
            Some("line\none\ntwo"),
            "parts joined, role after content, later tool turn skipped"
        );
        let responses = r#"{"model":"auto","instructions":"x","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"why?"}]},{"type":"function_call_output","output":"1"}]}"#;
        assert_eq!(text(responses).as_deref(), Some("why?"));
        assert_eq!(text(r#"{"model":"auto","input":"plain"}"#).as_deref(), Some("plain"));
        assert_eq!(text(r#"{"model":"auto","prompt":["a","b"]}"#).as_deref(), Some("b"));
        assert_eq!(text(r#"{"model":"auto","prompt":[[1,2,3]]}"#).as_deref(), Some(""), "token ids are no text");
        assert_eq!(text(r#"{"model":"auto","messages":[{"role":"assistant","content":"x"}]}"#).as_deref(), Some(""));
        assert_eq!(text(r#"{"model":"auto""#), None);
    }

    #[test]
    fn the_large_share_holds_when_the_mix_changes() {
        let scorer = Scorer::trained();
        let mut calibrator = Calibrator::seeded(&scorer.quantiles);
        let share = 0.3;
        let large_in = |calibrator: &mut Calibrator, scores: &mut dyn Iterator<Item = f64>, n: usize| {
            scores
                .take(n)
                .enumerate()
                .filter(|&(i, s)| calibrator.place(s, (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).large(share))
                .count()
        };
        // Traffic like training's: about the share from the first request.
        let training: Vec<f64> = scorer.quantiles.clone();
        let mut mixed = (0..).map(|i| training[(i * 37) % 101]);
        let first = large_in(&mut calibrator, &mut mixed, 1000);
        assert!((250..=350).contains(&first), "{first} of 1000 large");
        // Then the mix turns hard: every score above the old 70th percentile.
        let hard_from = training[70];
        let mut hard = (0..).map(|i| hard_from + (i % 100) as f64 * 1e-4);
        let turning = large_in(&mut calibrator, &mut hard, 1000);
        let settled = large_in(&mut calibrator, &mut hard, 1000);
        assert!(turning > 300, "the window adapts over its length: {turning}");
        assert!((280..=320).contains(&settled), "once the window holds the new mix, 30% again: {settled}");
        let p = calibrator.place(f64::MAX, 0);
        assert_eq!((p.band, p.large(0.0), p.large(1.0)), (10, false, true));
    }

    #[test]
    fn the_sorted_window_always_holds_the_recent_scores() {
        let mut calibrator = Calibrator::seeded(Scorer::trained().quantiles());
        let mut state = 7u64;
        for i in 0..5_000 {
            state = origin_fallback::mix64(state);
            // Some repeats, some values outside the seed's range.
            let score = match i % 4 {
                0 => 0.25,
                1 => (state >> 11) as f64 / (1u64 << 53) as f64,
                _ => ((state % 1000) as f64) / 1000.0,
            };
            calibrator.count(score);
            if i % 97 == 0 || i > 4_990 {
                let mut expected: Vec<f64> = calibrator.recent.iter().copied().collect();
                expected.sort_by(f64::total_cmp);
                assert_eq!(calibrator.sorted, expected, "after {i}");
            }
        }
    }

    #[test]
    fn one_prompt_sent_over_and_over_still_gets_the_share() {
        let mut calibrator = Calibrator::seeded(Scorer::trained().quantiles());
        let mut random = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            // xorshift64: a uniform draw per request, as hosts give the router.
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            random
        };
        for _ in 0..WINDOW {
            calibrator.place(0.213, next());
        }
        let large = (0..1000).filter(|_| calibrator.place(0.213, next()).large(0.3)).count();
        assert!((250..=350).contains(&large), "{large} of 1000 equal scores large");
    }
}
