//! NATS plumbing shared by the JetStream backend, the intake consumer, the projector and the tests: connecting with
//! the retry behaviour airlock wants, and running local servers (`server`).

pub mod server;

use std::time::Duration;

/// How long a first connection may take before startup fails with a clear error.
const CONNECT_TIMEOUT_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
#[error("cannot reach NATS at {url}: {reason}")]
pub struct ConnectError {
    pub url: String,
    pub reason: String,
}

/// Connects to `url`, which may list several servers of a cluster separated by commas. The first connection must
/// succeed within `CONNECT_TIMEOUT_MS` (a wrong URL is a startup error, not a silent hang); after that the client
/// reconnects by itself, forever, to any listed (or discovered) server whenever its server goes away.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, ConnectError> {
    let servers: Vec<&str> = url.split(',').map(str::trim).filter(|server| !server.is_empty()).collect();
    let options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .max_reconnects(None);
    let connecting = options.connect(servers);
    match tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connecting).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(ConnectError { url: url.to_string(), reason: error.to_string() }),
        Err(_) => Err(ConnectError {
            url: url.to_string(),
            reason: format!("no connection within {CONNECT_TIMEOUT_MS} ms (is nats-server running there?)"),
        }),
    }
}
