//! The audit trail (`admin.audit_log`): an append-only file of JSON lines,
//! apart from the access log, for what an auditor asks about: who changed
//! the router and how (admin actions, by the admin token's fingerprint,
//! never the token), which config or module was put in force (its hash),
//! which requests were refused for their key, a budget or a rate limit
//! (by tenant, never the key), and which held personal data a node's `pii`
//! policy acted on (counts by kind, never the values). It holds no request
//! or response content.
//!
//! Lines go to a thread of their own through a bounded queue. A flood of
//! refusals never slows the proxy: a refusal that finds the queue full is
//! dropped and counted, and the next line written says how many went
//! (`dropped_before`). Admin actions and reloads, which are few, wait for
//! room instead: a flood cannot push them out. At shutdown what is queued
//! is written before the process ends.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use exchange::record::Record;
use serde_json::{Value, json};

/// Lines that may wait for the writer.
const QUEUE: usize = 16 << 10;

/// The refusals the trail records (the record's `refusal`).
const AUDITED_REFUSALS: [&str; 4] = ["auth", "address", "budget", "rate"];

/// An open audit trail.
pub struct Audit {
    /// `None` once closed at shutdown.
    queue: Mutex<Option<SyncSender<String>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    pub dropped: AtomicU64,
}

impl Audit {
    /// Opens `path` for appending (creating it), and starts its writer.
    pub fn open(path: &str) -> anyhow::Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| anyhow::anyhow!("admin.audit_log: cannot open {path}: {e}"))?;
        let (queue, lines) = std::sync::mpsc::sync_channel::<String>(QUEUE);
        let name = path.to_string();
        let writer = std::thread::Builder::new().name("edge-audit".into()).spawn(move || {
            let mut failing = false;
            for line in lines {
                // One write per line, appended whole; a failure is said once until writes work again.
                match file.write_all(line.as_bytes()) {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        tracing::error!("the audit log {name} could not be written: {e}");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
            let _ = file.sync_data();
        })?;
        Ok(Self { queue: Mutex::new(Some(queue)), writer: Mutex::new(Some(writer)), dropped: AtomicU64::new(0) })
    }

    /// Appends `event` (its `kind` and fields) with the time; waits for
    /// room in the queue if it is full (admin actions and reloads).
    pub fn write(&self, event: Value) {
        self.send(event, true);
    }

    fn send(&self, mut event: Value, wait: bool) {
        event["time"] = json!(exchange::record::rfc3339_ms(crate::proxy::now_ms()));
        let missed = self.dropped.swap(0, Ordering::Relaxed);
        if missed > 0 {
            event["dropped_before"] = json!(missed);
        }
        let mut line = event.to_string();
        line.push('\n');
        let Some(queue) = crate::lock(&self.queue).clone() else { return };
        let sent = if wait {
            queue.send(line).is_ok()
        } else {
            match queue.try_send(line) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            }
        };
        if !sent {
            self.dropped.fetch_add(missed + 1, Ordering::Relaxed);
        }
    }

    /// Writes what is queued and closes the file (at shutdown), waiting
    /// `within` at most.
    pub fn close(&self, within: Duration) {
        crate::lock(&self.queue).take();
        let Some(writer) = crate::lock(&self.writer).take() else { return };
        let deadline = std::time::Instant::now() + within;
        while !writer.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if writer.is_finished() {
            let _ = writer.join();
        }
    }

    /// A request's record: a line if it was refused for its key, its
    /// address, a budget or a rate limit, and one if its node's `pii`
    /// policy found personal values in it (the counts by kind, never the values).
    pub fn request(&self, record: &Record) {
        if let (Some(found), Some(mode)) = (&record.pii, record.pii_mode) {
            self.send(
                json!({
                    "kind": "personal_data",
                    "mode": mode,
                    "found": found,
                    "request_id": edge_router::error::request_id_text(record.id),
                    "tenant": record.tenant.as_deref(),
                    "country": record.country,
                    "node": record.node,
                    "status": record.status,
                }),
                false,
            );
        }
        let Some(reason) = record.refusal.filter(|r| AUDITED_REFUSALS.contains(r)) else { return };
        self.send(
            json!({
                "kind": "refusal",
                "reason": reason,
                "request_id": edge_router::error::request_id_text(record.id),
                "tenant": record.tenant.as_deref(),
                "country": record.country,
                "rule": record.rule,
                "node": record.node,
                "status": record.status,
            }),
            false,
        );
    }
}
