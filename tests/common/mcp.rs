//! `airlock mcp` as the tests drive it: the example agent session (`examples/mcp/agent_session.py`, the official MCP
//! Python SDK) over stdio or streamable HTTP, and `airlock mcp --http` started on a free loopback port.

use serde_json::Value;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Runs the example agent session for account `acct-1`: against the embedded store in `data` over stdio, or against
/// the server at `url` over streamable HTTP. Returns its JSON report.
pub fn agent_session(data: &Path, url: Option<&str>) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mcp/agent_session.py");
    let mut command = Command::new("python3");
    command.arg(script).arg("acct-1").env("AIRLOCK_BIN", env!("CARGO_BIN_EXE_airlock")).env("AIRLOCK_DATA_DIR", data);
    if let Some(url) = url {
        command.env("AIRLOCK_MCP_URL", url);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "the agent session failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("one JSON report")
}

/// `airlock mcp --http` running; killed when dropped.
pub struct McpServer {
    child: Child,
    pub url: String,
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `airlock mcp --http 127.0.0.1:0` with `args` and reads the URL it printed.
pub fn start_http(args: &[&str]) -> McpServer {
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["mcp", "--http", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut server = McpServer { child, url: String::new() };
    let mut line = String::new();
    while server.url.is_empty() {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "airlock mcp exited before listening");
        if let Some(url) = line.trim().strip_prefix("airlock mcp on ") {
            server.url = url.to_string();
        }
    }
    // Keep reading: with the pipe closed, the server's next log line would fail.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    server
}
