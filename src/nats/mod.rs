//! NATS plumbing shared by the JetStream backend, the intake consumer, the projector and the tests: connecting with
//! the retry behaviour airlock wants, and running local servers (`server`).

pub mod permissions;
pub mod server;

use std::time::Duration;

/// How long a first connection may take before startup fails with a clear error.
const CONNECT_TIMEOUT_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Named with the flag it came from (`--nats`), and, when the server refused the credentials, the flag that gives
    /// them (`--nats-nkey`).
    #[error("--nats: cannot reach NATS at {url}: {reason}{}", credentials_hint(reason))]
    Unreachable { url: String, reason: String },
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// Server URLs as an error or a log line may show them: a user and password written into a URL
/// (`nats://user:pass@host`) become `***`, whatever else the URL holds.
pub fn shown_urls(urls: &str) -> String {
    urls.split(',')
        .map(|server| {
            let server = server.trim();
            let Some(at) = server.rfind('@') else { return server.to_string() };
            let start = server.find("://").map_or(0, |scheme| scheme + 3);
            match start <= at {
                true => format!("{}***{}", &server[..start], &server[at..]),
                false => server.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What to add to a refused connection: which flag gives the credentials the server wants.
fn credentials_hint(reason: &str) -> &'static str {
    match reason.contains("authorization violation") || reason.contains("authentication") {
        true => {
            " (the server wants a user: give its nkey seed file with --nats-nkey, as `airlock nats-config` wrote it)"
        }
        false => "",
    }
}

/// A NATS user's nkey, read from the seed file `airlock nats-config` wrote. The seed is a secret: it shows in no
/// `Debug`, no error and no log; the public key names the user and its private inbox.
pub struct Identity {
    seed: String,
    pub public_key: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Identity").field("public_key", &self.public_key).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// (`error`, not `source`: the reason is in the message, and a source would print it a second time in a chain.)
    #[error("--nats-nkey: cannot read the nkey seed file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error(
        "--nats-nkey: {path} does not hold a NATS user nkey seed (one line starting with SU, as `airlock nats-config` \
         writes)"
    )]
    NotASeed { path: String },
}

impl Identity {
    /// Reads a seed file: the first line that holds a user seed (lines starting with `#` are comments).
    pub fn load(path: &std::path::Path) -> Result<Identity, IdentityError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| IdentityError::Read { path: shown.clone(), error })?;
        let seed = text.lines().map(str::trim).find(|line| line.starts_with("SU")).unwrap_or_default();
        let pair = nkeys::KeyPair::from_seed(seed).map_err(|_| IdentityError::NotASeed { path: shown.clone() })?;
        Ok(Identity { seed: seed.to_string(), public_key: pair.public_key() })
    }

    /// The private inbox this user's replies come to (`_INBOX.<public key>`).
    pub fn inbox_prefix(&self) -> String {
        permissions::inbox_prefix(&self.public_key)
    }
}

/// Connects to `url` with no credentials; see `connect_as`.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, ConnectError> {
    connect_as(url, name, None).await
}

/// Connects as the holder of the seed in `seed_file` (`--nats-nkey`), or with no credentials without one.
pub async fn connect_seeded(
    url: &str,
    name: &str,
    seed_file: Option<&std::path::Path>,
) -> Result<async_nats::Client, ConnectError> {
    let identity = seed_file.map(Identity::load).transpose()?;
    connect_as(url, name, identity.as_ref()).await
}

/// Connects to `url`, which may list several servers of a cluster separated by commas, as `identity` when given (its
/// nkey, and its private inbox prefix). The first connection must succeed within `CONNECT_TIMEOUT_MS` (a wrong URL
/// is a startup error, not a silent hang); after that the client reconnects by itself, forever, to any listed (or
/// discovered) server whenever its server goes away.
pub async fn connect_as(
    url: &str,
    name: &str,
    identity: Option<&Identity>,
) -> Result<async_nats::Client, ConnectError> {
    let servers: Vec<&str> = url.split(',').map(str::trim).filter(|server| !server.is_empty()).collect();
    let who = name.to_string();
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .max_reconnects(None)
        .event_callback(move |event| {
            let who = who.clone();
            async move { log_event(&who, event) }
        });
    if let Some(identity) = identity {
        options = options.nkey(identity.seed.clone()).custom_inbox_prefix(identity.inbox_prefix());
    }
    let connecting = options.connect(servers);
    match tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connecting).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(ConnectError::Unreachable { url: shown_urls(url), reason: error.to_string() }),
        Err(_) => Err(ConnectError::Unreachable {
            url: shown_urls(url),
            reason: format!("no connection within {CONNECT_TIMEOUT_MS} ms (is nats-server running there?)"),
        }),
    }
}

