//! `airlock bench` runs end to end on a throwaway nats-server and reports every figure it promises. This checks the
//! report's shape and that each phase really ran (every rate positive); it asserts nothing about speed, which is
//! measured by running the benchmark, never by a test.

use std::process::Command;

// Proves the benchmark starts its own servers (the server's default configuration and `sync_interval: always`), runs
// every phase on each, the open-loop latency phases at 25%, 50% and 75% of saturation included, and ends with one
// JSON object carrying the documented keys.
#[test]
fn bench_reports_every_figure() {
    let output = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["bench", "--events", "400", "--cases", "40", "--latency-seconds", "1"])
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
        "append_ratio_default_config",
        "p99_ms_at_half_load",
    ] {
        let value = report[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {last}"));
        assert!(value > 0.0, "{key} is {value}");
    }
    assert_eq!(report["events"], 400);
    let servers = report["servers"].as_array().unwrap();
    let names: Vec<&str> = servers.iter().map(|server| server["server"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "sync_always"], "{last}");
    for server in servers {
        assert!(server["append_ratio"].as_f64().unwrap() > 0.0, "{server}");
        for key in ["cpu_ms_per_request_process", "cpu_ms_per_request_server"] {
            let cpu = server[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {server}"));
            assert!((0.0..1_000.0).contains(&cpu), "{key} is {cpu}: CPU per request, in milliseconds (10 ms ticks)");
        }
        let loads: Vec<f64> =
            server["open_loop"].as_array().unwrap().iter().map(|phase| phase["load"].as_f64().unwrap()).collect();
        assert_eq!(loads, [0.25, 0.5, 0.75], "{server}");
        for phase in server["open_loop"].as_array().unwrap() {
            for key in ["requests_per_s", "p50_ms", "p99_ms", "max_ms"] {
                assert!(phase[key].as_f64().unwrap() > 0.0, "{key} in {phase}");
            }
            assert!(phase["p50_ms"].as_f64() <= phase["max_ms"].as_f64(), "{phase}");
        }
    }
    assert!(stdout.contains("ratio to raw append"), "the readable table is printed");
}
