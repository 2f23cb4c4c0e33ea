//! The HTTP directory adapter (issue 18): airlock's side of the protocol in `docs/directory-adapter.md`, so that a
//! company connects its own user database or identity provider by running a small signed HTTP service instead of
//! forking airlock. Every request is signed per Standard Webhooks (HMAC-SHA256, one signature per configured secret,
//! for key rotation); effects carry `Idempotency-Key` = the effect id; 429, 5xx, timeouts and connection failures are
//! retried with capped, jittered backoff honouring `Retry-After`; redirects are refused; answers are bounded in size
//! and checked (an account other than the one asked for is an error, never a change).

use crate::clock::Clock;
use crate::core::account::{AccountSnapshot, Destination, DestinationKind, HighValueReason, RiskClass};
use crate::core::action::RecoveryAction;
use crate::core::command::{Change, SecondFactorCheck};
use crate::core::ids::{AccountId, DestinationId, EffectId, UnixMs};
use crate::directory::{AccountDirectory, AccountPage, Capabilities, DirectoryError};
use crate::projection::views::rfc3339;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How long one request may take, connecting included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times a call is sent in all before it fails (the case then waits for the next timer tick).
const ATTEMPTS_MAX: usize = 4;
/// The longest pause between two attempts, `Retry-After` included.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// The largest answer read; anything longer is an error.
const ANSWER_BYTES_MAX: usize = 256 * 1024;
/// How much of an adapter's unexpected answer an error quotes.
const QUOTED_CHARS_MAX: usize = 200;

/// A signing secret, `whsec_` and base64 as Standard Webhooks writes it. The bytes never leave this module.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret(***)")
    }
}

impl Secret {
    pub fn parse(text: &str) -> Result<Secret, String> {
        let encoded = text.trim().strip_prefix("whsec_").ok_or("a secret starts with whsec_")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| "a secret is whsec_ followed by base64".to_string())?;
        if bytes.len() < 24 {
            return Err("a secret holds at least 24 bytes".to_string());
        }
        Ok(Secret(bytes))
    }

    /// The secrets of a file, one per line (blank lines and `#` comments skipped). The file must be readable by its
    /// owner only, and hold at least one; errors name the line, never a secret.
    pub fn load_file(path: &std::path::Path) -> Result<Vec<Secret>, String> {
        let text = super::read_private_file(path)?;
        let mut secrets = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            secrets
                .push(Secret::parse(line).map_err(|error| format!("{} line {}: {error}", path.display(), number + 1))?);
        }
        if secrets.is_empty() {
            return Err(format!("{} holds no secret", path.display()));
        }
        Ok(secrets)
    }
}

/// The `webhook-signature` header for one request: `v1,<base64 HMAC-SHA256>` per secret, space-separated.
pub fn signature(secrets: &[Secret], id: &str, timestamp: u64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&secret.0).expect("HMAC takes any key length");
            mac.update(format!("{id}.{timestamp}.").as_bytes());
            mac.update(body);
            format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub struct HttpDirectory {
    base: url::Url,
    client: reqwest::Client,
    secrets: Vec<Secret>,
    capabilities: Capabilities,
    clock: Arc<dyn Clock>,
}

