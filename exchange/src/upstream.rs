//! The request an origin gets: which client headers go on, what is added,
//! and the body (the client's, or with its `model` rewritten).
//!
//! An origin sees every client header except the hop-by-hop ones, the
//! client's credentials and `Host` (`edge_router::hop::never_forwarded`),
//! those the client's `Connection` names (the forward's `remove_headers`),
//! and the trusted country header the edge box reads. A revalidation adds
//! the stored entry's validators. The host adds `Host` and the node's own
//! key, which never pass through here.

use bytes::Bytes;
use edge_router::hop::never_forwarded_lowercase;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use edge_router::config::Node;
use edge_router::error::RouterError;
use edge_router::facts::{response_id_of_path, untag_response_id};
use edge_router::pii::{Mode, Policy, Vault, protect_request};
use edge_router::wire::{Forward, ForwardBody, RuleRef};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::transform::{SetModel, transform_whole, untag_previous_response_id};

/// The header fields of the request to the origin of `forward`, from the
/// client's `client`. `country_header` is the header the host trusts for
/// the client's country (it never leaves the edge); `conditional` the
/// validators of a stored entry being revalidated.
pub fn upstream_headers(
    client: &HeaderMap,
    forward: &Forward,
    country_header: Option<&str>,
    conditional: &[(HeaderName, HeaderValue)],
) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(client.len() + conditional.len() + 2);
    for (name, value) in client {
        let removed = never_forwarded_lowercase(name.as_str())
            || forward.remove_headers.binary_search_by(|r| r.as_str().cmp(name.as_str())).is_ok()
            || country_header.is_some_and(|c| name.as_str().eq_ignore_ascii_case(c));
        if !removed {
            headers.append(name, value.clone());
        }
    }
    for (name, value) in conditional {
        headers.insert(name, value.clone());
    }
    headers
}

/// The body to send to `node`: `Some` bytes (the buffered body, or it with
/// its `model` rewritten), or `None` when the client's body is still in its
/// connection and streams through as it is (`original` is then empty). A
/// continuation of a response the node holds (`RuleRef::Affinity`) names it
/// as the node did, without the router's tag.
pub fn upstream_body(forward: &Forward, original: &Bytes, streamed: bool, node: &str) -> Option<Bytes> {
    let body = match &forward.body {
        // Through the transform seam: the body's bytes stay the client's
        // but for the model.
        ForwardBody::RewriteModel(model) => transform_whole(&mut SetModel::request(model), original.clone()),
        ForwardBody::Original if streamed => return None,
        ForwardBody::Original => original.clone(),
    };
    if forward.rule == RuleRef::Affinity
        && let Some(untagged) = untag_previous_response_id(&body, node)
    {
        return Some(untagged.into());
    }
    Some(body)
}

/// The target (path and query) to send to `node`: the client's, but for a
/// response object's id tagged with the node (`/v1/responses/{id}~node`),
/// which goes as the node made it.
pub fn upstream_target<'a>(forward: &Forward, target: &'a str, node: &str) -> Cow<'a, str> {
    let tagged = (forward.rule == RuleRef::Affinity).then(|| response_id_of_path(target)).flatten();
    match tagged.and_then(untag_response_id) {
        Some((holder, id)) if holder == node => {
            let start = "/v1/responses/".len();
            let end = start + id.len() + 1 + holder.len();
            Cow::Owned(format!("{}{id}{}", &target[..start], &target[end..]))
        }
        _ => Cow::Borrowed(target),
    }
}

/// What a node gets for a forward: the target on the node (path and
/// query), the body (`None`: the client's streams through as it is), and
/// the header fields its API adds. The credential is the host's to add
/// ([`crate::provider::credential`]).
pub struct Outbound<'a> {
    /// Path and query, to follow the node's base URL (`Node::url_for`).
    pub target: Cow<'a, str>,
    /// The body to send, or `None` for the client's stream.
    pub body: Option<Bytes>,
    /// Header fields the node's API needs (`anthropic-version`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// What the node's `pii` policy found in the body and did with it.
    pub pii: Option<Shielded>,
}

/// The personal values found in a request for a node whose `pii` policy
/// looks (`edge_router::pii`), and what became of them.
#[derive(Debug, Clone)]
pub struct Shielded {
    /// What the node's policy does.
    pub mode: Mode,
    /// How many values of each kind (never the values).
    pub found: BTreeMap<String, u32>,
    /// The placeholders to restore in the answer (`pseudonymize`).
    pub vault: Option<Arc<Vault>>,
    /// The body is not JSON: nothing could be looked for in it.
    pub unreadable: bool,
}

impl Shielded {
    /// What the request's record says of it.
    pub fn record(&self) -> crate::record::PiiFound {
        crate::record::PiiFound { mode: self.mode.as_str(), found: self.found.clone() }
    }

