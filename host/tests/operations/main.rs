//! Operating a running edge box, through the real binary. Origins are real
//! HTTP servers on loopback. One test binary, a file per group:
//! - `metrics`: the Prometheus metrics and the JSON access log counted
//!   against the traffic sent;
//! - `routing_log`: `routing-log` following requests as they finish, with a
//!   reader too slow to keep up;
//! - `reload`: a config reload under load, and a bad config refused;
//! - `prometheus`: a real Prometheus scraping the box as docs/operations.md
//!   says;
//! - `audit`: the admin audit log.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fake_origin::{FakeOrigin, Reply, Script};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../common/mod.rs"]
mod common;

mod audit;
mod metrics;
mod prometheus;
mod reload;
mod routing_log;

use common::{BIN, Client, EdgeBox, TOKEN, client};

/// A client key and its SHA-256, as `auth.keys` lists it.
const KEY: &str = "sk-client-acme-4242";

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A chat request from `country`, streamed or not, with `key` if given.
async fn send(client: &Client, addr: &str, country: &str, model: &str, stream: bool, key: Option<&str>) -> u16 {
    let body = serde_json::json!({"model": model, "stream": stream, "stream_options": {"include_usage": stream},
        "messages": [{"role": "user", "content": "hello there"}]});
    let mut req = http::Request::post(format!("{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("x-country", country);
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let resp = client.request(req.body(Full::new(Bytes::from(body.to_string()))).expect("request")).await;
    let resp = resp.expect("the router answers");
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

/// `GET /metrics` with `token`: its status and text.
async fn scrape(client: &Client, admin: &str, token: &str) -> (u16, String) {
    let req = http::Request::get(format!("{admin}/metrics"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = client.request(req).await.expect("the admin API answers");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("the metrics").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The samples of a Prometheus text: each series (name and labels) and its value.
fn samples(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').expect("a sample is a series and a value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once("=\""))
            .map(|(k, v)| (k.to_string(), v.trim_end_matches('"').to_string()))
            .collect();
        out.push((name.to_string(), labels, value.parse().expect("a number")));
    }
    out
}

/// The sum of `name`'s samples whose labels include `with`.
fn total(text: &str, name: &str, with: &[(&str, &str)]) -> f64 {
    samples(text)
        .iter()
        .filter(|(n, labels, _)| n == name && with.iter().all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| v)
        .sum()
}

fn temp_file(name: &str) -> std::path::PathBuf {
    // Cargo's folder for integration tests' files (in target/), not /tmp.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("edge-router-operations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}
