//! Small-model routing: which model a node is asked for.
//!
//! `model: auto` lets the router choose. A rule may also send a request to a
//! node that does not serve the model the client named: a target advertising
//! the `small_models` capability, or any node in the rule's `fallback` list
//! (falling back from an on-prem Llama to a cloud API must ask the cloud for
//! one of *its* models). In these cases the request is rewritten to one of the
//! node's models, which are listed smallest first:
//!
//! - a request whose type is in `model_routing.complex_types` gets the largest;
//! - with `strategy: tokens` (the default), requests estimated at or below
//!   `model_routing.small_max_tokens` get the smallest model, others the largest;
//! - with `strategy: learned`, the hardest `large_share` of requests by their
//!   difficulty score (see [`crate::difficulty`]) get the largest, others the
//!   smallest. The router keeps the calibration, so it decides that part.

use crate::config::{ModelRoutingConfig, Node, SizeStrategy};
use crate::facts::RequestFacts;

/// The model name that asks the router to choose.
pub const AUTO: &str = "auto";

/// What to ask a node for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChoice {
    /// Send the body as the client wrote it.
    Keep,
    /// Replace `model` with the node's model at this index of its
    /// `models` (an index: the name is copied only into the forward that
    /// asks for it, not for every node of a fallback chain).
    Rewrite(usize),
    /// A [`ModelChoice::Rewrite`] the request's [`Size`] decided: its
    /// difficulty score, if one did, is shown with the model.
    Sized(usize),
    /// The node's smallest or largest model, as the request's [`Size`]
    /// decides: resolved with [`ModelChoice::sized`] before the chain is used.
    BySize,
    /// The node cannot serve the request (`auto` on a node with no models).
    Unsuitable,
}

impl ModelChoice {
    /// The index of the node's model the body is rewritten to, if it is.
    pub fn rewrite(&self) -> Option<usize> {
        match self {
            Self::Rewrite(m) | Self::Sized(m) => Some(*m),
            _ => None,
        }
    }
}

/// Which end of a node's models a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// The first (smallest) model.
    Small,
    /// The last (largest) model.
    Large,
}

impl ModelChoice {
    /// The choice on `node` once the request's size is known.
    pub fn sized(self, node: &Node, size: Size) -> Self {
        match (self, size) {
            (Self::BySize, Size::Small) => Self::Sized(0),
            (Self::BySize, Size::Large) => Self::Sized(node.models.len().saturating_sub(1)),
            (other, _) => other,
        }
    }
}

/// The size a request gets without a score: the largest model for a type in
/// `complex_types` (`Some`, whatever the strategy); with `strategy: tokens`,
/// by its estimated tokens. `None`: the strategy scores it.
pub fn size_unscored(facts: &RequestFacts, cfg: &ModelRoutingConfig) -> Option<Size> {
    if cfg.complex_types.contains(&facts.request_type) {
        return Some(Size::Large);
    }
    match cfg.strategy {
        SizeStrategy::Tokens if facts.estimated_tokens <= cfg.small_max_tokens => Some(Size::Small),
        SizeStrategy::Tokens => Some(Size::Large),
        SizeStrategy::Learned => None,
    }
}

/// How a node came to be in a request's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// The default strategy picked it, among nodes serving the model.
    Default,
    /// It is (one of) a matching rule's target.
    RuleTarget,
    /// It is in a matching rule's `fallback` list.
    RuleFallback,
}

/// Decides the model for `node`.
pub fn choose_model(node: &Node, facts: &RequestFacts, reached: Reached) -> ModelChoice {
    let requested = facts.model.as_deref().unwrap_or_default();
    let auto = requested == AUTO;
    let may_substitute = match reached {
        Reached::Default => false,
        Reached::RuleTarget => node.small_models,
        Reached::RuleFallback => true,
    };
    if !auto && (node.models.iter().any(|m| m == requested) || !may_substitute) {
        return ModelChoice::Keep;
    }
    match node.models.len() {
        0 if auto => ModelChoice::Unsuitable,
        0 => ModelChoice::Keep,
        1 => ModelChoice::Rewrite(0),
        _ => ModelChoice::BySize,
    }
}

