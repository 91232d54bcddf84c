//! Fuzzing on the stable toolchain: property tests (proptest) that feed
//! every parser of untrusted input mutated copies of a committed seed
//! corpus (`tests/fuzz/corpus/`) and random bytes, for a bounded number of
//! inputs, and check that none panics, along with what each must keep:
//!
//! - the config loader: located errors, or a config;
//! - a request body's facts and the token estimate;
//! - `Cache-Control` and `CDN-Cache-Control`;
//! - the SSE event splitter: however the bytes are cut, the same events;
//! - the module's wire decoding, both ways: the router reading a hostile
//!   host's events, and the host reading a hostile module's reply;
//! - CIDR blocks, as `trusted_proxies` writes them;
//! - `X-Forwarded-For`, read through trusted proxies;
//! - JWT bearer tokens and JWKS key sets.
//!
//! `FUZZ_CASES` sets the inputs per target (default 5,000, so that CI stays
//! quick); each target prints how many ran. See `docs/fuzzing.md`.
#![allow(clippy::disallowed_methods)]

use std::sync::atomic::{AtomicU64, Ordering};

use edge_router::client::{MAX_FORWARDED_HOPS, client_address};
use edge_router::config::CidrBlock;
use edge_router::wire::{Action, Event, Header, Reply};
use edge_router::{Router, RouterConfig};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Reads the seeds of one target.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the {target} corpus ({}): {e}", dir.display()))
        .filter_map(|entry| std::fs::read(entry.ok()?.path()).ok())
        .collect();
    assert!(!seeds.is_empty(), "the {target} corpus is empty");
    seeds.sort();
    seeds
}

/// A mutation of one seed, or random bytes: each input is a seed index and
/// edits (flip, insert, delete, duplicate a span, cut), as a byte fuzzer
/// makes them.
fn inputs(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    let edit = (0u8..5, any::<usize>(), any::<usize>(), any::<u8>());
    let mutated = (0..n, prop::collection::vec(edit, 0..24)).prop_map(move |(i, edits)| {
        let mut b = seeds[i].clone();
        for (op, at, len, byte) in edits {
            let at = if b.is_empty() { 0 } else { at % (b.len() + 1) };
            match op {
                0 if at < b.len() => b[at] ^= byte | 1,
                1 => b.insert(at, byte),
                2 if at < b.len() => {
                    let end = (at + 1 + len % 8).min(b.len());
                    b.drain(at..end);
                }
                3 if at < b.len() => {
                    let end = (at + 1 + len % 64).min(b.len());
                    let span = b[at..end].to_vec();
                    let to = len % (b.len() + 1);
                    b.splice(to..to, span);
                }
                4 => b.truncate(at),
                _ => {}
            }
        }
        b
    });
    prop_oneof![4 => mutated, 1 => prop::collection::vec(any::<u8>(), 0..512)]
}

