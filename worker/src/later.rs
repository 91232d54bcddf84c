//! Work that outlives the response (cache stores, budget settlements, a
//! background revalidation), and the end of an exchange.

use std::rc::Rc;

use edge_router::wire::Event;
use exchange::finish::Tell;
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

/// The end of an exchange reaches the router at once; with its `Finished`,
/// what the exchange spent is settled at the budget ledger, and its tokens
/// at the rate limiter.
pub struct Told {
    pub generation: Rc<Generation>,
    pub later: Later,
    pub env: Env,
}

impl Tell for Told {
    fn tell(&self, event: Event) {
        crate::ratelimit::ended(&self.env, &self.later, &event);
        let finished = matches!(event, Event::Finished { .. });
        self.generation.handle(event);
        if finished {
            crate::budget::settle(&self.generation, &self.env, &self.later);
        }
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// Tells the router the exchange is over when dropped: after the body went
/// through, or when the client went away before.
pub type Finish = exchange::finish::Finish<Told>;
