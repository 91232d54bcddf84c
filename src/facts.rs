//! Request facts: what rules look at.
//!
//! An OpenAI-compatible body is read once. The token estimate is accumulated
//! while serde walks the body, so message text is never copied.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::auth::Principal;
use crate::config::RequestsConfig;
use crate::geo::Country;
use crate::tokens::estimate_text_tokens;

/// The endpoints the router understands; everything else is passed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions`
    Completions,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `POST /v1/responses`
    Responses,
    /// `POST /v1/messages`: Anthropic's Messages API, from Claude-native clients.
    Messages,
    /// `GET` (or `HEAD`) `/v1/models` and `/v1/models/{model}`: answered by the router.
    Models,
    /// `/v1/responses/{id}` and below it (`/cancel`, `/input_items`), any
    /// method: the response object a node holds, reached by its id.
    ResponseById,
    /// Any other method or path.
    Other,
}

impl Endpoint {
    /// Classifies a method and a path (with or without a query).
    pub fn classify(method: &str, path_and_query: &str) -> Self {
        let path = path_and_query.split('?').next().unwrap_or_default().trim_end_matches('/');
        // A response object the router tagged; other paths below
        // `/v1/responses/` (`input_tokens`…) are the passthrough node's.
        if let Some(rest) = path.strip_prefix("/v1/responses/") {
            let id = rest.split('/').next().unwrap_or_default();
            return if untag_response_id(id).is_some() { Self::ResponseById } else { Self::Other };
        }
        match (method, path) {
            ("POST", "/v1/chat/completions") => Self::ChatCompletions,
            ("POST", "/v1/completions") => Self::Completions,
            ("POST", "/v1/embeddings") => Self::Embeddings,
            ("POST", "/v1/responses") => Self::Responses,
            ("POST", "/v1/messages") => Self::Messages,
            ("GET" | "HEAD", "/v1/models") => Self::Models,
            ("GET" | "HEAD", p) if p.strip_prefix("/v1/models/").is_some_and(|m| !m.is_empty()) => Self::Models,
            _ => Self::Other,
        }
    }

    /// Whether it is an AI request: a JSON body, read whole, whose facts
    /// the rules route on.
    pub fn is_api(self) -> bool {
        matches!(self, Self::ChatCompletions | Self::Completions | Self::Embeddings | Self::Responses | Self::Messages)
    }
}

/// How a router tags the id of a response object (`/v1/responses`) a node
/// made: `<id>~<node id>`. The tag carries the node, so that a follow-up
/// (`previous_response_id`, or `GET /v1/responses/{id}`) reaches the node
/// that holds the response's state, on any edge box or Worker isolate,
/// with nothing remembered. Node ids never hold `~`.
pub const RESPONSE_TAG: char = '~';

/// The node named by a tagged response id, and the id the node gave.
pub fn untag_response_id(tagged: &str) -> Option<(&str, &str)> {
    let (id, node) = tagged.rsplit_once(RESPONSE_TAG)?;
    (!id.is_empty() && !node.is_empty()).then_some((node, id))
}

/// The response id of a `/v1/responses/{id}[/…]` path.
pub fn response_id_of_path(path_and_query: &str) -> Option<&str> {
    let path = path_and_query.split('?').next().unwrap_or_default();
    path.strip_prefix("/v1/responses/")?.split('/').next().filter(|id| !id.is_empty())
}

/// Everything the router knows about a request before choosing a node.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestFacts {
    /// Which endpoint was called.
    pub endpoint: Endpoint,
    /// The requested model; `auto` lets the router choose.
    pub model: Option<String>,
    /// Whether the client asked for a streamed (SSE) response.
    pub stream: bool,
    /// The completion limit the client set, if any.
    pub max_tokens: Option<u64>,
    /// Estimated prompt tokens.
    pub prompt_tokens: u64,
    /// Prompt tokens plus the requested (or default) completion tokens.
    pub estimated_tokens: u64,
    /// `x-request-type`, or inferred.
    pub request_type: String,
    /// Client country, if known.
    pub country: Option<Country>,
    /// Who is calling.
    pub principal: Principal,
    /// Whether the answer is sampled, so differs from call to call: a chat
    /// or completion request with a `temperature` above 0 or none (the
    /// OpenAI default is 1). Embeddings never are.
    pub samples: bool,
    /// The response a `/v1/responses` request continues.
    pub previous_response_id: Option<String>,
}

