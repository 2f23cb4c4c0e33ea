//! The embedded store as a THREATS backend: one data directory in /dev/shm, and the `airlock` binary acting on it, as
//! the attacker, the support desk, the owner, reviewers and operators would: `airlock directory import`, `airlock
//! submit` (the JSON front door, with the actor its caller asserts), `airlock outbox`, `airlock serve` (whose timers
//! execute a change once its cooling-off has ended; its clock is run ahead with the debug-only `AIRLOCK_CLOCK_AHEAD`),
//! `airlock rollback` and `airlock audit verify`.
//!
//! Each `airlock submit` has done all its work (the case decided, its notices sent, the projection written) when it
//! returns, so there is nothing to wait for; its exit code is checked against its reply on every command (0 accepted,
//! 1 refused). The embedded mode has no status query and no dead-letter stream. A test ends by searching everything
//! airlock printed or wrote outside the owner's outbox for the codes owners received, as the NATS backend does.

use crate::common;
use crate::common::serve::ServeProcess;
use crate::driver::*;
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, Once};

/// One embedded data directory, and the `airlock` commands that use it.
pub struct Store {
    scratch: tempfile::TempDir,
    /// What every `airlock` command printed (stdout, and stderr without times), searched for codes at the end.
    printed: Mutex<Vec<(String, Vec<u8>)>>,
    warmed_up: Once,
    /// How many times `airlock serve` was started (each writes `serve-N.log` beside the data directory).
    serves: u32,
}

impl Store {
    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_airlock"));
        command.env("AIRLOCK_DATA_DIR", self.data()).env_remove("AIRLOCK_CLOCK_AHEAD");
        command
    }

    fn keep(&self, what: String, output: &Output) {
        let mut printed = output.stdout.clone();
        printed.extend(without_timestamps(&String::from_utf8_lossy(&output.stderr)).into_bytes());
        self.printed.lock().unwrap().push((what, printed));
    }

    /// `airlock submit` with `input` on standard input: the reply exactly as printed, once its exit code is the one
    /// its reply calls for.
    fn submit_raw(&self, sender: &str, command: &str, input: &[u8]) -> Vec<u8> {
        let command = command.replace('_', "-");
        let mut child = self
            .command()
            .args(["submit", "--actor", sender, "--command", &command])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let reply: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|_| panic!("not a JSON reply: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
        // What the command's caller acts on: 0 accepted, 1 refused (3 unavailable, which no scenario expects).
        let exit = match (&reply["accepted"], error_code(&reply)) {
            (Value::Bool(true), _) => 0,
            (Value::Bool(false), "unavailable") => 3,
            (Value::Bool(false), _) => 1,
            _ => panic!("the reply does not say whether it was accepted: {stdout}"),
        };
        assert_eq!(output.status.code(), Some(exit), "`airlock submit --command {command}` exit code: {stdout}");
        self.keep(format!("airlock submit --command {command}"), &output);
        output.stdout
    }

    fn submit(&self, sender: &str, command: &str, body: &Value) -> Value {
        serde_json::from_slice(&self.submit_raw(sender, command, body.to_string().as_bytes())).unwrap()
    }

    /// Uses the fresh store once (a request for an account that does not exist, from a requester of its own), so that
    /// a burst that follows races on the account it targets, not on creating the data directory: processes that open
    /// a fresh data directory at the same moment can fail today, one finding `airlock.key` created but still empty (or
    /// "File exists"), another `database is locked` while switching a new file to WAL. That is a separate defect.
    fn warm_up(&self) {
        self.warmed_up.call_once(|| {
            let body = request_body("warm-up", "no-such-account", reset_password(), "warming up", json!({}));
            let reply = self.submit("intake:warm-up", "request_recovery", &body);
            assert_eq!(reply["status"], "received", "{reply}");
        });
    }
}

impl Driver for Store {
    async fn start(accounts: Vec<Value>) -> Store {
        let store = Store { scratch: common::scratch(), printed: Mutex::default(), warmed_up: Once::new(), serves: 0 };
        std::fs::create_dir_all(store.data()).unwrap();
        let path = store.data().join("accounts.json");
        std::fs::write(&path, json!({ "version": 1, "accounts": accounts }).to_string()).unwrap();
        let output = store.airlock(&["directory", "import", path.to_str().unwrap()]);
        assert!(output.status.success(), "import failed: {}", String::from_utf8_lossy(&output.stderr));
        store
    }