/// An account as the adapter answers it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountAnswer {
    account_id: String,
    #[serde(default)]
    high_value_reason: Option<String>,
    #[serde(default)]
    risk_flags: Vec<String>,
    destinations: Vec<DestinationAnswer>,
    #[serde(default)]
    totp_enrolled_at: Option<String>,
    /// The identity provider cannot tell whether the account has an authenticator (issue 18, item 6).
    #[serde(default)]
    authenticator_unknown: bool,
    #[serde(default)]
    last_credential_change: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationAnswer {
    id: String,
    kind: String,
    address: String,
    #[serde(default)]
    verified_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapabilitiesAnswer {
    version: u32,
    hold: bool,
    verify_second_factor: bool,
    revoke_sessions: bool,
    per_factor_ages: bool,
}

/// A page of accounts as the adapter answers it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageAnswer {
    accounts: Vec<AccountAnswer>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct ChangesAnswer {
    changes: Vec<Change>,
}

/// What one call came to, after its retries.
pub(crate) struct Answer {
    pub(crate) status: reqwest::StatusCode,
    /// The `ETag` header, if any.
    pub(crate) etag: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// The adapter's base URL, checked: `https://`, or `http://` to a loopback address only; no user or password in it
/// (airlock signs its requests instead); its path ending in `/`, so that `join` keeps it (https://host/airlock ->
/// https://host/airlock/v1/..., not https://host/v1/...). The error names the rule, never the URL (it may hold a
/// password).
pub fn adapter_url(url: &str) -> Result<url::Url, String> {
    let mut base = url::Url::parse(url).map_err(|error| format!("directory_url: {error}"))?;
    if !base.username().is_empty() || base.password().is_some() {
        return Err("directory_url holds a user or password: credentials go in their own file; remove them".into());
    }
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    match base.scheme() {
        "https" => Ok(base),
        "http" if loopback(&base) => Ok(base),
        _ => Err("directory_url: use https:// (plain http:// only to a loopback address)".to_string()),
    }
}

/// An endpoint airlock posts signed requests to (the SMS provider, a webhook receiver), checked: `https://`, or
/// `http://` to a loopback address only, without a user, password, query or fragment (a token there would show in
/// logs; airlock signs its requests with `secrets_flag` instead). The error names the rule and `flag`, never the URL.
pub fn signed_endpoint_url(flag: &str, secrets_flag: &str, url: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|error| format!("{flag}: {error}"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.query().is_some() {
        return Err(format!(
            "{flag} holds a user, a password or a query (a token?): airlock signs its requests ({secrets_flag}); \
             remove them"
        ));
    }
    if parsed.fragment().is_some() {
        return Err(format!("{flag} holds a fragment (#...): remove it"));
    }
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback(&parsed) => Ok(parsed),
        _ => Err(format!("{flag}: use https:// (plain http:// only to a loopback address)")),
    }
}

/// Whether `url` names a loopback address (or `localhost`), where plain `http://` is allowed.
pub(crate) fn loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

impl HttpDirectory {
    /// Connects to the adapter at `url` (`https://`, or `http://` to a loopback address only) and reads what it can
    /// do. Fails with the reason when the URL, the secrets or the adapter's answer are not usable.
    pub async fn connect(url: &str, secrets: Vec<Secret>, clock: Arc<dyn Clock>) -> Result<HttpDirectory, String> {
        let base = adapter_url(url)?;
        if secrets.is_empty() {
            return Err("the directory adapter needs at least one signing secret".to_string());
        }
        let client = client()?;
        let capabilities = Capabilities::ALL;
        let mut directory = HttpDirectory { base, client, secrets, capabilities, clock };
        let answer = directory
            .call("v1/capabilities", &crate::service::new_id("capabilities"), json!({}), None)
            .await
            .map_err(|error| error.to_string())?;
        let read: CapabilitiesAnswer =
            directory.expect_json(&answer, "capabilities").map_err(|error| error.to_string())?;
        if read.version != 1 {
            return Err(format!("the directory adapter speaks protocol version {}; airlock speaks 1", read.version));
        }
        directory.capabilities = Capabilities {
            hold: read.hold,
            verify_second_factor: read.verify_second_factor,
            revoke_sessions: read.revoke_sessions,
            per_factor_ages: read.per_factor_ages,
        };
        Ok(directory)
    }

    fn url(&self, path: &str) -> Result<url::Url, DirectoryError> {
        self.base.join(path).map_err(|error| DirectoryError::Corrupt(format!("cannot build a URL for {path}: {error}")))
    }

    /// Sends one signed `POST` of `body` with `"target"` (the path it is sent to) added, so that the signature binds
    /// the request to its account, case and effect: a captured request cannot be replayed at another path. Sent again
    /// after a 429, a 5xx, a timeout or a failed connection, with the same id; returns the final answer (any status),
    /// read up to `ANSWER_BYTES_MAX`.
    async fn call(
        &self,
        path: &str,
        id: &str,
        mut body: Value,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, DirectoryError> {
        let url = self.url(path)?;
        body["target"] = Value::String(url.path().to_string());
        let bytes = serde_json::to_vec(&body).expect("a body serializes");
        send(ADAPTER, || {
            // The wall clock, not the service's: the adapter compares the timestamp with its own clock.
            let timestamp = crate::clock::Clock::now(&crate::clock::SystemClock).0 / 1_000;
            let request = self
                .client
                .post(url.clone())
                .header("webhook-id", id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature(&self.secrets, id, timestamp, &bytes))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.clone());
            match idempotency_key {
                Some(key) => request.header("Idempotency-Key", key),
                None => request,
            }
        })
        .await
        .and_then(checked)
    }

    /// The answer's JSON as `T`, if it is a 2xx carrying it; otherwise an error that quotes the answer (bounded).
    fn expect_json<T: serde::de::DeserializeOwned>(&self, answer: &Answer, what: &str) -> Result<T, DirectoryError> {
        if !answer.status.is_success() {
            return Err(unexpected(answer, what));
        }
        // The error's place and kind, never the value it quotes (an answer may hold an address or a code).
        serde_json::from_slice(&answer.body).map_err(|error| {
            DirectoryError::Corrupt(format!(
                "the directory adapter's {what} is not the documented JSON ({:?} error at line {} column {})",
                error.classify(),
                error.line(),
                error.column()
            ))
        })
    }

    fn account_path(account_id: &AccountId, rest: &str) -> String {
        format!("v1/accounts/{}{rest}", encode(account_id.as_str()))
    }

    /// An effect or a reversal: applied once per effect id, `409 held` while another case holds the account.
    async fn effect(
        &self,
        account_id: &AccountId,
        kind: &str,
        effect_id: &EffectId,
        body: Value,
    ) -> Result<Vec<Change>, DirectoryError> {
        let path = Self::account_path(account_id, &format!("/{kind}/{}", encode(effect_id.as_str())));
        let answer = self.call(&path, effect_id.as_str(), body, Some(effect_id.as_str())).await?;
        match answer.status.as_u16() {
            404 => Err(DirectoryError::NoSuchAccount(account_id.clone())),
            409 => {
                let case = serde_json::from_slice::<Value>(&answer.body).ok().and_then(|value| {
                    let case = value["error"]["case"].as_str().unwrap_or_default();
                    let case =
                        if crate::core::text::check_identifier("case", case).is_ok() { case } else { "another case" };
                    (value["error"]["code"] == "held").then(|| case.to_string())
                });
                let answered = serde_json::from_slice::<Value>(&answer.body).unwrap_or_default();
                if answered["error"]["code"] == "changed" {
                    // Named by id only, each checked: an answer never puts an address on the case.
                    let changes: Vec<String> = (answered["error"]["changes"].as_array().into_iter().flatten())
                        .filter_map(Value::as_str)
                        .filter(|id| crate::core::text::check_identifier("destination id", id).is_ok())
                        .take(20)
                        .map(str::to_string)
                        .collect();
                    return Err(DirectoryError::Changed(format!(
                        "the directory adapter says the account changed: {}",
                        changes.join(", ")
                    )));
                }
                match case {
                    Some(case) => Err(DirectoryError::Held { account: account_id.clone(), case }),
                    None => Err(DirectoryError::Refused(quote(&answer))),
                }
            }
            400..=499 => Err(DirectoryError::Refused(quote(&answer))),
            _ => Ok(self.expect_json::<ChangesAnswer>(&answer, kind)?.changes),
        }
    }
}

/// One path segment: every byte but letters, digits, `-`, `_` and `~` percent-encoded (dots too, so that an id of
/// `.` or `..` cannot name another route).
pub(crate) fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// An answer that says the call itself went wrong, whatever was asked: a 404 that is not the documented "no such
/// account" (a wrong directory_url, a proxy), and 401/403 (a secret the adapter does not hold, a clock off by more
/// than five minutes). Each is a misconfiguration to fix, never an answer about the account.
fn checked(answer: Answer) -> Result<Answer, DirectoryError> {
    let code = serde_json::from_slice::<Value>(&answer.body).ok().map(|value| value["error"]["code"].clone());
    match answer.status.as_u16() {
        404 if code != Some(Value::String("no_such_account".into())) => Err(DirectoryError::Unavailable(
            "the directory adapter has no such call (404): check directory_url".to_string(),
        )),
        401 | 403 => Err(DirectoryError::Unavailable(format!(
            "the directory adapter refused airlock's signature ({}): check that it holds a secret of \
             directory_secrets and that both clocks are right",
            answer.status
        ))),
        _ => Ok(answer),
    }
}

/// Who `send` names in its errors.
const ADAPTER: &str = "the directory adapter";

/// Sends the request `make` builds, again after a 429, a 5xx, a timeout or a failed connection (`ATTEMPTS_MAX` in
/// all, capped jittered backoff honouring `Retry-After`); returns the final answer (any other status), read up to
/// `ANSWER_BYTES_MAX`. A redirect is an error: airlock never follows one. `who` names the server in errors.
pub(crate) async fn send(who: &str, make: impl Fn() -> reqwest::RequestBuilder) -> Result<Answer, DirectoryError> {
    send_with(who, ATTEMPTS_MAX, make).await
}

/// `send`, with at most `attempts` attempts.
pub(crate) async fn send_with(
    who: &str,
    attempts: usize,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Answer, DirectoryError> {
    let attempts = attempts.max(1);
    let mut last_failure = String::new();
    for attempt in 0..attempts {
        let retry_after = match make().send().await {
            Ok(response) if retried(response.status()) => {
                last_failure = format!("it answered {}", response.status());
                retry_after(&response)
            }
            Ok(response) => return read_answer(who, response).await,
            Err(error) => {
                last_failure = without_url(&error, "the adapter");
                None
            }
        };
        if attempt + 1 < attempts {
            tokio::time::sleep(retry_after.unwrap_or_else(|| backoff(attempt)).min(BACKOFF_MAX)).await;
        }
    }
    Err(DirectoryError::Unavailable(format!("{who} did not answer after {attempts} attempts: {last_failure}")))
}

/// An HTTP client for a directory: no redirects, every request bounded in time.
pub(crate) fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|error| format!("cannot build the HTTP client: {error}"))
}

fn retried(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The pause a `Retry-After` of seconds asks for.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(seconds))
}

