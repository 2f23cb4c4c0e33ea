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

/// The system clock moved forward by a fixed amount.
pub struct AheadClock {
    pub ahead_ms: u64,
}

impl Clock for AheadClock {
    fn now(&self) -> UnixMs {
        UnixMs(SystemClock.now().0 + self.ahead_ms)
    }
}

/// The clock of a long-running process: the system clock, except that a debug build started with
/// `AIRLOCK_CLOCK_AHEAD=<duration>` (for example `2days`) runs that far ahead, so an end-to-end test can see a
/// cooling-off end without waiting it out. Release builds never read the variable.
pub fn process_clock() -> std::sync::Arc<dyn Clock> {
    #[cfg(debug_assertions)]
    if let Some(text) = std::env::var_os("AIRLOCK_CLOCK_AHEAD") {
        let text = text.to_string_lossy();
        let ahead =
            humantime::parse_duration(&text).unwrap_or_else(|error| panic!("AIRLOCK_CLOCK_AHEAD={text}: {error}"));
        return std::sync::Arc::new(AheadClock { ahead_ms: ahead.as_millis() as u64 });
    }
    std::sync::Arc::new(SystemClock)
}