/// Runs `check` on `FUZZ_CASES` inputs of `target`; prints how many ran.
fn fuzz(target: &str, seeds: Vec<Vec<u8>>, check: impl Fn(&[u8]) -> Result<(), TestCaseError>) {
    let cases = std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    let ran = AtomicU64::new(0);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let result = runner.run(&inputs(seeds), |input| {
        ran.fetch_add(1, Ordering::Relaxed);
        check(&input)
    });
    if let Err(e) = result {
        panic!("{target}: {e}");
    }
    eprintln!("fuzz {target}: {} inputs, none crashed", ran.load(Ordering::Relaxed));
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_config_loader() {
    fuzz("config", corpus("config"), |input| {
        let text = text(input);
        if let Err(errors) = RouterConfig::load("fuzz.yaml", &text) {
            // Each error points into the file: a line that exists (or the
            // one after the last, for the end of input) and a column. Lines
            // end as YAML ends them: LF, CR or CRLF.
            let lines = 1 + text.replace("\r\n", "\n").chars().filter(|c| matches!(c, '\n' | '\r')).count();
            prop_assert!(!errors.0.is_empty());
            for e in &errors.0 {
                let p = &e.position;
                prop_assert!((1..=lines + 1).contains(&p.line) && p.column >= 1, "{e} at {}:{}", p.line, p.column);
            }
        }
        // The Workers build's reader of JSON configs (from KV): no panic, and
        // an error is either at a place in the text or named by its path alone.
        if let Err(errors) = RouterConfig::load_json("fuzz.json", &text) {
            let lines = 1 + text.chars().filter(|c| *c == '\n').count();
            prop_assert!(!errors.0.is_empty());
            for e in &errors.0 {
                let p = &e.position;
                let placed = (1..=lines).contains(&p.line) || (p.line == 0 && !e.path.is_empty());
                prop_assert!(placed, "{e} at {}:{}", p.line, p.column);
            }
        }
        Ok(())
    });
}

#[test]
fn request_body_facts_and_the_token_estimate() {
    fuzz("body", corpus("body"), |input| {
        let _ = edge_router::facts::parse_body(input);
        let text = text(input);
        let estimate = edge_router::tokens::estimate_text_tokens(&text);
        prop_assert!(estimate <= text.len() as u64 + 1, "{estimate} tokens for {} bytes", text.len());
        Ok(())
    });
}

#[test]
fn cache_control_and_cdn_cache_control() {
    fuzz("cache_control", corpus("cache_control"), |input| {
        let value = text(input);
        let lines: Vec<&str> = value.split('\n').collect();
        let _ = edge_cache::Directives::parse(lines.iter().copied());
        let _ = edge_cache::Directives::parse_cdn(lines.iter().copied());
        Ok(())
    });
}

#[test]
fn the_sse_event_splitter_cuts_the_same_events_wherever_the_bytes_break() {
    fuzz("sse", corpus("sse"), |input| {
        let whole = events(input, &[input.len()]);
        // The same bytes in pieces cut where the input's own bytes say.
        let cuts: Vec<usize> = input.iter().map(|b| usize::from(*b % 7) + 1).collect();
        let pieces = events(input, &cuts);
        prop_assert_eq!(&whole, &pieces);
        let joined: Vec<u8> = whole.0.iter().flatten().copied().chain(whole.1.iter().copied()).collect();
        prop_assert_eq!(joined, input.to_vec(), "events and the rest are the input");
        Ok(())
    });
}

/// The events and the rest of `input`, pushed in pieces of the `cuts` sizes.
fn events(input: &[u8], cuts: &[usize]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut splitter = exchange::transform::SseEvents::default();
    let mut out = Vec::new();
    let (mut at, mut i) = (0, 0);
    while at < input.len() {
        let end = (at + cuts[i % cuts.len()].max(1)).min(input.len());
        splitter.push(&input[at..end], |e, _| out.push(e.to_vec()));
        (at, i) = (end, i + 1);
    }
    (out, splitter.rest().0.to_vec())
}

#[test]
fn the_wire_read_by_the_router_and_by_the_host() {
    let mut seeds: Vec<Vec<u8>> = [
        Event::Tick { now_ms: 1_700_000_000_000 },
        Event::Probed { node: "local-gpu".into(), ok: false, now_ms: 7 },
        Event::Finished { id: 42, usage: None, now_ms: 9 },
    ]
    .iter()
    .map(|e| postcard::to_allocvec(e).expect("encodes"))
    .collect();
    let headers = vec![Header::new("content-type", "application/json")];
    let reply = Reply {
        action: Action::Respond { status: 200, headers, body: b"{}".to_vec() },
        notices: Vec::new(),
        spent: Vec::new(),
        claim: Some(edge_router::machine::BudgetClaim { node: "a".into(), day: 20_000, amount: 0.5, limit: 10.0 }),
        settled: vec![edge_router::machine::Settlement { id: 42, node: "a".into(), day: 20_000, cost: 0.25 }],
    };
    seeds.push(postcard::to_allocvec(&reply).expect("encodes"));
    let config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hybrid.yaml")).expect("config");
    let config = RouterConfig::load("hybrid.yaml", &config).expect("loads");
    fuzz("wire", seeds, |input| {
        // A hostile host's batch of events, to a fresh router (a failure
        // then depends on its input alone)...
        let _ = Router::new(config.clone()).handle_batch(input);
        // ...and a hostile module's reply, to the host.
        let _ = postcard::from_bytes::<Reply>(input);
        Ok(())
    });
}

#[test]
fn cidr_blocks() {
    let seeds = corpus("cidr")
        .iter()
        .flat_map(|f| text(f).lines().map(|l| l.as_bytes().to_vec()).collect::<Vec<_>>())
        .collect();
    fuzz("cidr", seeds, |input| {
        if let Ok(block) = CidrBlock::parse(&text(input)) {
            // A block holds its own address, as written.
            let written = text(input);
            if let Ok(addr) = written.trim().split('/').next().unwrap_or_default().parse() {
                prop_assert!(block.contains(addr), "{written} does not hold {addr}");
            }
        }
        Ok(())
    });
}

#[test]
fn x_forwarded_for_through_trusted_proxies() {
    let seeds = corpus("forwarded")
        .iter()
        .flat_map(|f| text(f).lines().map(|l| l.as_bytes().to_vec()).collect::<Vec<_>>())
        .collect();
    let trusted: Vec<CidrBlock> = ["10.0.0.0/8", "192.0.2.0/24"].iter().map(|b| CidrBlock::parse(b).unwrap()).collect();
    let (proxy, stranger) = ("10.0.0.1".parse().unwrap(), "203.0.113.1".parse().unwrap());
    fuzz("forwarded", seeds, |input| {
        // A stranger is the client, whatever it forwards.
        prop_assert_eq!(client_address(stranger, [input], &trusted), Some(stranger));
        // Through a trusted proxy, the client is the proxy or an address of
        // the header, and is untrusted unless every hop read was trusted.
        let Some(client) = client_address(proxy, [input], &trusted) else { return Ok(()) };
        let hops = input.split(|&b| b == b',').filter(|h| !h.trim_ascii().is_empty()).count();
        prop_assert!(hops <= MAX_FORWARDED_HOPS || !trusted.iter().any(|b| b.contains(client)) || hops == 0);
        // An IPv4 address is written one way (or mapped into IPv6); IPv6 has
        // many spellings, so only its colons are looked for.
        let (shown, written) = (client.to_string(), text(input).to_ascii_lowercase());
        let held = match client {
            std::net::IpAddr::V4(_) => written.contains(&shown) || written.contains("::ffff:"),
            std::net::IpAddr::V6(_) => written.contains(':'),
        };
        prop_assert!(client == proxy || held, "{shown} from {written:?}");
        Ok(())
    });
}

#[test]
fn jwt_bearer_tokens_and_key_sets() {
    use edge_router::jwt::{JwtRules, KeySet, authenticate};
    let seeds: Vec<Vec<u8>> =
        corpus("jwt").iter().flat_map(|f| text(f).lines().map(|l| l.as_bytes().to_vec()).collect::<Vec<_>>()).collect();
    let keys = KeySet::parse(&serde_json::json!({"keys": [
        {"kty": "RSA", "kid": "r1", "n": "AQAB", "e": "AQAB"},
        {"kty": "oct", "k": "c2VjcmV0"}
    ]}))
    .expect("keys");
    let rules = JwtRules {
        issuer: None,
        audience: None,
        tenant_claim: "org".into(),
        tier_claim: "tier".into(),
        leeway_ms: 0,
        jwks_file: None,
        inline: KeySet::default(),
    };
    fuzz("jwt", seeds, |input| {
        // A check that takes every signature: only the parsing and the claims are under test.
        let _ = authenticate(input, &keys, &rules, 1_700_000_000_000, |_, _, _, _| true);
        // A check that takes none admits nothing.
        prop_assert!(authenticate(input, &keys, &rules, 1_700_000_000_000, |_, _, _, _| false).is_err());
        // The same bytes as a JWKS document.
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(input) {
            let _ = KeySet::parse(&value);
        }
        Ok(())
    });
}
