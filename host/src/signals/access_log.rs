//! The access log's writer: each thread puts its lines in a buffer of its
//! own, and a thread of the log's own writes the buffers out every
//! `FLUSH_EVERY` (every `IDLE_EVERY` while there is nothing to write). A request pays for its line's JSON and a copy, never for
//! a system call, a wake-up or a lock another thread holds; when its
//! thread's buffer is full (the disk, or whoever reads standard output, is
//! slower than the traffic), a line is dropped and counted rather than
//! waited for.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use edge_router::config::AccessLogTarget;
use exchange::record::Record;

use super::per_thread::PerThread;
use crate::lock;

/// How often the writer writes what has come while lines come: often
/// enough that a thread's buffer stays small (tens of kilobytes at tens of
/// thousands of requests a second), and with it in the cache.
const FLUSH_EVERY: Duration = Duration::from_millis(5);
/// How often it looks while none come.
const IDLE_EVERY: Duration = Duration::from_millis(100);
/// Most bytes a thread's buffer holds before its lines are dropped.
const MAX_BUFFERED: usize = 4 << 20;

/// What the requests and the writer share.
struct Shared {
    /// Each thread's lines.
    lines: PerThread<Mutex<Vec<u8>>>,
    out: Mutex<Box<dyn Write + Send>>,
    closed: AtomicBool,
}

impl Shared {
    /// Writes out what every thread has buffered; whether there was any.
    fn flush(&self, spare: &mut Vec<u8>) -> std::io::Result<bool> {
        let mut out = lock(&self.out);
        let (mut result, mut wrote) = (Ok(()), false);
        self.lines.each(|lines| {
            std::mem::swap(&mut *lock(lines), spare);
            if !spare.is_empty() && result.is_ok() {
                wrote = true;
                result = out.write_all(spare);
            }
            spare.clear();
        });
        result.and_then(|()| out.flush()).map(|()| wrote)
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
        let shared = Arc::new(Shared { lines: PerThread::new(), out: Mutex::new(out), closed: AtomicBool::new(false) });
        let theirs = shared.clone();
        let writer = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(64 << 10);
                let mut every = IDLE_EVERY;
                loop {
                    std::thread::park_timeout(every);
                    let closed = theirs.closed.load(Ordering::Acquire);
                    match theirs.flush(&mut spare) {
                        Ok(wrote) => every = if wrote { FLUSH_EVERY } else { IDLE_EVERY },
                        Err(e) => tracing::error!("the access log cannot be written: {e}"),
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
            record.write_json(line);
            line.push(b'\n');
            self.shared.lines.with(|lines| {
                let mut lines = lock(lines);
                if lines.len() + line.len() > MAX_BUFFERED {
                    return false;
                }
                lines.extend_from_slice(line);
                true
            })
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
