//! The audit trail (`admin.audit_log`): an append-only file of JSON lines,
//! apart from the access log, for what an auditor asks about: who changed
//! the router and how (admin actions, by the admin token's fingerprint,
//! never the token), which config or module was put in force (its hash),
//! and which requests were refused for their key, a budget or a rate limit
//! (by tenant, never the key). It holds no request or response content.
//!
//! Lines go to a thread of their own through a bounded queue: a flood of
//! refusals never slows the proxy; a line that finds the queue full is
//! dropped and counted, and the next line written says how many went
//! (`dropped_before`).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};

use exchange::record::Record;
use serde_json::{Value, json};

/// Lines that may wait for the writer.
const QUEUE: usize = 16 << 10;

/// The refusals the trail records (the record's `refusal`).
const AUDITED_REFUSALS: [&str; 3] = ["auth", "budget", "rate"];

/// An open audit trail.
pub struct Audit {
    queue: SyncSender<String>,
    pub dropped: AtomicU64,
}

impl Audit {
    /// Opens `path` for appending (creating it), and starts its writer.
    pub fn open(path: &str) -> anyhow::Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("admin.audit_log: cannot open {path}: {e}"))?;
        let (queue, lines) = std::sync::mpsc::sync_channel::<String>(QUEUE);
        let name = path.to_string();
        std::thread::Builder::new().name("edge-audit".into()).spawn(move || {
            for line in lines {
                // One write per line, appended whole.
                if let Err(e) = file.write_all(line.as_bytes()) {
                    tracing::error!("the audit log {name} could not be written: {e}");
                }
            }
        })?;
        Ok(Self { queue, dropped: AtomicU64::new(0) })
    }

    /// Appends `event` (its `kind` and fields) with the time.
    pub fn write(&self, mut event: Value) {
        event["time"] = json!(exchange::record::rfc3339_ms(crate::proxy::now_ms()));
        let missed = self.dropped.swap(0, Ordering::Relaxed);
        if missed > 0 {
            event["dropped_before"] = json!(missed);
        }
        let mut line = event.to_string();
        line.push('\n');
        match self.queue.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(missed + 1, Ordering::Relaxed);
            }
        }
    }

    /// A request's record, if it was refused for its key, a budget or a rate limit.
    pub fn refused(&self, record: &Record) {
        let Some(reason) = record.refusal.filter(|r| AUDITED_REFUSALS.contains(r)) else { return };
        self.write(json!({
            "kind": "refusal",
            "reason": reason,
            "request_id": edge_router::error::request_id_text(record.id),
            "tenant": record.tenant.as_deref(),
            "country": record.country,
            "rule": record.rule,
            "node": record.node,
            "status": record.status,
        }));
    }
}
