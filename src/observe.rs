//! The counters airlock keeps as it works (issue 17, item 5), through the `metrics` facade: commands by type and
//! outcome with their latency, policy decisions by phase and outcome, effects on the directory. `server::health`
//! renders them, with the state read at each scrape, as Prometheus text.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The log is JSON, one object per line (`serve --log-format json`): then even the banners for people are log events.
static JSON_LOGS: AtomicBool = AtomicBool::new(false);

pub fn set_json_logs(json: bool) {
    JSON_LOGS.store(json, Ordering::Relaxed);
}

/// Tells whoever started the process something they need (where it listens): a line on stderr, or a log event when
/// the log is JSON, so that every line a collector reads parses.
pub fn announce(text: &str) {
    if JSON_LOGS.load(Ordering::Relaxed) {
        tracing::info!("{text}");
    } else {
        eprintln!("{text}");
    }
}

/// The process's metrics recorder, installed once (a process has one global recorder).
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test process running several services): then ours still
        // renders the gauges set at each scrape, and the counters go to the one installed.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Commands recorded between two upkeeps of the recorder. The recorder keeps every latency sample until an upkeep
/// folds it into the histogram's buckets, and otherwise only a scrape of `/metrics` runs one: a process nobody
/// scraped (no `--metrics`, or a scraper that stopped) kept every sample for as long as it ran, about 16 bytes per
/// command. Now at most this many wait, whatever the scraping.
const COMMANDS_BETWEEN_UPKEEPS: u64 = 4_096;

static COMMANDS_RECORDED: AtomicU64 = AtomicU64::new(0);

/// Counts one command recorded; true for every `COMMANDS_BETWEEN_UPKEEPS`th, which runs an upkeep.
fn upkeep_due(recorded: &AtomicU64) -> bool {
    recorded.fetch_add(1, Ordering::Relaxed) % COMMANDS_BETWEEN_UPKEEPS == COMMANDS_BETWEEN_UPKEEPS - 1
}

/// Records one command handled by a front door: its type and outcome, and how long it took.
pub fn command_handled(command: &'static str, outcome: &'static str, seconds: f64) {
    let handle = recorder();
    metrics::counter!("airlock_commands_total", "command" => command, "outcome" => outcome).increment(1);
    metrics::histogram!("airlock_command_seconds", "command" => command).record(seconds);
    if upkeep_due(&COMMANDS_RECORDED) {
        handle.run_upkeep();
    }
}

/// Records one policy decision: its phase and outcome.
pub fn decided(phase: crate::core::policy::Phase, outcome: crate::core::policy::Outcome) {
    use crate::core::policy::{Outcome, Phase};
    let phase = match phase {
        Phase::Intake => "intake",
        Phase::Authorization => "authorization",
    };
    let outcome = match outcome {
        Outcome::Auto => "auto",
        Outcome::Review => "review",
        Outcome::Deny => "deny",
    };
    let _ = recorder();
    metrics::counter!("airlock_decisions_total", "phase" => phase, "outcome" => outcome).increment(1);
}

/// Records one effect on the directory (a change or a rollback) and whether it held.
pub fn effect(kind: &'static str, outcome: &'static str) {
    let _ = recorder();
    metrics::counter!("airlock_effects_total", "kind" => kind, "outcome" => outcome).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves a process nobody scrapes still folds its latency samples: an upkeep runs once every
    // `COMMANDS_BETWEEN_UPKEEPS` commands, counting from the first.
    #[test]
    fn an_upkeep_runs_once_every_so_many_commands() {
        let recorded = AtomicU64::new(0);
        let due: Vec<u64> = (1..=3 * COMMANDS_BETWEEN_UPKEEPS + 5).filter(|_| upkeep_due(&recorded)).collect();
        assert_eq!(due.len(), 3);
        let recorded = AtomicU64::new(0);
        let first = (1..=COMMANDS_BETWEEN_UPKEEPS).find(|_| upkeep_due(&recorded));
        assert_eq!(first, Some(COMMANDS_BETWEEN_UPKEEPS), "the first upkeep follows the first full batch");
    }
}