/// Exponential from 100 ms, with full jitter, so that airlock processes retrying together spread out.
fn backoff(attempt: usize) -> Duration {
    let ceiling_ms = 100u64 << attempt.min(5);
    Duration::from_millis(rand::random_range(ceiling_ms / 2..=ceiling_ms))
}

/// A request error without the URL (it may carry an account id in its path: the log needs the kind, not the data).
pub(crate) fn without_url(error: &reqwest::Error, who: &str) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    // The error's text without its URL: the path may carry an account id.
    let text = error.to_string();
    let text = match error.url() {
        Some(url) => text.replace(url.as_str(), who),
        None => text,
    };
    format!("{kind}: {text}")
}

async fn read_answer(who: &str, mut response: reqwest::Response) -> Result<Answer, DirectoryError> {
    let status = response.status();
    if status.is_redirection() {
        return Err(DirectoryError::Corrupt(format!("{who} redirected ({status}); airlock does not follow")));
    }
    let etag = response.headers().get(reqwest::header::ETAG).and_then(|value| value.to_str().ok()).map(str::to_string);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| {
        DirectoryError::Unavailable(format!("the answer broke off: {}", without_url(&error, "the adapter")))
    })? {
        body.extend_from_slice(&chunk);
        if body.len() > ANSWER_BYTES_MAX {
            return Err(DirectoryError::Corrupt(format!("{who}'s answer is longer than {ANSWER_BYTES_MAX} bytes")));
        }
    }
    Ok(Answer { status, etag, body })
}

