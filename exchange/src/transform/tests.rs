//! The seam's transforms, fed in every way a stream may be cut.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

/// Runs `input` through a fresh transform in chunks cut at `cuts`.
fn run<T: Transform>(make: impl Fn() -> T, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    crate::test_support::feed(&mut make(), input, cuts)
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
    let out = run(|| EditAnswer::restore_model("gpt-4o", true), STREAM.as_bytes(), &[]);
    assert_eq!(String::from_utf8_lossy(&out), RESTORED);
}

#[test]
fn a_json_answer_gets_its_top_level_model_back() {
    let body = br#"{"id":"c1","choices":[{"message":{"content":"hi","model":"inner"}}],"model":"llama","usage":{}}"#;
    let out = run(|| EditAnswer::restore_model("gpt-4o", false), body, &[3, 17, 40]);
    let want = br#"{"id":"c1","choices":[{"message":{"content":"hi","model":"inner"}}],"model":"gpt-4o","usage":{}}"#;
    assert_eq!(out, want);
    // Not a JSON object with a string model: unchanged.
    for other in [&b"[1,2]"[..], b"{\"model\":7}", b"plain text", b""] {
        assert_eq!(run(|| EditAnswer::restore_model("m", false), other, &[1]), other);
    }
}

#[test]
fn a_stream_cut_short_still_passes_its_unfinished_event() {
    let cut = "data: {\"model\":\"a\"}\n\ndata: {\"model\":\"a\"";
    let out = run(|| EditAnswer::restore_model("b", true), cut.as_bytes(), &[5]);
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
    events.push(b"data: 1\n\ndata: 2\r\n\r\ndata: 3\r\rdata: 4\r", |e, _| got.push(e));
    assert_eq!(got, ["data: 1\n\n", "data: 2\r\n\r\n", "data: 3\r\r"]);
    events.push(b"\n\n", |e, _| got.push(e));
    assert_eq!(got.last().map(|b| &b[..]), Some(&b"data: 4\r\n\n"[..]), "a CR at a chunk's end waits for its LF");
}

/// What `push` gives for `input` fed in chunks cut at `cuts`, holding
/// events whole up to `max` bytes: the pieces, and what is left.
fn sse_pieces(max: usize, input: &[u8], cuts: &[usize]) -> Vec<(Bytes, Piece)> {
    let mut events = SseEvents::with_max(max);
    let mut got = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain([&input.len()]) {
        let cut = cut.clamp(from, input.len());
        events.push(&input[from..cut], |e, piece| got.push((e, piece)));
        from = cut;
    }
    let rest = events.rest();
    if !rest.0.is_empty() {
        got.push(rest);
    }
    got
}

/// The events of `pieces`, each event given out in pieces put together again.
fn joined(pieces: &[(Bytes, Piece)]) -> Vec<Vec<u8>> {
    let mut events: Vec<Vec<u8>> = Vec::new();
    for (bytes, piece) in pieces {
        match (piece, events.last_mut()) {
            (Piece::More, Some(last)) => last.extend_from_slice(bytes),
            _ => events.push(bytes.to_vec()),
        }
    }
    events
}

#[test]
fn an_event_longer_than_the_most_held_goes_on_as_it_came() {
    // An origin that never ends its event: no more than MAX_EVENT is held.
    let long = [b"data: {\"model\":\"a\",\"x\":\"".as_slice(), &vec![b'z'; MAX_EVENT + 100_000], b"\"}\n\n"].concat();
    let input = [long.as_slice(), b"data: {\"model\":\"a\"}\n\n"].concat();
    let cuts: Vec<usize> = (1..input.len() / 65_536 + 1).map(|i| i * 65_536).collect();
    let pieces = sse_pieces(MAX_EVENT, &input, &cuts);
    assert!(pieces.iter().all(|(e, _)| e.len() <= MAX_EVENT + 65_536), "held at most MAX_EVENT and one chunk");
    let kinds: Vec<Piece> = pieces.iter().map(|(_, piece)| *piece).collect();
    assert_eq!(kinds, [Piece::Start, Piece::More, Piece::Event]);
    assert_eq!(joined(&pieces), [long.clone(), b"data: {\"model\":\"a\"}\n\n".to_vec()], "no byte is lost");
    // Edited, the long event goes on as it came, and the next is edited.
    let out = run(|| EditAnswer::restore_model("b", true), &input, &cuts);
    assert!(out == [long.as_slice(), b"data: {\"model\":\"b\"}\n\n"].concat(), "edited otherwise");
}

