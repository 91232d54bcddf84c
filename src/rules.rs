//! Routing rules: conditions over request facts, and the targets they name.
//!
//! Rules are compiled at config load: globs are resolved to node indices once,
//! so matching a request is a handful of comparisons.

use origin_fallback::Strategy;

use crate::facts::RequestFacts;
use crate::geo::Country;

/// A comparison against the estimated token count, e.g. `<1000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenComparison {
    /// `<n`
    Less(u64),
    /// `<=n`
    AtMost(u64),
    /// `>n`
    Greater(u64),
    /// `>=n`
    AtLeast(u64),
    /// `=n` or `n`
    Equal(u64),
}

impl TokenComparison {
    /// Parses `<1000`, `<=1000`, `>2000`, `>=2000`, `=500` or `500`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let (ctor, number): (fn(u64) -> Self, &str) = if let Some(n) = t.strip_prefix("<=") {
            (Self::AtMost, n)
        } else if let Some(n) = t.strip_prefix(">=") {
            (Self::AtLeast, n)
        } else if let Some(n) = t.strip_prefix('<') {
            (Self::Less, n)
        } else if let Some(n) = t.strip_prefix('>') {
            (Self::Greater, n)
        } else if let Some(n) = t.strip_prefix('=') {
            (Self::Equal, n)
        } else {
            (Self::Equal, t)
        };
        number.trim().parse().map(ctor).map_err(|_| {
            format!("`{text}` is not a token comparison: write `<1000`, `<=1000`, `>2000`, `>=2000` or `=500`")
        })
    }

    /// Whether `tokens` satisfies the comparison.
    pub fn holds(self, tokens: u64) -> bool {
        match self {
            Self::Less(n) => tokens < n,
            Self::AtMost(n) => tokens <= n,
            Self::Greater(n) => tokens > n,
            Self::AtLeast(n) => tokens >= n,
            Self::Equal(n) => tokens == n,
        }
    }
}

/// `*` matches any run of characters, `?` any one; everything else is literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The compiled conditions of one rule; all present conditions must hold.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    /// Glob over the request type.
    pub request_type: Option<String>,
    /// Inclusive lower bound on estimated tokens.
    pub min_tokens: Option<u64>,
    /// Inclusive upper bound on estimated tokens.
    pub max_tokens: Option<u64>,
    /// Comparison on estimated tokens.
    pub estimated_tokens: Option<TokenComparison>,
    /// Client countries.
    pub geo: Option<Vec<Country>>,
    /// User tiers.
    pub user_tier: Option<Vec<String>>,
    /// Globs over the requested model.
    pub model: Option<Vec<String>>,
}

impl Matcher {
    /// Whether the request satisfies every condition.
    pub fn matches(&self, f: &RequestFacts) -> bool {
        let tokens = f.estimated_tokens;
        self.request_type.as_deref().is_none_or(|p| glob_match(p, &f.request_type))
            && self.min_tokens.is_none_or(|n| tokens >= n)
            && self.max_tokens.is_none_or(|n| tokens <= n)
            && self.estimated_tokens.is_none_or(|c| c.holds(tokens))
            && self.geo.as_ref().is_none_or(|g| f.country.is_some_and(|c| g.contains(&c)))
            && self.user_tier.as_ref().is_none_or(|t| t.iter().any(|tier| **tier == *f.principal.tier))
            && self
                .model
                .as_ref()
                .is_none_or(|m| f.model.as_deref().is_some_and(|model| m.iter().any(|p| glob_match(p, model))))
    }

    /// True when the rule has no conditions and so matches everything.
    pub fn is_catch_all(&self) -> bool {
        self.request_type.as_deref().is_none_or(|p| p.bytes().all(|b| b == b'*'))
            && self.min_tokens.is_none()
            && self.max_tokens.is_none()
            && self.estimated_tokens.is_none()
            && self.geo.is_none()
            && self.user_tier.is_none()
            && self.model.is_none()
    }
}

impl std::fmt::Display for Matcher {
    /// The conditions as a person would write them, e.g. `type=chat, tokens<1000, geo=DE|FR`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(t) = &self.request_type {
            parts.push(format!("type={t}"));
        }
        if let Some(n) = self.min_tokens {
            parts.push(format!("tokens>={n}"));
        }
        if let Some(n) = self.max_tokens {
            parts.push(format!("tokens<={n}"));
        }
        if let Some(c) = self.estimated_tokens {
            parts.push(match c {
                TokenComparison::Less(n) => format!("tokens<{n}"),
                TokenComparison::AtMost(n) => format!("tokens<={n}"),
                TokenComparison::Greater(n) => format!("tokens>{n}"),
                TokenComparison::AtLeast(n) => format!("tokens>={n}"),
                TokenComparison::Equal(n) => format!("tokens={n}"),
            });
        }
        if let Some(g) = &self.geo {
            parts.push(format!("geo={}", g.iter().map(Country::as_str).collect::<Vec<_>>().join("|")));
        }
        if let Some(t) = &self.user_tier {
            parts.push(format!("tier={}", t.join("|")));
        }
        if let Some(m) = &self.model {
            parts.push(format!("model={}", m.join("|")));
        }
        if parts.is_empty() { f.write_str("(any request)") } else { f.write_str(&parts.join(", ")) }
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Shown in `x-edge-rule`.
    pub label: String,
    /// Conditions.
    pub matcher: Matcher,
    /// Nodes the target names, in config order.
    pub candidates: Vec<usize>,
    /// Nodes tried after the candidates, in the order written.
    pub fallback: Vec<usize>,
    /// Ordering among the candidates.
    pub strategy: Strategy,
    /// Rules with a larger boost are tried first.
    pub priority_boost: i64,
    /// A node tried first for this share (0 to 100) of the rule's traffic, and never for the rest.
    pub canary: Option<(usize, f64)>,
    /// How long answers to the rule's requests stay cached.
    pub cache_ttl: Option<crate::config::DurationSpec>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_prefixes_suffixes_and_single_characters() {
        assert!(glob_match("edge-*", "edge-cn-beijing"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*-us", "cloud-aws-us"));
        assert!(glob_match("gpt-4?", "gpt-4o"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("edge-*", "cloud-edge-1"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn token_comparisons_parse_and_hold() {
        assert!(TokenComparison::parse("<1000").unwrap().holds(999));
        assert!(!TokenComparison::parse("<1000").unwrap().holds(1000));
        assert!(TokenComparison::parse(">= 1000").unwrap().holds(1000));
        assert!(TokenComparison::parse(">5").unwrap().holds(6));
        assert!(TokenComparison::parse("<=5").unwrap().holds(5));
        assert!(TokenComparison::parse("500").unwrap().holds(500));
        assert!(TokenComparison::parse("about 5").unwrap_err().contains("not a token comparison"));
    }
}