    fn data(&self) -> PathBuf {
        self.scratch.path().join("data")
    }

    fn airlock(&self, args: &[&str]) -> Output {
        let output = self.command().args(args).output().unwrap();
        self.keep(format!("airlock {}", args.join(" ")), &output);
        output
    }

    async fn send_raw(&self, sender: &str, command: &str, body: &[u8]) -> Vec<u8> {
        self.submit_raw(sender, command, body)
    }

    /// Every body at once, each as its own `airlock submit` process.
    async fn burst(&self, sender: &str, command: &str, bodies: &[Value]) -> Vec<Value> {
        self.warm_up();
        std::thread::scope(|scope| {
            let handles: Vec<_> =
                bodies.iter().map(|body| scope.spawn(move || self.submit(sender, command, body))).collect();
            handles.into_iter().map(|handle| handle.join().unwrap()).collect()
        })
    }

    /// The case's status in the projection (no command prints it to the desk).
    async fn status(&self, case_id: &str) -> String {
        self.case(case_id).status
    }

    async fn query(&self, _asker: &str, _case_id: &str) -> Option<Value> {
        None
    }

    async fn dead_letters(&self) -> Option<Vec<DeadLetter>> {
        None
    }

    async fn settle(&self) {}

    /// At once: `airlock submit` sent the code before it answered.
    async fn code_for(&self, case_id: &str) -> String {
        let sent = self.messages_of(case_id);
        let body = sent.iter().rev().find_map(|message| code_in(&message.body));
        body.unwrap_or_else(|| panic!("no code was sent for {case_id}: {sent:?} {:?}", self.timeline(case_id)))
    }

    /// `airlock serve` on the store, its clock run ahead, without the web page, until `done`; then stopped (SIGTERM),
    /// so that the commands that follow run at the real time again.
    async fn run_ahead(&mut self, clock_ahead: &str, what: &str, done: impl AsyncFn(&Self) -> bool) {
        self.serves += 1;
        let log = self.scratch.path().join(format!("serve-{}.log", self.serves));
        let serve = ServeProcess::start_embedded(&self.data(), &log, &[], &[("AIRLOCK_CLOCK_AHEAD", clock_ahead)]);
        let this = &*self;
        common::wait_until(|| done(this), what).await;
        let stopped = serve.stop();
        assert!(stopped.success(), "serve did not stop cleanly ({stopped}):\n{}", self.log());
    }

    /// `airlock rollback CASE --reason REASON`.
    async fn roll_back(&self, case_id: &str, reason: &str) {
        let output = self.airlock(&["rollback", case_id, "--reason", reason]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    }

    fn audit_verify(&self) -> Output {
        self.airlock(&["audit", "verify"])
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.path().join(format!("serve-{}.log", self.serves))).unwrap_or_default()
    }

    /// Searches what every command printed, `airlock outbox`, serve's logs and every file of the data directory (the
    /// event log, the projection) but the directory's own database (the owner's outbox) and the key file for every
    /// code an owner received and every one of `secrets`.
    async fn finish(self, secrets: &[String]) {
        let mut secrets = secrets.to_vec();
        secrets.extend(self.messages().iter().filter_map(|message| code_in(&message.body)));
        let outbox = self.airlock(&["outbox", "--json"]);
        assert!(outbox.status.success(), "{}", String::from_utf8_lossy(&outbox.stderr));
        let mut places = std::mem::take(&mut *self.printed.lock().unwrap());
        // The search must be able to fail: every reply the test read is among the places searched.
        assert!(places.iter().any(|(place, _)| place.starts_with("airlock submit")), "no reply was kept");
        for entry in std::fs::read_dir(self.data()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with("directory.db") && name != "airlock.key" {
                places.push((name, std::fs::read(&path).unwrap()));
            }
        }
        for serve in 1..=self.serves {
            let log = std::fs::read_to_string(self.scratch.path().join(format!("serve-{serve}.log"))).unwrap();
            places.push((format!("serve-{serve}.log"), without_timestamps(&log).into_bytes()));
        }
        // And the search finds a code where it is: in the owner's outbox, in directory.db (or its write-ahead log).
        let mut mailbox = std::fs::read(self.data().join("directory.db")).unwrap();
        mailbox.extend(std::fs::read(self.data().join("directory.db-wal")).unwrap_or_default());
        assert_only_in_mailbox(&secrets, &places, &mailbox);
    }
}