/// Whether a node is a candidate when no rule matched: it serves the model, or
/// lists no models (it accepts any), or the client asked for `auto` and it has some.
pub fn serves(node: &Node, model: Option<&str>) -> bool {
    match model {
        Some(AUTO) => !node.models.is_empty(),
        Some(m) => node.models.is_empty() || node.models.iter().any(|x| x == m),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Principal;
    use crate::config::{NodeTimeouts, NodeType};
    use crate::facts::Endpoint;
    use crate::geo::NodeResidency;

    fn node(models: &[&str], small: bool) -> Node {
        Node {
            id: "n".into(),
            node_type: NodeType::Edge,
            provider: None,
            api: crate::config::Api::OpenAi,
            api_version: None,
            aws_credentials_env: None,
            region: None,
            location: None,
            base_url: "http://n".into(),
            models: models.iter().map(|m| m.to_string()).collect(),
            small_models: small,
            max_concurrent: None,
            priority: 0,
            residency: NodeResidency::Global,
            cost_per_1k_tokens: 0.0,
            max_cost_per_day: None,
            cache_ttl: None,
            weight: 1.0,
            api_key_env: None,
            timeouts: NodeTimeouts::default(),
            health_path: "/v1/models".into(),
            metrics_url: None,
            capabilities: Vec::new(),
        }
    }

    /// The model `choice` rewrites to on `node`, if it rewrites.
    fn rewritten(node: &Node, choice: ModelChoice) -> Option<&str> {
        match choice {
            ModelChoice::Rewrite(i) | ModelChoice::Sized(i) => Some(node.models[i].as_str()),
            _ => None,
        }
    }

    fn facts(model: &str, tokens: u64, kind: &str) -> RequestFacts {
        RequestFacts {
            endpoint: Endpoint::ChatCompletions,
            model: Some(model.into()),
            stream: false,
            max_tokens: None,
            prompt_tokens: tokens,
            estimated_tokens: tokens,
            request_type: kind.into(),
            country: None,
            principal: Principal::anonymous(),
            previous_response_id: None,
            samples: true,
        }
    }

    #[test]
    fn auto_picks_smallest_for_short_and_largest_for_long_or_complex() {
        let cfg = ModelRoutingConfig::default();
        let n = node(&["tiny", "mid", "big"], false);
        let pick = |f: RequestFacts| {
            let size = size_unscored(&f, &cfg).expect("the tokens strategy needs no score");
            rewritten(&n, choose_model(&n, &f, Reached::Default).sized(&n, size))
        };
        assert_eq!(pick(facts("auto", 100, "chat")), Some("tiny"));
        assert_eq!(pick(facts("auto", 5000, "chat")), Some("big"));
        assert_eq!(pick(facts("auto", 100, "complex_reasoning")), Some("big"));
        assert_eq!(
            choose_model(&node(&[], false), &facts("auto", 1, "chat"), Reached::Default),
            ModelChoice::Unsuitable
        );
        let one = node(&["only"], false);
        assert_eq!(
            choose_model(&one, &facts("auto", 1, "chat"), Reached::Default),
            ModelChoice::Rewrite(0),
            "no size to decide"
        );
        let learned = ModelRoutingConfig { strategy: SizeStrategy::Learned, ..ModelRoutingConfig::default() };
        assert_eq!(size_unscored(&facts("auto", 100, "chat"), &learned), None, "learned scores it");
        assert_eq!(size_unscored(&facts("auto", 100, "complex_reasoning"), &learned), Some(Size::Large));
    }

    #[test]
    fn named_models_are_substituted_only_on_small_model_targets_and_fallbacks() {
        let f = facts("gpt-4o", 100, "chat");
        let plain = node(&["llama"], false);
        let small = node(&["qwen-0.5b", "llama-3b"], true);
        assert_eq!(choose_model(&plain, &f, Reached::Default), ModelChoice::Keep);
        assert_eq!(choose_model(&plain, &f, Reached::RuleTarget), ModelChoice::Keep);
        assert_eq!(rewritten(&plain, choose_model(&plain, &f, Reached::RuleFallback)), Some("llama"));
        assert_eq!(
            rewritten(&small, choose_model(&small, &f, Reached::RuleTarget).sized(&small, Size::Small)),
            Some("qwen-0.5b")
        );
        let served = facts("llama-3b", 100, "chat");
        assert_eq!(choose_model(&small, &served, Reached::RuleTarget), ModelChoice::Keep);
    }
}
