//! Small-model routing: which model a node is asked for.
//!
//! `model: auto` lets the router choose, and a rule may send a request to a
//! node advertising the `small_models` capability even though the client named
//! a model that node does not serve. In both cases the request is rewritten to
//! one of the node's models, which are listed smallest first:
//!
//! - requests estimated at or below `model_routing.small_max_tokens`, whose
//!   type is not in `model_routing.complex_types`, get the smallest model;
//! - all others get the largest.

use crate::config::{ModelRoutingConfig, Node};
use crate::facts::RequestFacts;

/// The model name that asks the router to choose.
pub const AUTO: &str = "auto";

/// What to ask a node for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChoice {
    /// Send the body as the client wrote it.
    Keep,
    /// Replace `model` with this one.
    Rewrite(String),
    /// The node cannot serve the request (`auto` on a node with no models).
    Unsuitable,
}

/// Decides the model for `node`. `via_rule` is true when a rule chose the node,
/// which is what allows rewriting on `small_models` nodes.
pub fn choose_model(node: &Node, facts: &RequestFacts, cfg: &ModelRoutingConfig, via_rule: bool) -> ModelChoice {
    let requested = facts.model.as_deref().unwrap_or_default();
    let auto = requested == AUTO;
    if !auto && (node.models.iter().any(|m| m == requested) || !(via_rule && node.small_models)) {
        return ModelChoice::Keep;
    }
    let simple = facts.estimated_tokens <= cfg.small_max_tokens && !cfg.complex_types.contains(&facts.request_type);
    let pick = if simple { node.models.first() } else { node.models.last() };
    match pick {
        Some(m) => ModelChoice::Rewrite(m.clone()),
        None if auto => ModelChoice::Unsuitable,
        None => ModelChoice::Keep,
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

/// Returns `body` with its top-level `model` replaced, keeping every other field as written.
pub fn rewrite_body(body: &[u8], model: &str) -> Option<Vec<u8>> {
    let mut value: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body).ok()?;
    value.insert("model".into(), serde_json::Value::String(model.into()));
    serde_json::to_vec(&value).ok()
}
