//! A stored answer's head: what both hosts keep beside its body, and how a
//! lookup judges it.
//!
//! The edge box keeps entries in memory; the Worker in the Cache API, with
//! the head as JSON in one header of the stored response ([`Entry::to_json`]).
//! Either way the same [`verdict`] decides what an entry is good for.

use bytes::Bytes;
use edge_cache::Stored;
use edge_cache::http::{Lookup, lookup};
use edge_router::wire::CacheLookup;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

/// An answer kept in the cache, without its body.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Status (always 200 for AI answers).
    pub status: StatusCode,
    /// The origin's header fields, without hop-by-hop and `x-edge-*` ones,
    /// and without `Content-Length` and `Age`, which a host sets itself.
    pub headers: HeaderMap,
    /// The node that answered.
    pub node: String,
    /// The model the request was rewritten to, if it was.
    pub model: Option<String>,
    /// When it was stored, in milliseconds since the epoch.
    pub stored_ms: u64,
    /// When an AI answer stops being served (`u64::MAX` for an RFC 9111
    /// entry, whose freshness is the RFC's).
    pub expires_ms: u64,
    /// Tokens the answer cost (its usage, or the request's estimate): what a hit saves.
    pub tokens: u64,
    /// For a `GET` of a passthrough path: what RFC 9111 needs to judge it.
    pub http: Option<Stored>,
}

/// A stored answer: its head and its whole body.
#[derive(Debug, Clone)]
pub struct Cached {
    /// Status, header fields, the node that answered, freshness.
    pub entry: Entry,
    /// The whole body: JSON, or an SSE stream as it passed.
    pub body: Bytes,
}

impl HoldsEntry for Cached {
    fn entry(&self) -> &Entry {
        &self.entry
    }
}

/// A host's handle on a stored entry (a [`Cached`], or a shared one), which
/// the exchange reads the head of.
pub trait HoldsEntry {
    /// The entry's head.
    fn entry(&self) -> &Entry;
}

impl HoldsEntry for Entry {
    fn entry(&self) -> &Entry {
        self
    }
}

impl<T: HoldsEntry + ?Sized> HoldsEntry for &T {
    fn entry(&self) -> &Entry {
        (**self).entry()
    }
}

impl<T: HoldsEntry + ?Sized> HoldsEntry for std::sync::Arc<T> {
    fn entry(&self) -> &Entry {
        (**self).entry()
    }
}

impl Entry {
    /// Its `Age` at `now_ms`, in seconds.
    pub fn age_s(&self, now_ms: u64) -> u64 {
        match &self.http {
            Some(stored) => stored.age_s(now_ms),
            None => now_ms.saturating_sub(self.stored_ms) / 1000,
        }
    }

    /// The entry as JSON text with every character outside ASCII escaped,
    /// so that it is a valid header value (the Worker stores it so).
    pub fn to_json(&self) -> Option<String> {
        let json = serde_json::to_string(&Json::from(self)).ok()?;
        let mut out = String::with_capacity(json.len());
        for c in json.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        Some(out)
    }

    /// An entry [`to_json`](Self::to_json) wrote; `None` for anything else.
    pub fn from_json(text: &str) -> Option<Self> {
        serde_json::from_slice::<Json>(text.as_bytes()).ok()?.try_into().ok()
    }
}

/// [`Entry`] as JSON: header fields as text pairs.
#[derive(Serialize, Deserialize)]
struct Json {
    status: u16,
    headers: Vec<(String, String)>,
    node: String,
    model: Option<String>,
    stored_ms: u64,
    expires_ms: u64,
    tokens: u64,
    http: Option<Stored>,
}

impl From<&Entry> for Json {
    fn from(e: &Entry) -> Self {
        Self {
            status: e.status.as_u16(),
            // A value that is not text cannot go in JSON; it is left out.
            headers: e
                .headers
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect(),
            node: e.node.clone(),
            model: e.model.clone(),
            stored_ms: e.stored_ms,
            expires_ms: e.expires_ms,
            tokens: e.tokens,
            http: e.http.clone(),
        }
    }
}

impl TryFrom<Json> for Entry {
    type Error = ();

    fn try_from(j: Json) -> Result<Self, ()> {
        let mut headers = HeaderMap::with_capacity(j.headers.len());
        for (name, value) in &j.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| ())?;
            headers.append(name, HeaderValue::from_str(value).map_err(|_| ())?);
        }
        Ok(Self {
            status: StatusCode::from_u16(j.status).map_err(|_| ())?,
            headers,
            node: j.node,
            model: j.model,
            stored_ms: j.stored_ms,
            expires_ms: j.expires_ms,
            tokens: j.tokens,
            http: j.http,
        })
    }
}

/// What a stored entry is good for, for one request's lookup: an AI answer
/// until it expires, an RFC 9111 entry as the RFC says. An entry of the
/// other kind than the lookup's (a key reused across a config change) is a
/// miss.
pub fn verdict(entry: &Entry, looking: &CacheLookup, request: &HeaderMap, now_ms: u64) -> Lookup {
    match (&entry.http, looking.http) {
        (None, false) if entry.expires_ms > now_ms => Lookup::Fresh { age_s: entry.age_s(now_ms) },
        (Some(stored), true) => lookup(request, &entry.headers, stored, now_ms),
        _ => Lookup::Miss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_router::wire::{CacheStatus, Explain};

    fn looking(http: bool) -> CacheLookup {
        let explain = Explain {
            node: "-".into(),
            rule: "r".into(),
            attempts: 0,
            country: "XX".into(),
            model: None,
            difficulty: None,
            cache: CacheStatus::Hit,
            panic: false,
            ratelimit: Default::default(),
        };
        CacheLookup { key: "k".into(), http, explain }
    }

    fn ai_entry(stored_ms: u64, expires_ms: u64) -> Entry {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/event-stream"));
        Entry {
            status: StatusCode::OK,
            headers,
            node: "n\u{fc}".into(),
            model: Some("tiny".into()),
            stored_ms,
            expires_ms,
            tokens: 42,
            http: None,
        }
    }

    #[test]
    fn an_ai_answer_is_fresh_until_it_expires_and_never_an_http_entry() {
        let e = ai_entry(1_000, 61_000);
        assert_eq!(verdict(&e, &looking(false), &HeaderMap::new(), 31_000), Lookup::Fresh { age_s: 30 });
        assert_eq!(verdict(&e, &looking(false), &HeaderMap::new(), 61_000), Lookup::Miss);
        assert_eq!(verdict(&e, &looking(true), &HeaderMap::new(), 31_000), Lookup::Miss, "kinds differ");
    }

    #[test]
    fn an_entry_survives_its_json_form_and_the_form_is_ascii() {
        let mut e = ai_entry(1_000, 61_000);
        e.http = Some(Stored { vary: vec![("accept".into(), None)], response_ms: 5, initial_age_s: 1, lifetime_s: 9 });
        let json = e.to_json().expect("serializes");
        assert!(json.is_ascii(), "{json}");
        assert!(HeaderValue::from_str(&json).is_ok(), "a valid header value");
        assert_eq!(Entry::from_json(&json), Some(e));
        assert_eq!(Entry::from_json("{}"), None);
    }
}
