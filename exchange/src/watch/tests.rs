//! The watchdog with a stepped clock: no sleeps, no server.

use bytes::Bytes;
use edge_router::wire::{CacheFill, CacheStatus, Explain, Failure, Usage};
use http::HeaderMap;

use super::*;
use crate::capture::Capture;
use crate::transform::EditAnswer;

const SENT: u64 = 1_000_000;

fn setup(sse: bool) -> WatchSetup {
    WatchSetup {
        node: "gpu-1".into(),
        idle_ms: 2_000,
        total_ms: 10_000,
        sent_ms: SENT,
        head_ms: SENT + 500,
        sse,
        meter: true,
        capture: None,
        transform: None,
    }
}

fn capture() -> Capture {
    let fill = CacheFill { key: "ai/t/x".into(), ttl_s: 60, estimated_tokens: 9, http: false };
    let explain = Explain {
        node: "gpu-1".into(),
        rule: "r".into(),
        attempts: 1,
        country: "XX".into(),
        model: None,
        difficulty: None,
        cache: CacheStatus::Miss,
        panic: false,
        ratelimit: Default::default(),
    };
    Capture::ai(&fill, &HeaderMap::new(), &explain, 1 << 20)
}

/// Everything the client gets now.
fn drain(w: &mut Watch) -> Vec<u8> {
    let mut got = Vec::new();
    while let Next::Data(data) = w.next_out() {
        got.extend_from_slice(&data);
    }
    got
}

fn chunk(w: &mut Watch, text: &str, now: u64) -> Vec<u8> {
    w.on_chunk(Bytes::copy_from_slice(text.as_bytes()), now);
    drain(w)
}

#[test]
fn the_idle_limit_runs_from_the_last_chunk_and_the_total_from_sending() {
    let mut w = Watch::new(setup(true));
    assert_eq!(w.wake_at(), SENT + 2_500, "idle from the head");
    assert_eq!(w.on_timer(SENT + 2_499), None, "a timer firing early cuts nothing");
    chunk(&mut w, "data: 1\n\n", SENT + 2_000);
    assert_eq!(w.wake_at(), SENT + 4_000);
    for step in 0..4 {
        chunk(&mut w, "data: n\n\n", SENT + 4_000 + step * 1_500);
    }
    assert_eq!(w.wake_at(), SENT + 10_000, "the total limit comes before the next idle one");
    let cut = w.on_timer(SENT + 10_000).expect("the total limit ran out");
    assert_eq!(cut.failure, Some(Failure::Timeout));
    assert!(cut.message.contains("total time limit"), "{}", cut.message);
    assert_eq!(w.on_timer(SENT + 20_000), None, "a body cut off is not cut again");
}

#[test]
fn a_stalled_sse_stream_ends_with_an_error_event_and_other_bodies_with_an_error() {
    let mut sse = Watch::new(setup(true));
    let cut = sse.on_timer(SENT + 2_500).expect("stalled");
    assert!(cut.message.contains("sent nothing for 2s"), "{}", cut.message);
    let Next::Data(last) = sse.next_out() else { panic!("an error event") };
    let last = String::from_utf8(last.to_vec()).expect("text");
    assert!(last.starts_with("event: error\ndata: {") && last.ends_with("\n\n"), "{last}");
    let event: serde_json::Value =
        serde_json::from_str(last.lines().nth(1).unwrap_or_default().trim_start_matches("data: "))
            .expect("the event's data is JSON");
    assert_eq!(event["error"]["type"], "upstream_stall");

    assert_eq!(sse.next_out(), Next::End);

    let mut json = Watch::new(setup(false));
    let cut = json.on_timer(SENT + 2_500).expect("stalled");
    assert_eq!(cut.failure, Some(Failure::Timeout));
    assert_eq!(json.next_out(), Next::Fail(cut.message), "the client's body ends with an error");
}

#[test]
fn a_cut_in_the_middle_of_an_sse_event_ends_that_event_before_the_error_event() {
    for (sent, between) in [
        (&["data: {\"a\":1}\n\n"][..], true),
        (&["data: {\"a\":1}\n", "\n"][..], true),
        (&["data: {\"a\":1}\r\n\r\n"][..], true),
        (&["data: {\"a\""][..], false),
        (&["data: {\"a\":1}\n"][..], false),
        (&["data: {\"a\":1}\r\n"][..], false),
    ] {
        let mut w = Watch::new(setup(true));
        for (i, part) in sent.iter().enumerate() {
            chunk(&mut w, part, SENT + 600 + i as u64);
        }
        w.on_timer(SENT + 10_000).expect("cut");
        let Next::Data(last) = w.next_out() else { panic!("an error event") };
        let expected_start: &[u8] = if between { b"event: error\n" } else { b"\n\nevent: error\n" };
        assert!(last.starts_with(expected_start), "after {sent:?}: {last:?}");
    }
}

#[test]
fn a_drain_cuts_without_blaming_the_node() {
    let mut w = Watch::new(setup(true));
    let cut = w.on_drained();
    assert_eq!(cut.failure, None);
    assert!(cut.message.contains("drained"), "{}", cut.message);
    assert!(matches!(w.next_out(), Next::Data(_)), "an SSE stream's last event says why");
}

#[test]
fn usage_is_found_in_the_tail_and_a_whole_answer_is_captured() {
    let mut w = Watch::new(WatchSetup { capture: Some(capture()), ..setup(true) });
    chunk(&mut w, "data: {\"choices\":[],\"usage\":null}\n\n", SENT + 600);
    let last = "data: {\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}\n\ndata: [DONE]\n\n";
    w.on_chunk(Bytes::from_static(last.as_bytes()), SENT + 700);
    let ended = w.on_end(SENT + 800);
    assert_eq!(ended.usage, Some(Usage { prompt_tokens: 5, completion_tokens: 7 }));
    assert!(!w.is_done(), "the last chunk is still to be sent");
    drain(&mut w);
    assert!(w.is_done());
    let stored = ended.captured.expect("the whole answer went through");
    assert_eq!(stored.cached.entry.tokens, 12);
    assert!(stored.cached.body.ends_with(b"data: [DONE]\n\n"));
}

#[test]
fn a_broken_or_cut_answer_is_not_captured() {
    let mut broken = Watch::new(WatchSetup { capture: Some(capture()), ..setup(true) });
    chunk(&mut broken, "data: 1\n\n", SENT + 600);
    assert_eq!(broken.on_broken(), Failure::Reset);
    assert!(broken.on_end(SENT + 700).captured.is_none());

    let mut cut = Watch::new(WatchSetup { capture: Some(capture()), ..setup(true) });
    cut.on_timer(SENT + 10_000);
    assert!(cut.on_end(SENT + 10_001).captured.is_none());
}

#[test]
fn a_transform_rewrites_what_the_client_and_the_cache_get() {
    let transform: Box<dyn Transform> = Box::new(EditAnswer::restore_model("gpt-4o", true));
    let mut w = Watch::new(WatchSetup { capture: Some(capture()), transform: Some(transform), ..setup(true) });
    // An event split across two chunks comes out whole, rewritten.
    assert_eq!(chunk(&mut w, "data: {\"model\":\"lla", SENT + 600), b"");
    assert_eq!(chunk(&mut w, "ma\"}\n\n", SENT + 700), b"data: {\"model\":\"gpt-4o\"}\n\n");
    let ended = w.on_end(SENT + 800);
    assert_eq!(&ended.captured.expect("captured").cached.body[..], b"data: {\"model\":\"gpt-4o\"}\n\n");
}