/// The start of an answer, printable, for an error.
pub(crate) fn quote(answer: &Answer) -> String {
    let text = String::from_utf8_lossy(&answer.body);
    let start: String = text.chars().take(QUOTED_CHARS_MAX).collect();
    format!("{}: {}", answer.status, crate::core::text::for_terminal(&start))
}

fn unexpected(answer: &Answer, what: &str) -> DirectoryError {
    DirectoryError::Corrupt(format!("the directory adapter answered its {what} with {}", quote(answer)))
}

/// An RFC 3339 time (any offset), never later than `now`: a directory cannot date a factor in the future.
pub(crate) fn parse_time(text: &str, field: &str, now: UnixMs) -> Result<UnixMs, DirectoryError> {
    let at = chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|_| DirectoryError::Corrupt(format!("{field} is not an RFC 3339 time")))?;
    let ms =
        u64::try_from(at.timestamp_millis()).map_err(|_| DirectoryError::Corrupt(format!("{field} is before 1970")))?;
    Ok(UnixMs(ms.min(now.0)))
}

fn high_value(reason: &str) -> Result<HighValueReason, DirectoryError> {
    Ok(match reason {
        "admin" => HighValueReason::Admin,
        "creator" => HighValueReason::Creator,
        "finance" => HighValueReason::Finance,
        "government" => HighValueReason::Government,
        "vip" => HighValueReason::Vip,
        other => {
            return Err(DirectoryError::Corrupt(format!(
                "high_value_reason {:?} is not admin, creator, finance, government or vip",
                crate::core::text::for_terminal(other)
            )));
        }
    })
}

