//! The AI-request cache: keys for OpenAI-compatible `POST` requests, and
//! the per-request cache decision (TTL, client overrides, sampling).
//!
//! ## Normalization
//!
//! A key is the SHA-256 of the method, the path (without query), the model
//! the router resolved (after any rewrite), the partition, and the request
//! body in a canonical form:
//!
//! - object keys sorted, at every depth, so key order does not matter;
//! - numbers written one way (`0`, `0.0` and `0e0` are the same; integers
//!   stay exact);
//! - insignificant whitespace gone (it is re-serialized);
//! - `model` replaced by the resolved model, and the fields that do not
//!   change the answer left out: `user`, `metadata`, `store`,
//!   `service_tier`.
//!
//! Every other field counts, known or not (`messages`, `prompt`, `input`,
//! `temperature`, `top_p`, `tools`, `tool_choice`, `response_format`,
//! `seed`, `max_tokens`, `stop`, `n`, penalties, `stream`…): an unknown
//! parameter can only split the cache, never serve a wrong answer. `stream`
//! counts because a streamed answer is stored as SSE and a plain one as JSON,
//! and `stream_options` because `include_usage` adds a last chunk with no
//! `choices`, which a client that did not ask for it may not expect.
//!
//! The key reads `ai/<partition>/<hex digest>`, so a purge by prefix can
//! drop a tenant's entries (`ai/<tenant>/`) or all shared ones (`ai/*/`).

use serde_json::Value;

/// Fields left out of the key: they do not change the answer.
pub const IGNORED_FIELDS: [&str; 4] = ["user", "metadata", "store", "service_tier"];

/// Whose cache an entry lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition<'a> {
    /// One tenant's entries: other tenants never see them.
    Tenant(&'a str),
    /// One cache for everybody (the config marks the cache shared).
    Shared,
}

/// A cache key, `ai/<partition>/<digest>`.
pub fn ai_key(method: &str, path: &str, model: &str, body: &Value, partition: Partition<'_>) -> String {
    let mut canonical = String::with_capacity(256);
    let path = path.split('?').next().unwrap_or_default();
    let part = match partition {
        Partition::Tenant(t) => escape(t),
        Partition::Shared => "*".to_string(),
    };
    canonical.push_str("edge-cache/ai/v1\n");
    for piece in [method, path, model, part.as_str()] {
        canonical.push_str(piece);
        canonical.push('\n');
    }
    if let Value::Object(fields) = body {
        write_object(&mut canonical, fields, |k| k != "model" && !IGNORED_FIELDS.contains(&k));
    } else {
        write_canonical(&mut canonical, body);
    }
    format!("ai/{part}/{}", crate::sha256_hex(&canonical))
}

/// A partition name safe in a key: `/` and `%` are percent-escaped.
fn escape(text: &str) -> String {
    text.replace('%', "%25").replace('/', "%2F")
}

fn write_string(out: &mut String, s: &str) {
    out.push_str(&Value::String(s.to_string()).to_string());
}

/// Writes `items` between `open` and `close`, comma-separated, each with `write`.
fn write_list<T>(
    out: &mut String,
    open: char,
    items: impl IntoIterator<Item = T>,
    close: char,
    write: impl Fn(&mut String, T),
) {
    out.push(open);
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(out, item);
    }
    out.push(close);
}

/// An object with the keys `keep` accepts, sorted.
fn write_object(out: &mut String, map: &serde_json::Map<String, Value>, keep: impl Fn(&str) -> bool) {
    let mut keys: Vec<&String> = map.keys().filter(|k| keep(k)).collect();
    keys.sort();
    write_list(out, '{', keys, '}', |out, k| {
        write_string(out, k);
        out.push(':');
        write_canonical(out, &map[k.as_str()]);
    });
}

fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => write_object(out, map, |_| true),
        Value::Array(items) => write_list(out, '[', items, ']', write_canonical),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    out.push_str(&(f as i64).to_string());
                } else {
                    out.push_str(&format!("{f:e}"));
                }
            }
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The cache settings that apply to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AiPolicy {
    /// The TTL from the request's rule, if it sets one.
    pub rule_ttl_s: Option<u64>,
    /// The serving node's `cache_ttl`, if set.
    pub node_ttl_s: Option<u64>,
    /// The cache's default TTL.
    pub default_ttl_s: u64,
    /// Whether answers to sampled requests (temperature above 0) may be cached.
    pub cache_sampled: bool,
    /// Whether clients may set the TTL with `x-edge-cache-ttl`.
    pub client_ttl: bool,
}

/// What the cache does for one AI request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AiDecision {
    /// Neither looked up nor stored, with the reason.
    Bypass(&'static str),
    /// Looked up unless `refresh` (the client sent `no-cache`: fetch anew),
    /// and a successful answer stored for `ttl_s` seconds.
    Use {
        /// Skip the lookup, but store the new answer.
        refresh: bool,
        /// Lifetime of a stored answer.
        ttl_s: u64,
    },
}

/// Whether a request samples, so that its answer differs from call to call:
/// a `temperature` above 0, or none on a chat or completion request (the
/// OpenAI default is 1). Embeddings, which take no temperature, do not.
pub fn samples(body: &Value) -> bool {
    match body.get("temperature") {
        Some(t) => t.as_f64().is_none_or(|t| t > 0.0),
        None => body.get("messages").is_some() || body.get("prompt").is_some(),
    }
}

