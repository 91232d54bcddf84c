//! The access log's writer: lines go into a shared buffer, and a thread of
//! its own writes the buffer out every `FLUSH_EVERY` in one write. A request
//! pays for its line's JSON and a copy under a short lock, never for a
//! system call or a wake-up; when the buffer is full (the disk, or whoever
//! reads standard output, is slower than the traffic), lines are dropped
//! and counted rather than waited for.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use edge_router::config::AccessLogTarget;
use exchange::record::Record;

use crate::lock;

/// How often the writer writes what has come.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Most bytes the buffer holds before lines are dropped.
const MAX_BUFFERED: usize = 8 << 20;

/// What the requests and the writer share.
struct Shared {
    lines: Mutex<Vec<u8>>,
    out: Mutex<Box<dyn Write + Send>>,
    closed: AtomicBool,
}

impl Shared {
    /// Writes out what is buffered.
    fn flush(&self, spare: &mut Vec<u8>) -> std::io::Result<()> {
        std::mem::swap(&mut *lock(&self.lines), spare);
        if spare.is_empty() {
            return Ok(());
        }
        let mut out = lock(&self.out);
        let written = out.write_all(spare).and_then(|()| out.flush());
        spare.clear();
        written
    }
}

/// An open access log.
pub(super) struct AccessLog {
    shared: Arc<Shared>,
    writer: std::thread::Thread,
    /// The share of requests logged.
    pub(super) sample: f64,
}

thread_local! {
    /// A line being made, before it is copied into the buffer.
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl AccessLog {
    /// The log `target` names, writing a share `sample` of requests; `None` when it is off.
    pub(super) fn open(target: &AccessLogTarget, sample: f64) -> anyhow::Result<Option<Self>> {
        let out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::Stdout => Box::new(std::io::stdout()),
            AccessLogTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open the access log {path} (monitoring.access_log)"))?,
            ),
        };
        let shared = Arc::new(Shared {
            lines: Mutex::new(Vec::with_capacity(64 << 10)),
            out: Mutex::new(out),
            closed: AtomicBool::new(false),
        });
        let theirs = shared.clone();
        let writer = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(64 << 10);
                loop {
                    std::thread::park_timeout(FLUSH_EVERY);
                    let closed = theirs.closed.load(Ordering::Acquire);
                    if let Err(e) = theirs.flush(&mut spare) {
                        tracing::error!("the access log cannot be written: {e}");
                    }
                    if closed {
                        break;
                    }
                }
            })?
            .thread()
            .clone();
        Ok(Some(Self { shared, writer, sample }))
    }

    /// Adds `record`'s line; `false` if the buffer was full and it was dropped.
    pub(super) fn write(&self, record: &Record) -> bool {
        LINE.with_borrow_mut(|line| {
            line.clear();
            if serde_json::to_writer(&mut *line, record).is_err() {
                return true;
            }
            line.push(b'\n');
            let mut lines = lock(&self.shared.lines);
            if lines.len() + line.len() > MAX_BUFFERED {
                return false;
            }
            lines.extend_from_slice(line);
            true
        })
    }

    /// Writes out what is buffered now.
    pub(super) fn flush(&self) {
        if let Err(e) = self.shared.flush(&mut Vec::new()) {
            tracing::error!("the access log cannot be written: {e}");
        }
    }
}

impl Drop for AccessLog {
    /// The writer writes what is left, and ends.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.writer.unpark();
    }
}