impl HttpDirectory {
    /// The adapter's account as airlock's snapshot. A destination's age is the adapter's only where it says it
    /// keeps one per destination; otherwise the destination counts as added now, so it gets no code.
    fn snapshot_of(&self, asked: &AccountId, read: AccountAnswer) -> Result<AccountSnapshot, DirectoryError> {
        if read.account_id != asked.as_str() {
            return Err(DirectoryError::Corrupt(format!(
                "asked for account {asked}, the directory adapter answered another account"
            )));
        }
        let now = self.clock.now();
        let mut destinations = Vec::with_capacity(read.destinations.len());
        for destination in read.destinations {
            let kind = match destination.kind.as_str() {
                "email" => DestinationKind::Email,
                "phone" => DestinationKind::Phone,
                _ => return Err(DirectoryError::Corrupt("a destination's kind is neither email nor phone".into())),
            };
            crate::core::text::check_identifier("destination id", &destination.id)
                .map_err(|rejection| DirectoryError::Corrupt(rejection.to_string()))?;
            if destinations.iter().any(|seen: &Destination| seen.id.as_str() == destination.id) {
                return Err(DirectoryError::Corrupt("two destinations have the same id".into()));
            }
            let trusted_since = match (&destination.verified_at, self.capabilities.per_factor_ages) {
                (Some(at), true) => parse_time(at, "verified_at", now)?,
                (None, _) | (Some(_), false) => now,
            };
            destinations.push(Destination {
                id: DestinationId::new(destination.id),
                kind,
                address: destination.address,
                trusted_since,
                revoked: false,
            });
        }
        let risk_class = match read.high_value_reason.as_deref() {
            Some(reason) => RiskClass::HighValue(high_value(reason)?),
            None => RiskClass::Standard,
        };
        Ok(AccountSnapshot {
            account_id: asked.clone(),
            known: true,
            risk_class,
            destinations,
            totp_enrolled_since: read
                .totp_enrolled_at
                .as_deref()
                .map(|at| parse_time(at, "totp_enrolled_at", now))
                .transpose()?,
            // An enrolment time says there is one: "unknown" with it is the adapter contradicting itself, and the
            // stricter reading (there is one) is kept.
            authenticator_unknown: read.authenticator_unknown && read.totp_enrolled_at.is_none(),
            last_credential_change: read
                .last_credential_change
                .as_deref()
                .map(|at| parse_time(at, "last_credential_change", now))
                .transpose()?,
            risk_flags: read.risk_flags,
        })
    }
}

#[async_trait::async_trait]
impl AccountDirectory for HttpDirectory {
    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn snapshot(&self, account_id: &AccountId) -> Result<AccountSnapshot, DirectoryError> {
        let path = Self::account_path(account_id, "/read");
        let answer = self.call(&path, &crate::service::new_id("read"), json!({}), None).await?;
        if answer.status == reqwest::StatusCode::NOT_FOUND {
            return Ok(AccountSnapshot::unknown(account_id.clone()));
        }
        let read: AccountAnswer = self.expect_json(&answer, "account")?;
        self.snapshot_of(account_id, read)
    }

    async fn list(&self, cursor: Option<&str>) -> Result<AccountPage, DirectoryError> {
        let id = crate::service::new_id("list");
        let answer = self.call("v1/accounts/list", &id, json!({ "cursor": cursor }), None).await?;
        let page: PageAnswer = self.expect_json(&answer, "account list")?;
        let mut accounts = Vec::with_capacity(page.accounts.len());
        for read in page.accounts {
            crate::core::text::check_identifier("account id", &read.account_id)
                .map_err(|rejection| DirectoryError::Corrupt(rejection.to_string()))?;
            let id = AccountId::new(read.account_id.clone());
            accounts.push(self.snapshot_of(&id, read)?);
        }
        if page.next.as_deref() == cursor && cursor.is_some() {
            return Err(DirectoryError::Corrupt("the directory adapter's account list did not move on".into()));
        }
        Ok(AccountPage { accounts, next: page.next })
    }

