//! `airlock bench` runs end to end on a throwaway nats-server and reports every figure it promises. This checks the
//! report's shape and that each phase really ran (every rate positive); it asserts nothing about speed, which is
//! measured by running the benchmark, never by a test.

use std::process::Command;

// Proves the benchmark starts its own server, runs all four phases, and ends with one JSON object carrying the
// documented keys.
#[test]
fn bench_reports_every_figure() {
    let output = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["bench", "--events", "400", "--cases", "40"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let last = stdout.lines().last().unwrap();
    let report: serde_json::Value = serde_json::from_str(last).unwrap();
    for key in [
        "raw_append_per_s",
        "airlock_events_per_s",
        "append_ratio",
        "raw_read_per_s",
        "replay_events_per_s",
        "replay_ratio",
        "p50_ms",
        "p99_ms",
        "rss_mb",
    ] {
        let value = report[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {last}"));
        assert!(value > 0.0, "{key} is {value}");
    }
    assert_eq!(report["events"], 400);
    assert!(stdout.contains("ratio to raw append"), "the readable table is printed");
}
