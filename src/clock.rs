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

/// The wall clock read once, then moved on by the monotonic clock (ADR 15): a step of the system clock while the
/// process runs (NTP correcting a drift, an operator's mistake, an attacker with access to the host) moves no code's
/// expiry, no cooling-off's end, no approval's life and no velocity window. Only the reading at start is the wall
/// clock's.
pub struct MonotonicClock {
    anchor: UnixMs,
    started: std::time::Instant,
}

impl MonotonicClock {
    /// Anchored at the wall clock now.
    pub fn start() -> MonotonicClock {
        MonotonicClock::anchored_at(SystemClock.now())
    }

    /// Anchored at `anchor`: `now()` is `anchor` plus the monotonic time since this call.
    pub fn anchored_at(anchor: UnixMs) -> MonotonicClock {
        MonotonicClock { anchor, started: std::time::Instant::now() }
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> UnixMs {
        UnixMs(self.anchor.0 + self.started.elapsed().as_millis() as u64)
    }
}

/// The clock of a long-running process: a `MonotonicClock` anchored at start, except that a debug build started with
/// `AIRLOCK_CLOCK_AHEAD=<duration>` (for example `2days`) runs that far ahead, so an end-to-end test can see a
/// cooling-off end without waiting it out. Release builds never read the variable.
pub fn process_clock() -> std::sync::Arc<dyn Clock> {
    #[cfg(debug_assertions)]
    if let Some(text) = std::env::var_os("AIRLOCK_CLOCK_AHEAD") {
        let text = text.to_string_lossy();
        let ahead =
            humantime::parse_duration(&text).unwrap_or_else(|error| panic!("AIRLOCK_CLOCK_AHEAD={text}: {error}"));
        return std::sync::Arc::new(MonotonicClock::anchored_at(UnixMs(
            SystemClock.now().0 + ahead.as_millis() as u64,
        )));
    }
    std::sync::Arc::new(MonotonicClock::start())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the process clock reads the wall clock once: anchored at a moment, it tells that moment plus the
    // monotonic time since, whatever the wall clock says now (an anchor a year off stays a year off).
    #[test]
    fn the_process_clock_moves_only_with_monotonic_time() {
        let year_ms = 365 * 24 * 60 * 60 * 1000;
        let anchor = UnixMs(SystemClock.now().0 - year_ms);
        let clock = MonotonicClock::anchored_at(anchor);
        let first = clock.now();
        let second = clock.now();
        assert!(first >= anchor && second >= first, "monotonic");
        assert!(second.0 < anchor.0 + 60_000, "it did not read the wall clock again: {} vs {}", second.0, anchor.0);
    }
}
