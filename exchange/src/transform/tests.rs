//! The seam's transforms, fed in every way a stream may be cut.

use std::collections::VecDeque;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

/// Runs `input` through a fresh transform in chunks cut at `cuts`.
fn run<T: Transform>(make: impl Fn() -> T, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut t = make();
    let mut out = VecDeque::new();
    let mut from = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    for cut in cuts.into_iter().chain([input.len()]) {
        if cut > from {
            t.chunk(Bytes::copy_from_slice(&input[from..cut]), &mut out);
            from = cut;
        }
    }
    t.end(&mut out);
    out.into_iter().flatten().collect()
}

const STREAM: &str = "data: {\"id\":\"c1\",\"model\":\"llama-3-8b\",\"choices\":[{\"delta\":{\"content\":\"a \\\"model\\\": x\"}}]}\n\n\
: a comment\n\n\
data: {\"model\" : \"llama-3-8b\", \"choices\":[], \"usage\":{\"prompt_tokens\":5}}\r\n\r\n\
event: error\ndata: not json\n\n\
data: [DONE]\n\n";

const RESTORED: &str = "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"a \\\"model\\\": x\"}}]}\n\n\
: a comment\n\n\
data: {\"model\" : \"gpt-4o\", \"choices\":[], \"usage\":{\"prompt_tokens\":5}}\r\n\r\n\
event: error\ndata: not json\n\n\
data: [DONE]\n\n";

#[test]
fn every_sse_event_gets_the_requested_model_back_and_nothing_else_changes() {
    let out = run(|| RestoreModel::new("gpt-4o", true), STREAM.as_bytes(), &[]);
    assert_eq!(String::from_utf8_lossy(&out), RESTORED);
}

#[test]
fn a_json_answer_gets_its_top_level_model_back() {
    let body = br#"{"id":"c1","choices":[{"message":{"content":"hi","model":"inner"}}],"model":"llama","usage":{}}"#;
    let out = run(|| RestoreModel::new("gpt-4o", false), body, &[3, 17, 40]);
    let want = br#"{"id":"c1","choices":[{"message":{"content":"hi","model":"inner"}}],"model":"gpt-4o","usage":{}}"#;
    assert_eq!(out, want);
    // Not a JSON object with a string model: unchanged.
    for other in [&b"[1,2]"[..], b"{\"model\":7}", b"plain text", b""] {
        assert_eq!(run(|| RestoreModel::new("m", false), other, &[1]), other);
    }
}

#[test]
fn a_stream_cut_short_still_passes_its_unfinished_event() {
    let cut = "data: {\"model\":\"a\"}\n\ndata: {\"model\":\"a\"";
    let out = run(|| RestoreModel::new("b", true), cut.as_bytes(), &[5]);
    assert_eq!(String::from_utf8_lossy(&out), "data: {\"model\":\"b\"}\n\ndata: {\"model\":\"b\"");
}

#[test]
fn requested_models_are_written_as_json_strings() {
    let out = replace_model(br#"{"model":"x"}"#, "we\"ird\\name").expect("an object with a model");
    let back: serde_json::Value = serde_json::from_slice(&out).expect("still JSON");
    assert_eq!(back["model"], "we\"ird\\name");
}

#[test]
fn sse_events_split_on_lf_crlf_and_cr_blank_lines() {
    let mut events = SseEvents::default();
    let mut got = Vec::new();
    events.push(b"data: 1\n\ndata: 2\r\n\r\ndata: 3\r\rdata: 4\r", |e| got.push(e));
    assert_eq!(got, ["data: 1\n\n", "data: 2\r\n\r\n", "data: 3\r\r"]);
    events.push(b"\n\n", |e| got.push(e));
    assert_eq!(got.last().map(|b| &b[..]), Some(&b"data: 4\r\n\n"[..]), "a CR at a chunk's end waits for its LF");
}

proptest! {
    #[test]
    fn the_output_does_not_depend_on_where_chunks_are_cut(cuts in prop::collection::vec(0usize..400, 0..12)) {
        let whole = run(|| RestoreModel::new("gpt-4o", true), STREAM.as_bytes(), &[]);
        prop_assert_eq!(run(|| RestoreModel::new("gpt-4o", true), STREAM.as_bytes(), &cuts), whole);
    }

    #[test]
    fn a_json_answer_does_not_depend_on_chunking_either(cuts in prop::collection::vec(0usize..100, 0..8)) {
        let body = br#"{"model":"llama","choices":[{"message":{"content":"{\"model\":1}"}}]}"#;
        let whole = run(|| RestoreModel::new("x", false), body, &[]);
        prop_assert_eq!(run(|| RestoreModel::new("x", false), body, &cuts), whole);
    }
}

#[test]
fn a_request_goes_to_the_chosen_model_with_every_other_byte_its_own() {
    let body = br#"{ "model" : "auto", "messages":[{"role":"user","content":"say \"model\""}],"temperature":0.2}"#;
    let want = br#"{ "model" : "tiny-0.5b", "messages":[{"role":"user","content":"say \"model\""}],"temperature":0.2}"#;
    for cuts in [&[][..], &[1, 9, 30], &[12, 13, 14]] {
        assert_eq!(run(|| SetModel::request("tiny-0.5b"), body, cuts), want, "cut at {cuts:?}");
    }
    // Without a model (or with one that is not a string) the field is set.
    for other in [&br#"{"messages":[]}"#[..], br#"{"model":null,"messages":[]}"#] {
        let out = run(|| SetModel::request("tiny-0.5b"), other, &[4]);
        let value: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!((value["model"].as_str(), value["messages"].as_array().map(Vec::len)), (Some("tiny-0.5b"), Some(0)));
    }
    // Not an object: sent as it came (the router refused such bodies before).
    assert_eq!(run(|| SetModel::request("m"), b"[1]", &[]), b"[1]");
}

#[test]
fn a_whole_body_goes_through_in_one_call() {
    let mut t = RestoreModel::new("b", false);
    assert_eq!(&transform_whole(&mut t, Bytes::from_static(br#"{"model":"a"}"#))[..], br#"{"model":"b"}"#);
}
