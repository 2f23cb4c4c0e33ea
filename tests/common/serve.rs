//! `airlock serve` as a test drives it: a real nats-server on loopback with its store in a scratch directory, and
//! `airlock serve` processes (NATS mode, or embedded with the log in the data directory) started, killed (SIGKILL),
//! stopped (SIGTERM) and restarted.

use super::{WAIT_MS, scratch, wait_for};
use airlock::nats::server::{NatsServer, Options};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Runs the `airlock` binary with `args` and `--data-dir data`, and returns what it did.
pub fn airlock(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_airlock")).args(args).arg("--data-dir").arg(data).output().unwrap()
}

/// One `airlock serve --nats` process, its stderr written to `log`; killed when dropped.
pub struct ServeProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl ServeProcess {
    /// Starts `airlock serve --nats URL --tick 200ms` on `data` with `options` and `environment` added, and waits
    /// until it says it is serving.
    pub fn start(nats_url: &str, data: &Path, log: &Path, options: &[&str], environment: &[(&str, &str)]) -> Self {
        Self::spawn(&["serve", "--nats", nats_url, "--tick", "200ms"], data, log, options, environment)
    }

    /// Starts `airlock serve --tick 200ms` in embedded mode (no NATS: the event log in `data`), like `start`.
    pub fn start_embedded(data: &Path, log: &Path, options: &[&str], environment: &[(&str, &str)]) -> Self {
        Self::spawn(&["serve", "--tick", "200ms"], data, log, options, environment)
    }

    fn spawn(serve: &[&str], data: &Path, log: &Path, options: &[&str], environment: &[(&str, &str)]) -> Self {
        // Text messages to phones land in the outbox the tests read, unless a test names an SMS provider.
        let sms: &[&str] = if options.contains(&"--sms-url") { &[] } else { &["--sms-outbox"] };
        let child = Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(serve)
            .args(sms)
            .args(options)
            .arg("--data-dir")
            .arg(data)
            .env("RUST_LOG", "info,async_nats=warn")
            .envs(environment.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let serve = ServeProcess { child: Some(child), log: log.to_path_buf() };
        wait_for(|| serve.log().contains("airlock serving"), "airlock serve to start");
        serve
    }

    /// What the process has written to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: a crash, with no chance to finish anything.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("serve is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits for the process to exit by itself, and returns how it exited.
    pub fn wait_for_exit(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("serve is running");
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("serve did not exit by itself:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    /// SIGTERM, and how the process exited.
    pub fn stop(self) -> ExitStatus {
        let pid = self.child.as_ref().expect("serve is running").id();
        Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        self.wait_for_exit()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A scratch directory with a nats-server and one airlock data directory, and at most one `airlock serve` at a time.
pub struct Harness {
    pub scratch: tempfile::TempDir,
    pub nats: NatsServer,
    serve: Option<ServeProcess>,
    starts: u32,
}

impl Harness {
    pub fn new() -> Harness {
        let scratch = scratch();
        let nats = NatsServer::start(&scratch.path().join("nats"), &Options::default()).expect("nats-server starts");
        Harness { scratch, nats, serve: None, starts: 0 }
    }

    pub fn data(&self) -> PathBuf {
        self.scratch.path().join("data")
    }

    /// Runs the `airlock` binary on this harness's data directory.
    pub fn airlock(&self, args: &[&str]) -> std::process::Output {
        airlock(&self.data(), args)
    }

    /// Starts `airlock serve` with `options` and `environment` added; one at a time.
    pub fn start_serve(&mut self, options: &[&str], environment: &[(&str, &str)]) {
        assert!(self.serve.is_none(), "serve is already running");
        self.starts += 1;
        let log = self.scratch.path().join(format!("serve-{}.log", self.starts));
        self.serve = Some(ServeProcess::start(&self.nats.url(), &self.data(), &log, options, environment));
    }

    /// Starts `airlock serve` in embedded mode (the harness's NATS unused) with `options` and `environment` added.
    pub fn start_embedded_serve(&mut self, options: &[&str], environment: &[(&str, &str)]) {
        assert!(self.serve.is_none(), "serve is already running");
        self.starts += 1;
        let log = self.scratch.path().join(format!("serve-{}.log", self.starts));
        self.serve = Some(ServeProcess::start_embedded(&self.data(), &log, options, environment));
    }

    /// What the running (or last) `airlock serve` wrote to stderr.
    pub fn serve_log(&self) -> String {
        let log = self.scratch.path().join(format!("serve-{}.log", self.starts));
        std::fs::read_to_string(log).unwrap_or_default()
    }

    pub fn serve_running(&mut self) -> bool {
        self.serve.as_mut().is_some_and(ServeProcess::running)
    }

    pub fn kill_serve(&mut self) {
        self.serve.take().expect("serve is running").kill();
    }

    pub fn stop_serve(&mut self) -> ExitStatus {
        self.serve.take().expect("serve is running").stop()
    }

    pub fn wait_for_exit(&mut self) -> ExitStatus {
        self.serve.take().expect("serve is running").wait_for_exit()
    }

    /// The owners' page of the running serve (started with `--http 127.0.0.1:0`), as host:port.
    pub fn page_address(&self) -> String {
        let announced = "airlock verification page on http://";
        super::wait_for(|| self.serve_log().contains(announced), "serve to announce its page");
        let log = self.serve_log();
        log.split(announced).nth(1).unwrap().split(['"', ' ', '\n']).next().unwrap().to_string()
    }

    pub async fn client(&self) -> async_nats::Client {
        airlock::nats::connect(&self.nats.url(), "test").await.unwrap()
    }
}
