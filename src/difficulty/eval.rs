//! How well scores route between a small and a large model, on prompts
//! labelled with whether each model answered correctly: the figures of
//! `../shared/router-eval/README.md` (and of `edge-router eval`).
//!
//! Sort the prompts by score, highest first, and send the top k% to the
//! large model, for k = 0, 1, …, 100 (`round(k·n/100)` prompts, halves up;
//! equal scores keep the file's order). At each k the quality is the share
//! answered correctly by the model each prompt went to, and PGR(k), the
//! performance gap recovered, is `(quality − weak) / (strong − weak)`.
//! `training/difficulty/train.py` computes the same figures.

/// One labelled prompt's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Labels {
    /// The small model answered correctly.
    pub weak: bool,
    /// The large model answered correctly.
    pub strong: bool,
}

/// A router's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// The mean of PGR over k = 0..100.
    pub apgr: f64,
    /// The smallest k that recovers 50% of the gap (`None`: none does).
    pub cpt50: Option<u32>,
    /// The smallest k that recovers 80% of the gap.
    pub cpt80: Option<u32>,
}

/// Why the figures cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    /// No prompts.
    Empty,
    /// The large model is not better than the small one on these prompts:
    /// there is no gap to recover.
    NoGap { weak: usize, strong: usize },
    /// Not one score per prompt.
    Mismatch { scores: usize, labels: usize },
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("there are no labelled prompts"),
            Self::Mismatch { scores, labels } => write!(f, "{scores} scores for {labels} labelled prompts"),
            Self::NoGap { weak, strong } => write!(
                f,
                "the large model is right on {strong} prompts and the small one on {weak}: there is no gap to recover"
            ),
        }
    }
}

/// The number of prompts sent to the large model at k%, of `n`.
fn top(k: usize, n: usize) -> usize {
    (k * n + 50) / 100
}

fn summarise(curve: &[f64]) -> Summary {
    let cpt = |target: f64| curve.iter().position(|&p| p >= target).and_then(|k| u32::try_from(k).ok());
    Summary { apgr: curve.iter().sum::<f64>() / curve.len() as f64, cpt50: cpt(0.5), cpt80: cpt(0.8) }
}

/// The gap between the models on `labels`, in prompts.
fn gap(labels: &[Labels]) -> Result<i64, EvalError> {
    let count = |f: fn(&Labels) -> bool| labels.iter().filter(|l| f(l)).count();
    let (weak, strong) = (count(|l| l.weak), count(|l| l.strong));
    if labels.is_empty() {
        return Err(EvalError::Empty);
    }
    if strong <= weak {
        return Err(EvalError::NoGap { weak, strong });
    }
    Ok(strong as i64 - weak as i64)
}

/// The figures of routing `labels` by `scores` (one each, in the same order).
pub fn summary(scores: &[f64], labels: &[Labels]) -> Result<Summary, EvalError> {
    if scores.len() != labels.len() {
        return Err(EvalError::Mismatch { scores: scores.len(), labels: labels.len() });
    }
    let gap = gap(labels)?;
    let mut order: Vec<usize> = (0..labels.len()).collect();
    // Stable: equal scores keep the file's order.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut gained = Vec::with_capacity(order.len() + 1);
    gained.push(0i64);
    for &i in &order {
        let l = labels[i];
        gained.push(gained[gained.len() - 1] + i64::from(l.strong) - i64::from(l.weak));
    }
    let n = order.len();
    let curve: Vec<f64> = (0..=100).map(|k| gained[top(k, n)] as f64 / gap as f64).collect();
    Ok(summarise(&curve))
}

/// What routing at random gives, in expectation: the top k% recover the
/// share of the gap they are of the prompts.
pub fn random_summary(labels: &[Labels]) -> Result<Summary, EvalError> {
    gap(labels)?;
    let n = labels.len();
    let curve: Vec<f64> = (0..=100).map(|k| top(k, n) as f64 / n as f64).collect();
    Ok(summarise(&curve))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(bool, bool)]) -> Vec<Labels> {
        pairs.iter().map(|&(weak, strong)| Labels { weak, strong }).collect()
    }

    #[test]
    fn a_perfect_router_recovers_the_gap_with_the_prompts_that_need_it() {
        // Two of ten prompts need the large model; the rest both models answer alike.
        let mut pairs = vec![(false, true), (false, true)];
        pairs.extend([(true, true); 4]);
        pairs.extend([(false, false); 4]);
        let l = labels(&pairs);
        let oracle: Vec<f64> = l.iter().map(|l| f64::from(u8::from(l.strong && !l.weak))).collect();
        let s = summary(&oracle, &l).unwrap();
        assert_eq!((s.cpt50, s.cpt80), (Some(5), Some(15)), "k=5 sends 1 of 10 prompts (half up), k=15 two");
        assert!(s.apgr > 0.85, "ten prompts make a coarse curve: {s:?}");
        let backwards: Vec<f64> = oracle.iter().map(|x| -x).collect();
        let worst = summary(&backwards, &l).unwrap();
        assert!(worst.apgr < 0.2 && worst.cpt80 == Some(95), "{worst:?}");
        let random = random_summary(&l).unwrap();
        assert!((random.apgr - 0.5).abs() < 0.01 && random.cpt50 == Some(45), "{random:?}");
    }

    #[test]
    fn no_gap_is_an_error_not_a_division_by_zero() {
        let l = labels(&[(true, true), (false, false)]);
        assert_eq!(summary(&[1.0, 0.0], &l), Err(EvalError::NoGap { weak: 1, strong: 1 }));
        assert_eq!(random_summary(&[]), Err(EvalError::Empty));
        assert_eq!(summary(&[1.0], &l), Err(EvalError::Mismatch { scores: 1, labels: 2 }));
    }
}