/// What the body told us. A native host reads it (with [`parse_body`]) and
/// hands it over in `Event::Request`, so the module need not parse the JSON.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, Deserialize)]
pub struct BodyFacts {
    /// `model`
    pub model: Option<String>,
    /// `stream`
    pub stream: bool,
    /// `max_tokens` or `max_completion_tokens`
    pub max_tokens: Option<u64>,
    /// Estimated prompt tokens.
    pub prompt_tokens: u64,
    /// `temperature`
    pub temperature: Option<f64>,
    /// `previous_response_id` (`/v1/responses`): the node holding it must answer.
    pub previous_response_id: Option<String>,
}

/// Tokens OpenAI's chat format adds around every message and before the reply.
const PER_MESSAGE_TOKENS: u64 = 3;
const REPLY_PRIMING_TOKENS: u64 = 3;
/// A low-detail image, as OpenAI prices it.
const IMAGE_TOKENS: u64 = 85;

/// Reads the facts of an OpenAI-compatible JSON body.
pub fn parse_body(body: &[u8]) -> Result<BodyFacts, String> {
    #[derive(Deserialize)]
    struct Body {
        model: Option<String>,
        messages: Option<Messages>,
        prompt: Option<Tokens>,
        input: Option<Tokens>,
        instructions: Option<Tokens>,
        system: Option<Tokens>,
        stream: Option<bool>,
        max_tokens: Option<u64>,
        max_completion_tokens: Option<u64>,
        max_output_tokens: Option<u64>,
        temperature: Option<f64>,
        previous_response_id: Option<String>,
    }
    // serde also reads a struct from a JSON array of its fields; a body must be an object.
    match body.trim_ascii_start().first() {
        None => return Err("the request body is empty; it must be a JSON object".into()),
        Some(b'{') => {}
        Some(_) => return Err("the request body must be a JSON object".into()),
    }
    let parsed: Body = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => format!("the request body does not have the expected shape: {e}"),
        _ => format!("the request body is not valid JSON: {e}"),
    })?;
    let prompt_tokens = [parsed.messages.map(|m| m.0), parsed.prompt.map(|t| t.0), parsed.input.map(|t| t.0)]
        .into_iter()
        .chain([parsed.instructions.map(|t| t.0), parsed.system.map(|t| t.0)])
        .flatten()
        .fold(0u64, u64::saturating_add);
    Ok(BodyFacts {
        model: parsed.model,
        stream: parsed.stream.unwrap_or(false),
        max_tokens: parsed.max_tokens.or(parsed.max_completion_tokens).or(parsed.max_output_tokens),
        prompt_tokens,
        temperature: parsed.temperature,
        previous_response_id: parsed.previous_response_id,
    })
}

/// The tokens a request may use: its prompt's, estimated, and the
/// completion it allows (`max_tokens`, else `requests.default_max_tokens`;
/// none for embeddings). What budgets and token limits reserve.
pub fn estimated_tokens(endpoint: Endpoint, body: &BodyFacts, cfg: &RequestsConfig) -> u64 {
    let completion = match endpoint {
        Endpoint::Embeddings => 0,
        _ => body.max_tokens.unwrap_or(cfg.default_max_tokens),
    };
    body.prompt_tokens.saturating_add(completion)
}

/// Builds request facts from the parsed body and the request's context.
pub fn request_facts(
    endpoint: Endpoint,
    body: BodyFacts,
    type_header: Option<&str>,
    country: Option<Country>,
    principal: Principal,
    cfg: &RequestsConfig,
) -> Result<RequestFacts, String> {
    let estimated_tokens = estimated_tokens(endpoint, &body, cfg);
    let request_type = match type_header {
        Some(t) => valid_type(t)?,
        None => match endpoint {
            Endpoint::Embeddings => "embedding".into(),
            Endpoint::ChatCompletions | Endpoint::Responses | Endpoint::Messages
                if body.stream && body.prompt_tokens <= cfg.realtime_max_prompt_tokens =>
            {
                "realtime_chat".into()
            }
            Endpoint::ChatCompletions | Endpoint::Responses | Endpoint::Messages => "chat".into(),
            Endpoint::Completions | Endpoint::Models | Endpoint::ResponseById | Endpoint::Other => "completion".into(),
        },
    };
    Ok(RequestFacts {
        endpoint,
        model: body.model,
        stream: body.stream,
        max_tokens: body.max_tokens,
        prompt_tokens: body.prompt_tokens,
        estimated_tokens,
        request_type,
        country,
        principal,
        samples: endpoint != Endpoint::Embeddings && body.temperature.is_none_or(|t| t > 0.0),
        previous_response_id: body.previous_response_id,
    })
}

