//! Finding the `usage` an origin reports at the end of a response.
//!
//! OpenAI-compatible servers put `usage` (`prompt_tokens`,
//! `completion_tokens`, `total_tokens`) in a JSON response, and in the last
//! data chunk of a stream when the client asked for it
//! (`stream_options.include_usage`). The host keeps the tail of a metered
//! response body and hands it here when the body ends; the router prices
//! what it finds. Pure and allocation-light: it only parses the `usage`
//! object itself.

use serde::Deserialize;

use edge_router::wire::Usage;

/// How many `"usage"` occurrences are looked at, from the last one back,
/// before giving up (stream chunks before the last often carry `"usage": null`).
const MAX_TRIES: usize = 8;

#[derive(Deserialize)]
struct Reported {
    #[serde(alias = "input_tokens")]
    prompt_tokens: Option<u64>,
    #[serde(alias = "output_tokens")]
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    /// Anthropic's prompt tokens read from and written to its cache, which
    /// its `input_tokens` leave out (OpenAI's `prompt_tokens` count them).
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

/// The last well-formed `usage` object in `tail` (a response body, or its
/// end), if there is one.
pub fn find_usage(tail: &[u8]) -> Option<Usage> {
    const KEY: &[u8] = b"\"usage\"";
    let mut end = tail.len();
    for _ in 0..MAX_TRIES {
        let at = rfind(&tail[..end], KEY)?;
        end = at;
        // An escaped quote means the text is inside a string (a message's content).
        if at > 0 && tail[at - 1] == b'\\' {
            continue;
        }
        let rest = tail[at + KEY.len()..].trim_ascii_start();
        let Some(value) = rest.strip_prefix(b":") else { continue };
        let mut values = serde_json::Deserializer::from_slice(value.trim_ascii_start()).into_iter::<Option<Reported>>();
        if let Some(Ok(Some(r))) = values.next() {
            // The origin's numbers may be anything up to `u64::MAX`.
            let cached =
                r.cache_read_input_tokens.unwrap_or(0).saturating_add(r.cache_creation_input_tokens.unwrap_or(0));
            let prompt = r.prompt_tokens.unwrap_or(0).saturating_add(cached);
            let completion = r.completion_tokens.or_else(|| r.total_tokens.map(|t| t.saturating_sub(prompt)));
            if r.prompt_tokens.is_some() || completion.is_some() {
                return Some(Usage { prompt_tokens: prompt, completion_tokens: completion.unwrap_or(0) });
            }
        }
    }
    None
}

/// Where `needle` (which starts with `"`) last starts in `hay`. Only the
/// quotes are compared whole: a slice compare at every position took most of
/// this module's time on a short JSON answer.
fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    // Where the needle may start: at or before `last`.
    let mut last = hay.len().checked_sub(needle.len())?;
    loop {
        let at = hay[..=last].iter().rposition(|&b| b == first)?;
        if hay[at..].starts_with(needle) {
            return Some(at);
        }
        last = at.checked_sub(1)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(prompt: u64, completion: u64) -> Option<Usage> {
        Some(Usage { prompt_tokens: prompt, completion_tokens: completion })
    }

    #[test]
    fn a_json_response_reports_its_usage() {
        let body = br#"{"id":"c1","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42,"prompt_tokens_details":{"cached_tokens":0}}}"#;
        assert_eq!(find_usage(body), usage(12, 30));
    }

    #[test]
    fn a_stream_reports_usage_in_its_last_chunk_after_null_ones() {
        let body = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}\n\n\
data: [DONE]\n\n";
        assert_eq!(find_usage(body), usage(5, 7));
    }

    #[test]
    fn embeddings_and_other_shapes_are_read_too() {
        assert_eq!(find_usage(br#"{"data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}"#), usage(8, 0));
        assert_eq!(find_usage(br#"{"usage": {"input_tokens": 3, "output_tokens": 4}}"#), usage(3, 4));
        let cached = br#"{"usage": {"input_tokens": 10, "cache_read_input_tokens": 500, "cache_creation_input_tokens": 40, "output_tokens": 4}}"#;
        assert_eq!(find_usage(cached), usage(550, 4), "Anthropic's cached prompt tokens are prompt tokens");
    }

    #[test]
    fn text_that_only_mentions_usage_or_a_cut_object_is_not_usage() {
        let quoted = br#"{"choices":[{"message":{"content":"say \"usage\": {\"prompt_tokens\": 99}"}}]}"#;
        assert_eq!(find_usage(quoted), None);
        assert_eq!(find_usage(br#"{"usage":{"prompt_tokens":1"#), None, "the body was cut off");
        assert_eq!(find_usage(b"data: [DONE]\n\n"), None);
        assert_eq!(find_usage(br#"{"usage":{}}"#), None);
    }

    #[test]
    fn usage_past_u64_saturates_rather_than_overflows() {
        let body = br#"{"usage":{"input_tokens":18446744073709551615,"cache_read_input_tokens":18446744073709551615,"cache_creation_input_tokens":2,"output_tokens":1}}"#;
        assert_eq!(find_usage(body), usage(u64::MAX, 1));
    }

    proptest::proptest! {
        /// The search finds what comparing at every position finds, in texts
        /// dense with quotes and partial keys.
        #[test]
        fn rfind_finds_the_last_occurrence(parts in proptest::collection::vec(
            proptest::prop_oneof!["\"usage\"", "\"usag", "usage\"", "\"", "\"\"", "[a-z:{} ]{0,4}"], 0..12)) {
            let hay = parts.concat();
            let key: &[u8] = b"\"usage\"";
            let expected = hay.as_bytes().windows(key.len()).rposition(|w| w == key);
            proptest::prop_assert_eq!(rfind(hay.as_bytes(), key), expected);
        }
    }
}