    async fn verify_totp(
        &self,
        account_id: &AccountId,
        typed: &str,
        now: UnixMs,
    ) -> Result<SecondFactorCheck, DirectoryError> {
        let path = Self::account_path(account_id, "/second-factor/verify");
        let body = json!({ "code": typed, "at": rfc3339(now) });
        // A retry carries the same id and key: an adapter that used the code up on the first attempt answers the same
        // result again, instead of `already_used` for the right code.
        let id = crate::service::new_id("verify");
        let answer = self.call(&path, &id, body, Some(&id)).await?;
        if answer.status == reqwest::StatusCode::NOT_FOUND {
            return Ok(SecondFactorCheck::Invalid);
        }
        let read: Value = self.expect_json(&answer, "second-factor check")?;
        match read["result"].as_str() {
            Some("valid") => Ok(SecondFactorCheck::Valid),
            Some("invalid") => Ok(SecondFactorCheck::Invalid),
            Some("already_used") => Ok(SecondFactorCheck::AlreadyUsed),
            _ => Err(DirectoryError::Corrupt("a second-factor result is valid, invalid or already_used".into())),
        }
    }

    async fn set_password(
        &self,
        key: &str,
        account_id: &AccountId,
        password: &crate::directory::Password,
        now: UnixMs,
    ) -> Result<Vec<Change>, DirectoryError> {
        let body = json!({ "password": password.reveal_to_directory(), "at": rfc3339(now) });
        let changes = self.effect(account_id, "passwords", &EffectId::new(key), body).await;
        // An adapter may quote the request in its answer, escaped in ways no masking catches: the answer to a password
        // is never quoted, only said.
        changes.map_err(|error| match error {
            DirectoryError::Refused(_) => {
                DirectoryError::Refused("the directory adapter did not accept the new password".into())
            }
            DirectoryError::Corrupt(_) => DirectoryError::Corrupt(
                "the directory adapter answered the new password with an unexpected answer".into(),
            ),
            other => other,
        })
    }

    async fn hold(&self, account_id: &AccountId, case_id: &str, _now: UnixMs) -> Result<(), DirectoryError> {
        let path = Self::account_path(account_id, &format!("/holds/{}/hold", encode(case_id)));
        let answer = self.call(&path, &crate::service::new_id("hold"), json!({}), None).await?;
        if answer.status.is_success() { Ok(()) } else { Err(unexpected(&answer, "hold")) }
    }

    async fn release(&self, account_id: &AccountId, case_id: &str) -> Result<(), DirectoryError> {
        let path = Self::account_path(account_id, &format!("/holds/{}/release", encode(case_id)));
        let answer = self.call(&path, &crate::service::new_id("release"), json!({}), None).await?;
        if answer.status.is_success() { Ok(()) } else { Err(unexpected(&answer, "release")) }
    }

    async fn execute(
        &self,
        effect_id: &EffectId,
        account_id: &AccountId,
        action: &RecoveryAction,
        seen: &AccountSnapshot,
        now: UnixMs,
    ) -> Result<Vec<Change>, DirectoryError> {
        let action = match action {
            RecoveryAction::ResetPassword => json!({ "type": "reset_password" }),
            RecoveryAction::AddDestination { kind, address } => {
                json!({ "type": "add_destination", "kind": kind.name(), "address": address })
            }
            RecoveryAction::RemoveTotp => json!({ "type": "remove_totp" }),
        };
        // The precondition: the factors the decision saw. The adapter applies the change only if the account still has
        // them (409 `changed` otherwise, and the case goes to people).
        let destinations: Vec<Value> = (seen.destinations.iter())
            .filter(|destination| !destination.revoked)
            .map(|destination| {
                json!({ "id": destination.id.as_str(), "kind": destination.kind.name(), "address": destination.address })
            })
            .collect();
        let seen = json!({ "destinations": destinations, "totp_enrolled": seen.totp_enrolled_since.is_some() });
        self.effect(account_id, "effects", effect_id, json!({ "action": action, "seen": seen, "at": rfc3339(now) }))
            .await
    }

    async fn revert(
        &self,
        effect_id: &EffectId,
        account_id: &AccountId,
        reversal: &[Change],
        executed_at: UnixMs,
        now: UnixMs,
    ) -> Result<Vec<Change>, DirectoryError> {
        let body = json!({ "reversal": reversal, "sessions_since": rfc3339(executed_at), "at": rfc3339(now) });
        self.effect(account_id, "reversals", effect_id, body).await
    }
}
