//! `pii`: the kinds looked for, and which nodes get what of them.

use super::Validator;
use crate::config::{Node, PiiConfig, PiiMode};
use crate::geo::{NodeResidency, Residency};
use crate::pii::{Detector, Kind, Mode, Pattern, Policy};

/// A node type's name, which `apply_to` takes on its own (`cloud`).
const NODE_TYPES: [&str; 3] = ["local", "cloud", "edge"];

impl Validator<'_> {
    pub(super) fn pii(&mut self, p: &PiiConfig, nodes: &[Node], residency: &Residency) -> Policy {
        let detector = self.pii_detector(p);
        let mut modes: Vec<Option<Option<Mode>>> = vec![None; nodes.len()];
        let mut decide = |chosen: &[usize], mode: PiiMode| {
            for &n in chosen {
                // The first policy that names a node decides for it.
                modes[n].get_or_insert(match mode {
                    PiiMode::Pseudonymize => Some(Mode::Pseudonymize),
                    PiiMode::Redact => Some(Mode::Redact),
                    PiiMode::Block => Some(Mode::Block),
                    PiiMode::Off => None,
                });
            }
        };
        for (i, policy) in p.policies.iter().enumerate() {
            let path = format!("pii.policies[{i}].apply_to");
            if policy.apply_to.is_empty() {
                self.err(&path, "names no node: list node types (`cloud`), ids or selectors");
            }
            let chosen = self.pii_nodes(&path, &policy.apply_to, nodes, residency);
            decide(&chosen, policy.mode);
        }
        match p.mode {
            Some(mode) => {
                let chosen = if p.apply_to.is_empty() {
                    // Every node but the operator's own hardware.
                    (0..nodes.len()).filter(|&i| nodes[i].node_type != crate::config::NodeType::Local).collect()
                } else {
                    self.pii_nodes("pii.apply_to", &p.apply_to, nodes, residency)
                };
                decide(&chosen, mode);
            }
            None if !p.apply_to.is_empty() => {
                self.err("pii.mode", "`apply_to` needs a `mode`: pseudonymize, redact, block or off");
            }
            None => {}
        }
        let modes: Vec<Option<Mode>> = modes.into_iter().map(Option::flatten).collect();
        let configured = !p.patterns.is_empty() || !p.words.is_empty() || p.detect.is_some();
        if configured && modes.iter().all(Option::is_none) {
            self.warn("pii", "no node's requests are looked into: set `pii.mode` (or `policies`) to use these kinds");
        }
        if modes.iter().any(Option::is_some)
            && detector.kinds.is_empty()
            && detector.patterns.is_empty()
            && !detector.has_words()
        {
            self.warn("pii.detect", "nothing is looked for: list kinds, or add `patterns` or `words`");
        }
        Policy { detector, modes }
    }

    /// The kinds `p` looks for.
    fn pii_detector(&mut self, p: &PiiConfig) -> Detector {
        let names = || Kind::BUILT_IN.iter().map(|k| k.name(&[])).collect::<Vec<_>>().join(", ");
        let kinds = match &p.detect {
            None => Kind::BUILT_IN.to_vec(),
            Some(list) => {
                let mut kinds = Vec::new();
                for (i, name) in list.iter().enumerate() {
                    match Kind::built_in(name) {
                        Some(k) if !kinds.contains(&k) => kinds.push(k),
                        Some(_) => self.warn(format!("pii.detect[{i}]"), format!("`{name}` is listed twice")),
                        None => self.err(format!("pii.detect[{i}]"), format!("`{name}` is not a kind: {}", names())),
                    }
                }
                kinds
            }
        };
        let mut patterns: Vec<Pattern> = Vec::new();
        for (i, pattern) in p.patterns.iter().enumerate() {
            let path = format!("pii.patterns[{i}]");
            let name = pattern.name.as_str();
            let lower = name.to_ascii_lowercase();
            if name.is_empty() || name.len() > 40 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                self.err(
                    format!("{path}.name"),
                    format!("`{name}` must be 1 to 40 letters, digits and `_`, such as `employee_id`"),
                );
            } else if Kind::built_in(&lower).is_some() || lower == "word" {
                self.err(format!("{path}.name"), format!("`{name}` is a built-in kind's name; choose another"));
            } else if patterns.iter().any(|p| p.name == name) {
                self.err(format!("{path}.name"), format!("`{name}` names an earlier pattern too"));
            }
            match regex_lite::Regex::new(&pattern.regex) {
                Ok(regex) if regex.is_match("") => {
                    self.err(format!("{path}.regex"), "matches the empty text, so it would find nothing useful")
                }
                Ok(regex) => patterns.push(Pattern { name: name.to_string(), regex }),
                Err(e) => self.err(format!("{path}.regex"), format!("is not a regular expression: {e}")),
            }
        }
        for (i, word) in p.words.iter().enumerate() {
            if word.trim().is_empty() {
                self.err(format!("pii.words[{i}]"), "is empty");
            }
        }
        Detector::new(kinds, patterns, &p.words)
    }

    /// The nodes `names` (an `apply_to`) names, each entry naming one at least.
    fn pii_nodes(&mut self, path: &str, names: &[String], nodes: &[Node], residency: &Residency) -> Vec<usize> {
        let mut chosen = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let path = format!("{path}[{i}]");
            let found = if NODE_TYPES.contains(&name.as_str()) {
                let found: Vec<usize> = (0..nodes.len()).filter(|&n| nodes[n].node_type.as_str() == name).collect();
                if found.is_empty() {
                    self.warn(&path, format!("no node is of type `{name}`"));
                }
                if nodes.iter().any(|n| n.id == *name) {
                    self.warn(&path, format!("`{name}` names the node type here, not the node with that id"));
                }
                found
            } else if let Some(jurisdiction) = name.strip_prefix("residency:") {
                let found: Vec<usize> = (0..nodes.len())
                    .filter(|&n| match nodes[n].residency {
                        NodeResidency::Global => jurisdiction.eq_ignore_ascii_case("global"),
                        NodeResidency::In(j) => residency.name(j).eq_ignore_ascii_case(jurisdiction),
                        NodeResidency::Unspecified => false,
                    })
                    .collect();
                if found.is_empty() {
                    self.err(&path, format!("`{name}` selects no node: no node's data_residency is `{jurisdiction}`"));
                }
                found
            } else {
                self.select(&path, name, nodes).unwrap_or_else(|why| {
                    self.err(&path, why);
                    Vec::new()
                })
            };
            chosen.extend(found);
        }
        chosen
    }
}