/// Decides what the cache does for an AI request, given whether it
/// [`samples`], its `Cache-Control` values and its `x-edge-cache-ttl` value.
///
/// The TTL is the rule's, then the node's, then the default. A client's
/// `no-store` bypasses the cache; its `no-cache` refreshes the entry. A
/// sampling request is not cached unless `cache_sampled`.
pub fn ai_decision<'a>(
    samples: bool,
    cache_control: impl IntoIterator<Item = &'a str>,
    client_ttl: Option<&str>,
    policy: &AiPolicy,
) -> AiDecision {
    let cc = crate::Directives::parse(cache_control);
    if cc.no_store {
        return AiDecision::Bypass("the client sent cache-control: no-store");
    }
    if samples && !policy.cache_sampled {
        return AiDecision::Bypass("the request samples (temperature above 0, or unset)");
    }
    let mut ttl_s = policy.rule_ttl_s.or(policy.node_ttl_s).unwrap_or(policy.default_ttl_s);
    if policy.client_ttl
        && let Some(asked) = client_ttl.and_then(|t| t.trim().parse::<u64>().ok())
    {
        ttl_s = asked;
    }
    if ttl_s == 0 {
        return AiDecision::Bypass("the TTL is zero");
    }
    AiDecision::Use { refresh: cc.no_cache, ttl_s }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key(body: &Value, partition: Partition<'_>) -> String {
        ai_key("POST", "/v1/chat/completions", "llama-3-8b", body, partition)
    }

    #[test]
    fn key_order_whitespace_and_number_spelling_do_not_matter() {
        let a: Value = serde_json::from_str(
            r#"{"model":"auto","temperature":0,"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object","schema":{"b":1,"a":2}}}"#,
        )
        .unwrap_or_default();
        let b: Value = serde_json::from_str(
            r#"{ "messages" : [ {"content":"hi", "role":"user"} ], "response_format": {"schema": {"a": 2.0, "b": 1}, "type": "json_object"},
                "temperature": 0.0, "model": "llama-3-8b", "user": "u-17" }"#,
        )
        .unwrap_or_default();
        assert_eq!(key(&a, Partition::Shared), key(&b, Partition::Shared));
    }

    #[test]
    fn every_parameter_that_changes_the_answer_splits_the_key() {
        let base = json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 0});
        let k = key(&base, Partition::Shared);
        for (field, value) in [
            ("temperature", json!(0.5)),
            ("top_p", json!(0.9)),
            ("tools", json!([{"type": "function", "function": {"name": "f"}}])),
            ("response_format", json!({"type": "json_object"})),
            ("seed", json!(7)),
            ("max_tokens", json!(10)),
            ("stream", json!(true)),
            ("stream_options", json!({"include_usage": true})),
            ("some_future_parameter", json!("x")),
        ] {
            let mut changed = base.clone();
            changed[field] = value;
            assert_ne!(key(&changed, Partition::Shared), k, "{field}");
        }
        let mut other_message = base.clone();
        other_message["messages"][0]["content"] = json!("hello");
        assert_ne!(key(&other_message, Partition::Shared), k);
        assert_ne!(ai_key("POST", "/v1/chat/completions", "gpt-4o", &base, Partition::Shared), k, "the resolved model");
        assert_eq!(ai_key("POST", "/v1/chat/completions?x=1", "llama-3-8b", &base, Partition::Shared), k);
    }

    #[test]
    fn tenants_get_separate_keys_with_readable_prefixes() {
        let body = json!({"input": "text"});
        let a = key(&body, Partition::Tenant("acme"));
        let b = key(&body, Partition::Tenant("globex"));
        assert_ne!(a, b);
        assert!(a.starts_with("ai/acme/") && key(&body, Partition::Shared).starts_with("ai/*/"));
        assert!(key(&body, Partition::Tenant("a/b")).starts_with("ai/a%2Fb/"), "a slash cannot forge a prefix");
    }

    const POLICY: AiPolicy =
        AiPolicy { rule_ttl_s: None, node_ttl_s: None, default_ttl_s: 300, cache_sampled: false, client_ttl: false };

    #[test]
    fn ttl_comes_from_rule_then_node_then_default_and_client_overrides_when_allowed() {
        let body = json!({"messages": [], "temperature": 0});
        let ttl = |p: AiPolicy, header: Option<&str>| ai_decision(samples(&body), [], header, &p);
        assert_eq!(ttl(POLICY, None), AiDecision::Use { refresh: false, ttl_s: 300 });
        let node = AiPolicy { node_ttl_s: Some(60), ..POLICY };
        assert_eq!(ttl(node, None), AiDecision::Use { refresh: false, ttl_s: 60 });
        let rule = AiPolicy { rule_ttl_s: Some(10), ..node };
        assert_eq!(ttl(rule, None), AiDecision::Use { refresh: false, ttl_s: 10 });
        assert_eq!(ttl(rule, Some("999")), AiDecision::Use { refresh: false, ttl_s: 10 }, "not allowed");
        let client = AiPolicy { client_ttl: true, ..rule };
        assert_eq!(ttl(client, Some("999")), AiDecision::Use { refresh: false, ttl_s: 999 });
        assert!(matches!(ttl(client, Some("0")), AiDecision::Bypass(_)));
    }

    #[test]
    fn client_cache_control_and_sampling_decide_bypass_and_refresh() {
        let greedy = json!({"messages": [], "temperature": 0});
        let decide = |body: &Value, cc: &[&str], p: &AiPolicy| ai_decision(samples(body), cc.iter().copied(), None, p);
        assert!(matches!(decide(&greedy, &["no-store"], &POLICY), AiDecision::Bypass(_)));
        assert_eq!(decide(&greedy, &["no-cache"], &POLICY), AiDecision::Use { refresh: true, ttl_s: 300 });
        let sampled = json!({"messages": [], "temperature": 0.7});
        assert!(matches!(decide(&sampled, &[], &POLICY), AiDecision::Bypass(_)));
        let default_temperature = json!({"messages": []});
        assert!(matches!(decide(&default_temperature, &[], &POLICY), AiDecision::Bypass(_)));
        let allowed = AiPolicy { cache_sampled: true, ..POLICY };
        assert!(matches!(decide(&sampled, &[], &allowed), AiDecision::Use { .. }));
        let embedding = json!({"input": "text"});
        assert!(matches!(decide(&embedding, &[], &POLICY), AiDecision::Use { .. }));
    }
}
