//! The end of an exchange, as the router hears of it: `Finished` once,
//! whichever way the exchange ends (the body went through, broke off, was
//! cut, or the client went away), after a `BodyFailed` when the body failed,
//! and nothing when another event (`CacheHit`) ended it instead.

use edge_router::wire::{Event, Failure, Usage};

/// How a host hands the router an exchange's last events.
pub trait Tell {
    /// Hands the router `event` (at once, or with its next call).
    fn tell(&self, event: Event);
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// Tells the router exchange `id` is over when dropped.
pub struct Finish<T: Tell> {
    to: T,
    id: u64,
    usage: Option<Usage>,
    armed: bool,
}

impl<T: Tell> Finish<T> {
    pub fn new(to: T, id: u64) -> Self {
        Self { to, id, usage: None, armed: true }
    }

    /// The exchange ended some other way (a cache hit): no `Finished`.
    pub fn disarm(mut self) {
        self.armed = false;
    }

    /// The body went through, reporting `usage`.
    pub fn end(mut self, usage: Option<Usage>) {
        self.usage = usage;
    }

    /// The body broke off or was cut, the node's fault: `BodyFailed`, then
    /// `Finished`.
    pub fn fail(self, failure: Failure) {
        self.to.tell(Event::BodyFailed { id: self.id, failure, now_ms: self.to.now_ms() });
    }
}

impl<T: Tell> Drop for Finish<T> {
    fn drop(&mut self) {
        if self.armed {
            self.to.tell(Event::Finished { id: self.id, usage: self.usage, now_ms: self.to.now_ms() });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    #[derive(Clone, Default)]
    struct Heard(Rc<RefCell<Vec<Event>>>);

    impl Tell for Heard {
        fn tell(&self, event: Event) {
            self.0.borrow_mut().push(event);
        }

        fn now_ms(&self) -> u64 {
            7
        }
    }

    #[test]
    fn the_router_hears_finished_once_whichever_way_the_exchange_ends() {
        let heard = Heard::default();
        drop(Finish::new(heard.clone(), 1));
        let usage = Usage { prompt_tokens: 3, completion_tokens: 4 };
        Finish::new(heard.clone(), 2).end(Some(usage));
        Finish::new(heard.clone(), 3).fail(Failure::Timeout);
        Finish::new(heard.clone(), 4).disarm();
        assert_eq!(
            *heard.0.borrow(),
            [
                Event::Finished { id: 1, usage: None, now_ms: 7 },
                Event::Finished { id: 2, usage: Some(usage), now_ms: 7 },
                Event::BodyFailed { id: 3, failure: Failure::Timeout, now_ms: 7 },
                Event::Finished { id: 3, usage: None, now_ms: 7 },
            ]
        );
    }
}