    /// Why a request that must not go to its node is refused: its policy
    /// blocks what was found, or nothing could be looked for.
    pub fn refusal(&self) -> RouterError {
        if self.unreadable {
            return RouterError::BadRequest(
                "the request body is not JSON, or not declared as JSON (Content-Type: application/json), so the personal data in it could not be looked for".into(),
            );
        }
        let kinds: Vec<String> = self.found.iter().map(|(kind, n)| format!("{kind}: {n}")).collect();
        RouterError::PersonalData(kinds.join(", "))
    }

    /// The client's answer to request `id` (from `country`) refused so,
    /// with what its record says.
    pub fn refused(&self, country: Option<edge_router::geo::Country>, id: u64) -> http::Response<Bytes> {
        let mut response = crate::answer::host_error(&self.refusal(), country, id);
        response.extensions_mut().insert(self.record());
        response
    }
}

/// The request `node` gets for `forward` of a client's request for
/// `target` with body `original` (empty, and `streamed`, when it is still
/// in its connection): the response id untagged, the model rewritten, the
/// personal values the node's `pii` policy names replaced, and translated
/// into the node's API when it speaks another than OpenAI's. `Err` when the
/// request must not go: the policy blocks what was found, or the body is
/// not JSON and so could not be looked into.
pub fn outbound<'a>(
    forward: &Forward,
    node: &Node,
    target: &'a str,
    original: &Bytes,
    streamed: bool,
    pii: &Policy,
) -> Result<Outbound<'a>, Shielded> {
    let target = upstream_target(forward, target, &node.id);
    let mut body = upstream_body(forward, original, streamed, &node.id);
    let mut shielded = None;
    let policy = usize::try_from(forward.node).ok().and_then(|n| pii.for_node(n));
    // A body still in its connection was not declared JSON: nothing in it
    // can be looked for, and a node with a policy does not get it unexamined.
    if let (true, Some(mode)) = (streamed, policy) {
        return Err(Shielded { mode, found: BTreeMap::new(), vault: None, unreadable: true });
    }
    if let (Some(sent), Some(mode)) = (&body, policy) {
        let mut vault = Vault::new();
        let protected = protect_request(sent, &pii.detector, mode, &mut vault);
        if protected.unreadable {
            return Err(Shielded { mode, found: BTreeMap::new(), vault: None, unreadable: true });
        }
        if !protected.found.is_empty() {
            let vault = (!vault.is_empty()).then(|| Arc::new(vault));
            let found = Shielded { mode, found: protected.found, vault, unreadable: false };
            if mode == Mode::Block {
                return Err(found);
            }
            if let Some(replaced) = protected.body {
                body = Some(replaced.into());
            }
            shielded = Some(found);
        }
    }
    // An answer the router reads and rewrites (translated, a response
    // object whose ids it tags, or placeholders to restore) must come
    // uncompressed: neither host decompresses what it passes on. So must
    // one kept as an AI answer, which any client may be served next.
    let identity = (http::header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    let uncompressed =
        shielded.as_ref().is_some_and(|s| s.vault.is_some()) || forward.fill.as_ref().is_some_and(|f| !f.http);
    let mut out = match body.as_ref().and_then(|b| crate::provider::translate(node, &target, b)) {
        Some(t) => {
            let mut headers = t.headers;
            headers.push(identity);
            Outbound { target: Cow::Owned(t.target), body: Some(t.body), headers, pii: None }
        }
        None if target.starts_with("/v1/responses") || uncompressed => {
            Outbound { target, body, headers: vec![identity], pii: None }
        }
        None => Outbound { target, body, headers: Vec::new(), pii: None },
    };
    out.pii = shielded;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(remove: &[&str], body: ForwardBody) -> Forward {
        Forward { remove_headers: remove.iter().map(|s| s.to_string()).collect(), ..crate::test_support::forward(body) }
    }

    #[test]
    fn client_keys_hop_by_hop_connection_named_and_country_headers_stay_behind() {
        let mut client = HeaderMap::new();
        for (n, v) in [
            ("authorization", "Bearer client-key"),
            ("x-api-key", "k"),
            ("host", "edge.example"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "s"),
            ("x-country", "DE"),
            ("transfer-encoding", "chunked"),
            ("accept", "application/json"),
            ("x-trace", "1"),
        ] {
            client.append(n, HeaderValue::from_static(v));
        }
        client.append("x-trace", HeaderValue::from_static("2"));
        let validators = [(http::header::IF_NONE_MATCH, HeaderValue::from_static("\"v1\""))];
        let out =
            upstream_headers(&client, &forward(&["x-secret"], ForwardBody::Original), Some("X-Country"), &validators);
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept", "x-trace", "if-none-match"]);
        assert_eq!(out.get_all("x-trace").iter().count(), 2, "repeated fields all go");
    }

    #[test]
    fn the_body_is_the_clients_or_rewritten_keeping_every_other_field_in_order() {
        let original = Bytes::from_static(br#"{"stream":true,"model":"auto","messages":[]}"#);
        let rewritten = upstream_body(&forward(&[], ForwardBody::RewriteModel("tiny".into())), &original, false, "n");
        assert_eq!(rewritten.as_deref(), Some(&br#"{"stream":true,"model":"tiny","messages":[]}"#[..]));
        assert_eq!(upstream_body(&forward(&[], ForwardBody::Original), &original, false, "n"), Some(original.clone()));
        assert_eq!(upstream_body(&forward(&[], ForwardBody::Original), &Bytes::new(), true, "n"), None);
        let not_json = Bytes::from_static(b"not json");
        let kept = upstream_body(&forward(&[], ForwardBody::RewriteModel("tiny".into())), &not_json, false, "n");
        assert_eq!(kept, Some(not_json), "a body that is not a JSON object goes as it came");
    }

    #[test]
    fn a_response_the_node_holds_is_reached_by_the_id_the_node_gave_it() {
        let held = Forward { rule: RuleRef::Affinity, ..forward(&[], ForwardBody::Original) };
        assert_eq!(
            upstream_target(&held, "/v1/responses/resp_9~n/input_items?limit=2", "n"),
            "/v1/responses/resp_9/input_items?limit=2"
        );
        assert_eq!(upstream_target(&held, "/v1/responses/resp_9~n", "n"), "/v1/responses/resp_9");
        assert_eq!(
            upstream_target(&held, "/v1/responses/resp_9~m", "n"),
            "/v1/responses/resp_9~m",
            "another node's tag stays"
        );
        let routed = forward(&[], ForwardBody::Original);
        assert_eq!(
            upstream_target(&routed, "/v1/responses/resp_9~n", "n"),
            "/v1/responses/resp_9~n",
            "only affinity untags"
        );
        let body = Bytes::from_static(br#"{"model":"auto","previous_response_id":"resp_9~n"}"#);
        let sent =
            upstream_body(&Forward { body: ForwardBody::RewriteModel("tiny".into()), ..held }, &body, false, "n");
        assert_eq!(sent.as_deref(), Some(&br#"{"model":"tiny","previous_response_id":"resp_9"}"#[..]));
    }

    #[test]
    fn a_nodes_pii_policy_replaces_blocks_or_passes_what_it_finds() {
        let yaml = "nodes:\n  - {id: gpu, type: local, host: \"http://g\"}\n  - {id: gpt, type: cloud, host: \"http://o\"}\n  - {id: claude, type: cloud, host: \"http://a\", provider: anthropic}\npii:\n  mode: pseudonymize\n  policies: [{apply_to: [gpt], mode: block}]\n";
        let config = edge_router::RouterConfig::load("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
        let body =
            Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"I am jane@example.com"}]}"#);
        let to = |node: u32| Forward { node, ..forward(&[], ForwardBody::Original) };
        let local = outbound(&to(0), &config.nodes[0], "/v1/chat/completions", &body, false, &config.pii);
        let local = local.expect("sent");
        assert_eq!(local.body, Some(body.clone()), "a local node gets the request as it came");
        assert!(local.pii.is_none() && local.headers.is_empty());

        let Err(blocked) = outbound(&to(1), &config.nodes[1], "/v1/chat/completions", &body, false, &config.pii) else {
            panic!("blocked")
        };
        assert_eq!(blocked.record().found.into_iter().collect::<Vec<_>>(), [("email".to_string(), 1)]);
        let message = blocked.refusal().to_string();
        assert!(message.contains("email: 1") && !message.contains("jane"), "{message}");

        // Pseudonymized first, then translated into the node's API.
        let sent = outbound(&to(2), &config.nodes[2], "/v1/chat/completions", &body, false, &config.pii);
        let sent = sent.expect("sent");
        let text = String::from_utf8(sent.body.clone().unwrap().to_vec()).unwrap();
        assert!(text.contains("[EMAIL_1]") && !text.contains("jane"), "{text}");
        assert_eq!(sent.target, "/v1/messages");
        assert!(sent.headers.iter().any(|(n, v)| n == http::header::ACCEPT_ENCODING && v == "identity"));
        let shielded = sent.pii.expect("found");
        assert_eq!(shielded.vault.expect("to restore").restore("[EMAIL_1]", false), "jane@example.com");

        // A body that cannot be read is not sent where a policy applies; nothing applies to the local node.
        let broken = Bytes::from_static(br#"{"messages":[{"role":"user","content":"jane@example.com"}"#);
        let Err(refused) = outbound(&to(2), &config.nodes[2], "/v1/chat/completions", &broken, false, &config.pii)
        else {
            panic!("refused")
        };
        assert_eq!(refused.refused(None, 7).status(), 400);
        assert!(refused.refusal().to_string().contains("not JSON"));
        assert!(outbound(&to(0), &config.nodes[0], "/v1/chat/completions", &broken, false, &config.pii).is_ok());
        // Nor is one still in its connection (not declared JSON, so not read).
        let streamed = Bytes::new();
        let Err(refused) = outbound(&to(2), &config.nodes[2], "/v1/rerank", &streamed, true, &config.pii) else {
            panic!("refused")
        };
        assert!(refused.refusal().to_string().contains("declared as JSON"), "{}", refused.refusal());
        assert!(outbound(&to(0), &config.nodes[0], "/v1/rerank", &streamed, true, &config.pii).is_ok());
    }
}
