//! `airlock serve --http` in the embedded mode as a test drives it, and one HTTP/1.1 exchange at a time over a plain
//! socket (what a browser, a mail scanner or a support desk's client sends, without a client library in between).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Serve {
    child: Child,
    pub address: String,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `airlock serve --http 127.0.0.1:0` on `data` and reads the address it printed.
pub fn serve(data: &Path) -> Serve {
    serve_with(data, &[])
}

/// `serve`, with `environment` added (for example the debug-only `AIRLOCK_CLOCK_AHEAD`).
pub fn serve_with(data: &Path, environment: &[(&str, &str)]) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--http", "127.0.0.1:0", "--tick", "200ms", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "debug")
        .envs(environment.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (sender, receiver) = std::sync::mpsc::channel();
    let mut lines = BufReader::new(child.stderr.take().unwrap());
    let collected = stderr.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(address) = line.trim().strip_prefix("airlock verification page on http://") {
                let _ = sender.send(address.to_string());
            }
            collected.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    let address = receiver.recv_timeout(Duration::from_millis(super::WAIT_MS)).expect("serve printed its address");
    Serve { child, address, stderr }
}

/// One HTTP/1.1 exchange over a fresh connection: status, headers (lower-case names) and body.
pub fn http(address: &str, method: &str, target: &str, content_type: &str, body: &[u8]) -> (u16, String, String) {
    http_with(address, method, target, &[("Content-Type", content_type)], body)
}

/// `http`, with any request headers.
pub fn http_with(
    address: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}