/// What the connection tells about itself, in the log: losing the server is a warning (commands wait, `/readyz` says
/// not ready), getting it back is news, and a permission the broker refused names the subject (never a payload).
fn log_event(connection: &str, event: async_nats::Event) {
    match event {
        async_nats::Event::Disconnected => {
            tracing::warn!(connection, "NATS connection lost; reconnecting (commands wait until it is back)")
        }
        async_nats::Event::Connected => tracing::info!(connection, "NATS connection (re)established"),
        async_nats::Event::ServerError(error) => {
            tracing::warn!(connection, %error, "the NATS server refused something");
            let text = error.to_string();
            if text.to_ascii_lowercase().contains("permissions violation") {
                refusals().send_replace(Some(text));
            }
        }
        async_nats::Event::ClientError(error) => tracing::warn!(connection, %error, "NATS client error"),
        async_nats::Event::SlowConsumer(subscription) => {
            tracing::warn!(connection, subscription, "a NATS subscription is too slow; messages were dropped")
        }
        async_nats::Event::LameDuckMode | async_nats::Event::Draining | async_nats::Event::Closed => {
            tracing::info!(connection, ?event, "NATS connection state")
        }
    }
}

/// The last permission violation the NATS server reported to a connection of this process.
fn refusals() -> &'static tokio::sync::watch::Sender<Option<String>> {
    static REFUSALS: std::sync::OnceLock<tokio::sync::watch::Sender<Option<String>>> = std::sync::OnceLock::new();
    REFUSALS.get_or_init(|| tokio::sync::watch::channel(None).0)
}

/// The next permission violation the NATS server reports to any connection of this process after this call, as the
/// server worded it (it names the subject, never a payload). A one-shot command (`airlock halt --nats`, a read) races
/// its request against it, so that a subject its key may not use fails at once, named, instead of after a timeout.
/// Call it before sending, so the refusal cannot come first.
pub fn next_refusal() -> impl std::future::Future<Output = String> + Send + 'static {
    let mut receiver = refusals().subscribe();
    async move {
        loop {
            if receiver.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            if let Some(text) = receiver.borrow_and_update().clone() {
                return text;
            }
        }
    }
}

/// What a command says when the broker refused its key a subject.
pub fn refused_by_broker(text: &str) -> String {
    format!(
        "the NATS server refused this key: {text}. The key's permissions are another actor's or another role's: use \
         your own key, under the name `airlock nats-config` gave it (seeds/<role>.<id>.nk). Nothing was confirmed; \
         if the broker let the command itself through, it may still be carried out: look before sending it again"
    )
}

#[cfg(test)]
mod tests {
    // Proves a password (or a token) written into a server URL never reaches an error or a log line, in any of a
    // cluster's URLs, with or without a scheme, and that a URL without one is shown as it is.
    #[test]
    fn a_url_is_shown_without_its_credentials() {
        assert_eq!(super::shown_urls("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            super::shown_urls("nats://a:s3cret@n1:4222, tls://tok3n@n2:4222,n3:4222"),
            "nats://***@n1:4222,tls://***@n2:4222,n3:4222"
        );
        assert_eq!(super::shown_urls("user:p@ss@host:4222"), "***@host:4222");
        for shown in [super::shown_urls("nats://a:s3cret@n1:4222"), super::shown_urls("user:p@ss@host:4222")] {
            assert!(!shown.contains("s3cret") && !shown.contains("p@ss"), "{shown}");
        }
    }
}