proptest! {
    #[test]
    fn sse_events_do_not_depend_on_where_chunks_are_cut(
        input in prop::collection::vec(prop::sample::select(b"a:\n\r ".to_vec()), 0..200),
        cuts in prop::collection::vec(0usize..200, 0..12),
    ) {
        // Dense with every kind of line end, so that a look resumed in
        // the middle of a CR LF, a blank line or an event is tried.
        let mut cuts = cuts;
        cuts.sort_unstable();
        prop_assert_eq!(sse_pieces(usize::MAX, &input, &cuts), sse_pieces(usize::MAX, &input, &[]));
    }

    #[test]
    fn events_too_long_to_hold_come_in_pieces_that_make_them_up(
        input in prop::collection::vec(prop::sample::select(b"a:\n\r ".to_vec()), 0..200),
        cuts in prop::collection::vec(0usize..200, 0..24),
        max in 1usize..24,
    ) {
        // Whatever is cut where: put together, the pieces are the events
        // read whole, and an event no longer than `max` is never in pieces.
        let mut cuts = cuts;
        cuts.sort_unstable();
        let pieces = sse_pieces(max, &input, &cuts);
        let whole = joined(&sse_pieces(usize::MAX, &input, &[]));
        prop_assert_eq!(&joined(&pieces), &whole);
        let mut event = 0;
        for (bytes, piece) in &pieces {
            match piece {
                Piece::Start => prop_assert!(whole[event].len() > max, "{:?} is in pieces", &whole[event]),
                Piece::Event => prop_assert_eq!(bytes, &whole[event]),
                Piece::More => continue,
            }
            event += 1;
        }
    }

    #[test]
    fn the_output_does_not_depend_on_where_chunks_are_cut(cuts in prop::collection::vec(0usize..400, 0..12)) {
        let whole = run(|| EditAnswer::restore_model("gpt-4o", true), STREAM.as_bytes(), &[]);
        prop_assert_eq!(run(|| EditAnswer::restore_model("gpt-4o", true), STREAM.as_bytes(), &cuts), whole);
    }

    #[test]
    fn a_json_answer_does_not_depend_on_chunking_either(cuts in prop::collection::vec(0usize..100, 0..8)) {
        let body = br#"{"model":"llama","choices":[{"message":{"content":"{\"model\":1}"}}]}"#;
        let whole = run(|| EditAnswer::restore_model("x", false), body, &[]);
        prop_assert_eq!(run(|| EditAnswer::restore_model("x", false), body, &cuts), whole);
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
    let mut t = EditAnswer::restore_model("b", false);
    assert_eq!(&transform_whole(&mut t, Bytes::from_static(br#"{"model":"a"}"#))[..], br#"{"model":"b"}"#);
}

const RESPONSES_STREAM: &str = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_9\",\"object\":\"response\",\"model\":\"small\",\"output\":[]}}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"item_id\":\"msg_1\",\"delta\":\"an \\\"id\\\": resp\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"object\":\"response\",\"id\":\"resp_9\",\"model\":\"small\",\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}}\n\n";

#[test]
fn response_ids_are_tagged_with_their_node_in_streams_and_json_and_nothing_else_changes() {
    let want = RESPONSES_STREAM.replace("\"id\":\"resp_9\"", "\"id\":\"resp_9~edge-1\"");
    assert_eq!(want.matches("resp_9~edge-1").count(), 2);
    for cuts in [&[][..], &[1, 60, 61, 200], &[150, 151, 152, 300]] {
        let out = run(|| EditAnswer::tag_response_ids("edge-1", true), RESPONSES_STREAM.as_bytes(), cuts);
        assert_eq!(String::from_utf8_lossy(&out), want, "cut at {cuts:?}");
    }
    let json = br#"{"id": "resp_9", "object":"response","output":[{"id":"msg_1","type":"message"}]}"#;
    let out = run(|| EditAnswer::tag_response_ids("n", false), json, &[5, 20]);
    assert_eq!(out, br#"{"id": "resp_9~n", "object":"response","output":[{"id":"msg_1","type":"message"}]}"#);
    // Not a response object (a list of input items, a chat completion): as it came.
    for other in
        [&br#"{"object":"list","data":[{"id":"msg_1"}]}"#[..], br#"{"id":"chatcmpl-1","object":"chat.completion"}"#]
    {
        assert_eq!(run(|| EditAnswer::tag_response_ids("n", false), other, &[3]), other);
    }
    assert_eq!(tag_response_id(br#"{"object":"response","id":"resp_9~n"}"#, "n"), None, "tagged once");
    let continued = br#"{"object":"response","id":"resp_10","previous_response_id":"resp_9","model":"m"}"#;
    assert_eq!(
        tag_response_id(continued, "n").as_deref(),
        Some(&br#"{"object":"response","id":"resp_10~n","previous_response_id":"resp_9~n","model":"m"}"#[..])
    );
    let unset = br#"{"object":"response","previous_response_id":null,"id":"resp_1"}"#;
    assert_eq!(
        tag_response_id(unset, "n").as_deref(),
        Some(&br#"{"object":"response","previous_response_id":null,"id":"resp_1~n"}"#[..])
    );
}

#[test]
fn a_restored_model_and_a_tag_go_together() {
    let both = || EditAnswer::both(EditAnswer::restore_model("gpt-4o", true), EditAnswer::tag_response_ids("n", true));
    let out = String::from_utf8(run(both, RESPONSES_STREAM.as_bytes(), &[90])).expect("text");
    assert_eq!(out.matches("resp_9~n").count(), 2, "{out}");
    // The events' own `model` is nested in `response`: only a top-level one is restored.
    assert!(!out.contains("gpt-4o"), "{out}");
    let chat = br#"{"model":"small","object":"chat.completion","id":"c"}"#;
    let both_json =
        || EditAnswer::both(EditAnswer::restore_model("big", false), EditAnswer::tag_response_ids("n", false));
    assert_eq!(run(both_json, chat, &[2]), br#"{"model":"big","object":"chat.completion","id":"c"}"#);
}

#[test]
fn a_continuation_names_the_response_as_its_node_made_it() {
    let body = br#"{"model":"m","previous_response_id" : "resp_9~n","input":"more"}"#;
    assert_eq!(
        untag_previous_response_id(body, "n").as_deref(),
        Some(&br#"{"model":"m","previous_response_id" : "resp_9","input":"more"}"#[..])
    );
    assert_eq!(untag_previous_response_id(body, "other"), None, "only the holder's own tag comes off");
    assert_eq!(untag_previous_response_id(br#"{"previous_response_id":null}"#, "n"), None);
}