fn valid_type(t: &str) -> Result<String, String> {
    let t = t.trim();
    let ok = !t.is_empty()
        && t.len() <= 64
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(t.to_ascii_lowercase())
    } else {
        Err("the x-request-type header must be 1 to 64 letters, digits, `_`, `-` or `.`".into())
    }
}

/// Token count of a chat `messages` array, with the chat format's overhead.
struct Messages(u64);

impl<'de> Deserialize<'de> for Messages {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Messages;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of messages")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Messages, A::Error> {
                let mut total = REPLY_PRIMING_TOKENS;
                while let Some(Message(t)) = seq.next_element()? {
                    total = total.saturating_add(PER_MESSAGE_TOKENS + t);
                }
                Ok(Messages(total))
            }
        }
        d.deserialize_seq(V)
    }
}

/// One message: an object whose text-bearing fields are counted.
struct Message(u64);

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Message;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a message object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Message, A::Error> {
                count_map(map).map(Message)
            }
        }
        d.deserialize_map(V)
    }
}

/// Tokens in any JSON value that carries prompt text: a string, an array of
/// strings or token ids, or content parts.
struct Tokens(u64);

impl<'de> Deserialize<'de> for Tokens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TokensVisitor)
    }
}

struct TokensVisitor;

impl<'de> Visitor<'de> for TokensVisitor {
    type Value = Tokens;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("text, a list of texts or token ids, or content parts")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Tokens, E> {
        Ok(Tokens(estimate_text_tokens(v)))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Tokens, E> {
        Ok(Tokens(1))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Tokens, E> {
        Ok(Tokens(1))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Tokens, E> {
        Ok(Tokens(1))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Tokens, E> {
        Ok(Tokens(0))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Tokens, E> {
        Ok(Tokens(0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tokens, A::Error> {
        let mut total = 0u64;
        while let Some(Tokens(t)) = seq.next_element()? {
            total = total.saturating_add(t);
        }
        Ok(Tokens(total))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Tokens, A::Error> {
        count_map(map).map(Tokens)
    }
}

/// Counts the text-bearing fields of an object (a message, a content part, a
/// tool call) and a fixed price for media; other fields are skipped.
fn count_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<u64, A::Error> {
    let mut total = 0u64;
    while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
        let t = match key.as_ref() {
            "content" | "text" | "arguments" | "tool_calls" | "function" | "refusal" => map.next_value::<Tokens>()?.0,
            "name" => 1 + map.next_value::<Tokens>()?.0,
            // OpenAI's media parts, and Anthropic's (`source`).
            "image_url" | "input_audio" | "file" | "source" => {
                map.next_value::<IgnoredAny>()?;
                IMAGE_TOKENS
            }
            _ => {
                map.next_value::<IgnoredAny>()?;
                0
            }
        };
        total = total.saturating_add(t);
    }
    Ok(total)
}

/// A path segment with its `%XX` escapes decoded (SDKs escape `/` and `:`
/// of model ids such as `meta-llama/Llama-3.1-8B`); as it is if that does
/// not make UTF-8.
pub fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| segment.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RequestsConfig {
        RequestsConfig::default()
    }

    #[test]
    fn endpoints_are_recognised_by_method_and_path() {
        assert_eq!(Endpoint::classify("POST", "/v1/chat/completions"), Endpoint::ChatCompletions);
        assert_eq!(Endpoint::classify("POST", "/v1/completions?x=1"), Endpoint::Completions);
        assert_eq!(Endpoint::classify("POST", "/v1/embeddings/"), Endpoint::Embeddings);
        assert_eq!(Endpoint::classify("GET", "/v1/chat/completions"), Endpoint::Other);
        assert_eq!(Endpoint::classify("POST", "/v1/models"), Endpoint::Other);
        assert_eq!(Endpoint::classify("POST", "/v1/responses"), Endpoint::Responses);
        assert_eq!(Endpoint::classify("POST", "/v1/messages"), Endpoint::Messages);
        assert_eq!(Endpoint::classify("GET", "/v1/responses"), Endpoint::Other);
        assert_eq!(Endpoint::classify("GET", "/v1/models"), Endpoint::Models);
        assert_eq!(Endpoint::classify("HEAD", "/v1/models/gpt-4o?x"), Endpoint::Models);
        assert_eq!(Endpoint::classify("GET", "/v1/models/"), Endpoint::Models);
        assert_eq!(Endpoint::classify("GET", "/v1/responses/resp_1~a"), Endpoint::ResponseById);
        assert_eq!(Endpoint::classify("POST", "/v1/responses/resp_1~a/cancel"), Endpoint::ResponseById);
        assert_eq!(Endpoint::classify("POST", "/v1/responses/input_tokens"), Endpoint::Other, "not a tagged id");
        assert_eq!(response_id_of_path("/v1/responses/resp_1~a/input_items?limit=2"), Some("resp_1~a"));
        assert_eq!(untag_response_id("resp_1~a~b"), Some(("b", "resp_1~a")));
        assert_eq!(untag_response_id("resp_1"), None);
        assert_eq!(untag_response_id("~a"), None);
    }

    #[test]
    fn chat_body_gives_model_stream_limit_and_tokens() {
        let body = br#"{"model":"gpt-4o","stream":true,"max_tokens":50,
            "messages":[{"role":"system","content":"Be brief."},
                        {"role":"user","content":[{"type":"text","text":"Hello there"},
                                                   {"type":"image_url","image_url":{"url":"data:..."}}]}]}"#;
        let f = parse_body(body).unwrap();
        assert_eq!(f.model.as_deref(), Some("gpt-4o"));
        assert!(f.stream);
        assert_eq!(f.max_tokens, Some(50));
        // 3 priming + 2 messages × 3 + "Be brief." (3) + "Hello there" (2) + image (85)
        assert_eq!(f.prompt_tokens, 3 + 6 + 3 + 2 + 85);
    }

    #[test]
    fn completions_and_embeddings_count_prompt_and_input() {
        let f = parse_body(br#"{"model":"m","prompt":["one two","three"]}"#).unwrap();
        assert_eq!(f.prompt_tokens, 3);
        let f = parse_body(br#"{"model":"m","input":[[1,2,3,4]]}"#).unwrap();
        assert_eq!(f.prompt_tokens, 4);
    }

    #[test]
    fn malformed_and_mistyped_bodies_are_refused_with_a_reason() {
        assert!(parse_body(b"{\"model\": ").unwrap_err().contains("not valid JSON"));
        assert!(parse_body(br#"{"model":"m","stream":"yes"}"#).unwrap_err().contains("expected shape"));
        assert!(parse_body(br#"{"messages":"hi"}"#).unwrap_err().contains("expected shape"));
        assert!(parse_body(b"[1,2]").unwrap_err().contains("JSON object"));
        assert!(parse_body(br#"["auto",null,null,null,null,null,null]"#).is_err());
    }

    #[test]
    fn short_streamed_chat_is_realtime_and_header_wins() {
        let body = BodyFacts {
            model: Some("m".into()),
            stream: true,
            max_tokens: None,
            prompt_tokens: 20,
            temperature: None,
            previous_response_id: None,
        };
        let f =
            request_facts(Endpoint::ChatCompletions, body.clone(), None, None, Principal::anonymous(), &cfg()).unwrap();
        assert_eq!(f.request_type, "realtime_chat");
        assert_eq!(f.estimated_tokens, 20 + 256);
        let f = request_facts(
            Endpoint::ChatCompletions,
            body.clone(),
            Some("Complex_Reasoning"),
            None,
            Principal::anonymous(),
            &cfg(),
        )
        .unwrap();
        assert_eq!(f.request_type, "complex_reasoning");
        let long = BodyFacts { prompt_tokens: 5_000, ..body };
        let f = request_facts(Endpoint::ChatCompletions, long, None, None, Principal::anonymous(), &cfg()).unwrap();
        assert_eq!(f.request_type, "chat");
    }

    #[test]
    fn bad_type_header_is_refused() {
        let err = request_facts(
            Endpoint::ChatCompletions,
            BodyFacts::default(),
            Some("drop table"),
            None,
            Principal::anonymous(),
            &cfg(),
        )
        .unwrap_err();
        assert!(err.contains("x-request-type"));
    }
}
