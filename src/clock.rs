//! The clock, outside the core. The service reads it once per command and hands the time to `decide`; the demo and
//! the tests use a manual clock so that days of cooling-off pass in milliseconds.

use crate::core::ids::UnixMs;
use std::sync::atomic::{AtomicU64, Ordering};

pub trait Clock: Send + Sync {
    fn now(&self) -> UnixMs;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMs {
        let elapsed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("the system clock is after 1970");
        UnixMs(elapsed.as_millis() as u64)
    }
}

/// A clock that moves only when told to.
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn starting_at(at: UnixMs) -> ManualClock {
        ManualClock(AtomicU64::new(at.0))
    }

    pub fn advance(&self, duration_ms: u64) {
        self.0.fetch_add(duration_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMs {
        UnixMs(self.0.load(Ordering::SeqCst))
    }
}
