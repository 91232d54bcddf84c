//! Work that outlives the response (cache stores, budget settlements, a
//! background revalidation), and the end of an exchange.

use std::rc::Rc;

use edge_router::wire::{Event, Failure, Usage};
use futures_util::future::LocalBoxFuture;
use futures_util::{FutureExt, StreamExt};
use worker::{Context, Env};

use crate::now_ms;
use crate::state::Generation;

/// Work that must finish after the response went out: queued here, run
/// under `ctx.waitUntil`.
#[derive(Clone)]
pub struct Later(futures_channel::mpsc::UnboundedSender<LocalBoxFuture<'static, ()>>);

impl Later {
    /// Opens the queue; it is drained until every handle is dropped.
    pub fn open(ctx: &Context) -> Self {
        let (tx, rx) = futures_channel::mpsc::unbounded::<LocalBoxFuture<'static, ()>>();
        ctx.wait_until(rx.for_each(|job| job));
        Self(tx)
    }

    /// Runs `job` after the response.
    pub fn run(&self, job: impl Future<Output = ()> + 'static) {
        let _ = self.0.unbounded_send(job.boxed_local());
    }
}

/// Tells the router the exchange is over when dropped: after the body went
/// through, or when the client went away before.
pub struct Finish {
    generation: Rc<Generation>,
    id: u64,
    /// The `usage` the body reported, once it ended.
    pub usage: Option<Usage>,
    later: Later,
    env: Env,
    /// Cleared when another event (`CacheHit`) ends the exchange instead.
    armed: bool,
}

impl Finish {
    pub fn new(generation: Rc<Generation>, id: u64, later: Later, env: Env) -> Self {
        Self { generation, id, usage: None, later, env, armed: true }
    }

    /// The exchange ended some other way (a cache hit): no `Finished`.
    pub fn disarm(mut self) {
        self.armed = false;
    }

    /// Tells the router the body broke off; `Finished` follows on drop.
    pub fn body_failed(&self, failure: Failure) {
        self.generation.handle(Event::BodyFailed { id: self.id, failure, now_ms: now_ms() });
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.generation.handle(Event::Finished { id: self.id, usage: self.usage, now_ms: now_ms() });
        crate::budget::settle(&self.generation, &self.env, &self.later);
    }
}
