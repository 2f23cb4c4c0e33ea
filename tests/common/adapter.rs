//! The reference directory adapter (examples/directory-adapter/adapter.py, Python, standard library), started on a
//! loopback port of its own choosing over its own SQLite user table, and read back from that table.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ADAPTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/directory-adapter/adapter.py");

/// The reference adapter, running on a loopback port of its own choosing; stopped by its PID when dropped.
pub struct Adapter {
    pub child: Child,
    pub url: String,
    pub db: PathBuf,
}

impl Drop for Adapter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the adapter holds `password` for `account`: its stored PBKDF2 hash checked by Python's hashlib (the
/// adapter's own), never by airlock's code. `false` when it holds none.
pub fn holds_password(adapter: &Adapter, account: &str, password: &str) -> bool {
    let stored: Option<String> = users(adapter)
        .query_row("SELECT password_hash FROM users WHERE account_id = ?1", [account], |row| row.get(0))
        .unwrap();
    let Some(stored) = stored else { return false };
    assert!(!stored.contains(password), "the adapter keeps the password as text");
    let check = "import hashlib,sys; _, n, salt, digest = sys.argv[1].split('$'); \
         sys.exit(0 if hashlib.pbkdf2_hmac('sha256', sys.argv[2].encode(), bytes.fromhex(salt), int(n)).hex() == digest else 1)";
    Command::new("python3").args(["-c", check, &stored, password]).status().unwrap().success()
}

pub fn rfc3339_ago(hours: u64) -> String {
    let at = std::time::SystemTime::now() - Duration::from_secs(hours * 3_600);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// A secrets file (owner-only) with one fresh secret, and the secret.
pub fn secrets_file(directory: &Path) -> PathBuf {
    use base64::Engine as _;
    let secret: [u8; 32] = rand::random();
    let path = directory.join("directory-secrets");
    let text =
        format!("# airlock signs with this\nwhsec_{}\n", base64::engine::general_purpose::STANDARD.encode(secret));
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    path
}

pub fn start_adapter(directory: &Path, secrets: &Path, accounts: Value, options: &[&str]) -> Adapter {
    let seed = directory.join("seed.json");
    std::fs::write(&seed, accounts.to_string()).unwrap();
    let db = directory.join("users.db");
    let mut child = Command::new("python3")
        .args([ADAPTER, "--db", db.to_str().unwrap(), "--secrets", secrets.to_str().unwrap()])
        .args(["--seed", seed.to_str().unwrap()])
        .args(options)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("the adapter said {line:?}"));
    Adapter { url: url.to_string(), db, child }
}

pub fn users(adapter: &Adapter) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(&adapter.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

pub fn password_version(adapter: &Adapter, account: &str) -> i64 {
    users(adapter)
        .query_row("SELECT password_version FROM users WHERE account_id = ?1", [account], |row| row.get(0))
        .unwrap()
}

pub fn count(adapter: &Adapter, sql: &str, account: &str) -> i64 {
    users(adapter).query_row(sql, [account], |row| row.get(0)).unwrap()
}
