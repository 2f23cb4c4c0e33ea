//! SCIM 2.0 (RFC 7643, RFC 7644) as a directory (issue 18, item 3): any identity provider that serves `/Users` works
//! without an adapter. An account is a SCIM User, named by its `id` (stable: a `userName` can be renamed or reused);
//! its destinations are its `emails` and `phoneNumbers`. SCIM carries no age per address, no authenticator, no hold
//! and no sessions, so the capabilities say none of them: airlock dates addresses in its first-seen ledger, sends no
//! authenticator code, and reads the account again before a change.
//!
//! Every change is a PATCH with `If-Match` = the ETag of the read just before it, and that read must show the factors
//! the decision saw (`seen`): a change made at the identity provider since, or between the read and the write (412),
//! fails the effect to people, never a blind retry. Changes are ensure-state (an address already there is not added
//! again), so a retry after a crash between the write and its answer is safe without idempotency keys, which SCIM
//! lacks. A list is rewritten whole, never through a SCIM filter path, so an address cannot inject filter syntax.

use crate::clock::Clock;
use crate::core::account::{AccountSnapshot, Destination, DestinationKind, RiskClass};
use crate::core::action::RecoveryAction;
use crate::core::command::{Change, SecondFactorCheck};
use crate::core::ids::{AccountId, DestinationId, EffectId, UnixMs};
use crate::directory::http::{Answer, client, encode, quote, send};
use crate::directory::{AccountDirectory, AccountPage, Capabilities, DirectoryError};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Who errors name.
const SCIM: &str = "the SCIM server";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const SCIM_JSON: &str = "application/scim+json";
/// How many times a change is read and written when the account changed between the two (412).
const ROUNDS_MAX: usize = 3;

/// The bearer token airlock presents; never printed.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Token(***)")
    }
}

impl Token {
    /// The token in a file readable by its owner only: its first line that is neither blank nor a `#` comment.
    pub fn load_file(path: &std::path::Path) -> Result<Token, String> {
        let text = super::read_private_file(path)?;
        let token = text.lines().map(str::trim).find(|line| !line.is_empty() && !line.starts_with('#'));
        match token {
            Some(token) if token.bytes().all(|byte| byte.is_ascii_graphic()) => Ok(Token(token.to_string())),
            Some(_) => Err(format!("{}: a bearer token is printable ASCII without spaces", path.display())),
            None => Err(format!("{} holds no token", path.display())),
        }
    }
}

pub struct ScimDirectory {
    base: url::Url,
    client: reqwest::Client,
    token: Token,
    clock: Arc<dyn Clock>,
}

/// A page of users as the server answers it; each user is read on its own, so that one airlock cannot use is left out
/// instead of failing the page.
#[derive(Deserialize)]
struct ListResponse {
    #[serde(default, rename = "totalResults")]
    total_results: Option<usize>,
    #[serde(default, rename = "startIndex")]
    start_index: Option<usize>,
    #[serde(default, rename = "Resources")]
    resources: Vec<Value>,
}

/// A User as the server answers it: only what airlock reads (SCIM resources carry much more).
#[derive(Deserialize)]
struct User {
    id: String,
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    emails: Vec<Value>,
    #[serde(default, rename = "phoneNumbers")]
    phone_numbers: Vec<Value>,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    version: Option<String>,
}

/// A user read for a change: the user and the version to write against.
struct Read {
    user: User,
    etag: Option<String>,
}

impl User {
    /// The values of one multi-valued attribute, with the JSON of each.
    fn values(&self, kind: DestinationKind) -> Vec<(String, &Value)> {
        let list = match kind {
            DestinationKind::Email => &self.emails,
            DestinationKind::Phone => &self.phone_numbers,
        };
        list.iter().filter_map(|item| item["value"].as_str().map(|value| (value.to_string(), item))).collect()
    }
}

/// One address as airlock compares it: an email in lower case, a phone number as written; both trimmed.
fn normalized(kind: DestinationKind, address: &str) -> String {
    match kind {
        DestinationKind::Email => address.trim().to_lowercase(),
        DestinationKind::Phone => address.trim().to_string(),
    }
}

/// A destination's id: SCIM gives multi-valued attributes none, so it is derived from the kind and the address (the
/// same address is the same destination on every read, and an id says nothing of the address).
fn destination_id(kind: DestinationKind, address: &str) -> DestinationId {
    let digest = Sha256::digest(format!("{}\n{}", kind.name(), normalized(kind, address)));
    DestinationId::new(format!("{}-{}", kind.name(), &hex::encode(digest)[..12]))
}

/// A password nobody knows, accepted by the usual password rules (length, upper, lower, digit, symbol). It ends every
/// password known before; the owner sets their own through the link the reset sends.
fn random_password() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("{}aA1!", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

impl ScimDirectory {
    /// The SCIM server at `url` (its base, such as `https://idp.example/scim/v2`; `https://`, or `http://` to a
    /// loopback address only), reached with `token`. Fails with the reason when the URL is not usable or the server
    /// refuses the token.
    pub async fn connect(url: &str, token: Token, clock: Arc<dyn Clock>) -> Result<ScimDirectory, String> {
        let base = super::http::adapter_url(url)?;
        let directory = ScimDirectory { base, client: client()?, token, clock };
        let answer = directory.send(reqwest::Method::GET, "ServiceProviderConfig", None, None).await;
        let answer = answer.map_err(|error| error.to_string())?;
        if !answer.status.is_success() {
            return Err(format!("{SCIM} answered its ServiceProviderConfig with {}", quote(&answer)));
        }
        // Some servers serve their configuration to anyone: the token is checked on a user that does not exist,
        // which a server that takes the token answers 404 and one that refuses it 401 or 403 (`send` says which).
        let probe = format!("Users/airlock-token-check-{}", hex::encode(rand::random::<[u8; 8]>()));
        let answer =
            directory.send(reqwest::Method::GET, &probe, None, None).await.map_err(|error| error.to_string())?;
        if answer.status != reqwest::StatusCode::NOT_FOUND && !answer.status.is_success() {
            return Err(format!("{SCIM} answered a user's read with {}", quote(&answer)));
        }
        Ok(directory)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Answer, DirectoryError> {
        let url = self
            .base
            .join(path)
            .map_err(|error| DirectoryError::Corrupt(format!("cannot build a URL for a SCIM call: {error}")))?;
        let bytes = body.map(|body| serde_json::to_vec(body).expect("a body serializes"));
        let answer = send(SCIM, || {
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .bearer_auth(&self.token.0)
                .header(reqwest::header::ACCEPT, SCIM_JSON);
            if let Some(bytes) = &bytes {
                request = request.header(reqwest::header::CONTENT_TYPE, SCIM_JSON).body(bytes.clone());
            }
            if let Some(etag) = if_match {
                request = request.header(reqwest::header::IF_MATCH, etag);
            }
            request
        })
        .await?;
        match answer.status.as_u16() {
            401 | 403 => Err(DirectoryError::Unavailable(format!(
                "{SCIM} refused airlock's token ({}): check directory_token",
                answer.status
            ))),
            _ => Ok(answer),
        }
    }

    fn user_path(account_id: &AccountId) -> String {
        format!("Users/{}", encode(account_id.as_str()))
    }

    /// The user, with the version to write against; `None` when the server has no such user.
    async fn read(&self, account_id: &AccountId) -> Result<Option<Read>, DirectoryError> {
        let answer = self.send(reqwest::Method::GET, &Self::user_path(account_id), None, None).await?;
        if answer.status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let user: User = scim_json(&answer, "user")?;
        if user.id != account_id.as_str() {
            return Err(DirectoryError::Corrupt(format!(
                "asked for account {account_id}, {SCIM} answered another user"
            )));
        }
        let header = answer.etag.clone();
        let etag = header.or_else(|| user.meta.as_ref().and_then(|meta| meta.version.clone()));
        Ok(Some(Read { user, etag }))
    }

    /// The user as airlock's snapshot. Every address counts as added now: the service dates it by when airlock first
    /// saw it (SCIM keeps no age per address).
    fn snapshot_of(&self, account_id: &AccountId, user: &User) -> Result<AccountSnapshot, DirectoryError> {
        let now = self.clock.now();
        let mut destinations: Vec<Destination> = Vec::new();
        for kind in [DestinationKind::Email, DestinationKind::Phone] {
            for (address, _) in user.values(kind) {
                if address.len() > crate::core::limits::ADDRESS_BYTES_MAX || address.chars().any(char::is_control) {
                    return Err(DirectoryError::Corrupt(format!("{SCIM} holds a {} airlock cannot use", kind.name())));
                }
                let id = destination_id(kind, &address);
                // The same address in two spellings is one destination, shown in the smallest spelling, so that a
                // server listing them in another order changes nothing airlock compares.
                if let Some(seen) = destinations.iter_mut().find(|seen| seen.id == id) {
                    if address < seen.address {
                        seen.address = address;
                    }
                    continue;
                }
                destinations.push(Destination { id, kind, address, trusted_since: now, revoked: false });
            }
        }
        let risk_flags = if user.active == Some(false) { vec!["directory_inactive".to_string()] } else { Vec::new() };
        Ok(AccountSnapshot {
            account_id: account_id.clone(),
            known: true,
            risk_class: RiskClass::Standard,
            destinations,
            totp_enrolled_since: None,
            // SCIM 2.0 carries no second factor: airlock cannot tell whether the user has one (issue 18, item 6).
            authenticator_unknown: true,
            last_credential_change: None,
            risk_flags,
        })
    }

    /// Reads the user and checks that its factors are those `seen` (but for what `action` itself does, which an
    /// earlier attempt may have applied).
    async fn read_unchanged(
        &self,
        account_id: &AccountId,
        seen: &AccountSnapshot,
        action: &RecoveryAction,
    ) -> Result<(Read, AccountSnapshot), DirectoryError> {
        let read = self.read(account_id).await?.ok_or_else(|| DirectoryError::NoSuchAccount(account_id.clone()))?;
        let now = self.snapshot_of(account_id, &read.user)?;
        let changed: Vec<String> = action.unexplained_changes(seen, &now).iter().map(ToString::to_string).collect();
        if !changed.is_empty() {
            return Err(DirectoryError::Changed(changed.join(", ")));
        }
        Ok((read, now))
    }

    /// Sends one PATCH of `operations` against the version read; `Ok(false)` when the user changed since (412). A
    /// server that gives no version (neither an `ETag` nor `meta.version`) is refused: airlock writes conditionally
    /// or not at all.
    async fn patch(
        &self,
        account_id: &AccountId,
        read: &Read,
        operations: Value,
        secret: Option<&str>,
    ) -> Result<bool, DirectoryError> {
        if read.etag.is_none() {
            return Err(DirectoryError::Refused(format!(
                "{SCIM} gives the user no version (ETag), so airlock cannot write only if it is unchanged"
            )));
        }
        let body = json!({ "schemas": [PATCH_OP], "Operations": operations });
        let path = Self::user_path(account_id);
        let answer = self.send(reqwest::Method::PATCH, &path, Some(&body), read.etag.as_deref()).await?;
        let quoted = || masked_quote(&answer, secret);
        match answer.status.as_u16() {
            200..=299 => Ok(true),
            412 => Ok(false),
            404 => Err(DirectoryError::NoSuchAccount(account_id.clone())),
            400..=499 => Err(DirectoryError::Refused(quoted())),
            _ => Err(DirectoryError::Corrupt(format!("{SCIM} answered a change with {}", quoted()))),
        }
    }

    /// Runs `round` (read, check, write) until its write lands on the version it read, `ROUNDS_MAX` times at most.
    async fn conditionally<F, Fut>(&self, mut round: F) -> Result<Vec<Change>, DirectoryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Vec<Change>>, DirectoryError>>,
    {
        for _ in 0..ROUNDS_MAX {
            if let Some(changes) = round().await? {
                return Ok(changes);
            }
        }
        Err(DirectoryError::Changed(format!("the user kept changing while airlock wrote to it ({ROUNDS_MAX} tries)")))
    }

    async fn add_destination(
        &self,
        account_id: &AccountId,
        seen: &AccountSnapshot,
        action: &RecoveryAction,
        kind: DestinationKind,
        address: &str,
    ) -> Result<Option<Vec<Change>>, DirectoryError> {
        let wanted = normalized(kind, address);
        // An address the account already had when the decision was taken is not airlock's to add, nor (on a
        // rollback) to remove.
        let had = seen.destinations.iter().any(|destination| {
            destination.kind == kind && normalized(kind, &destination.address) == wanted && !destination.revoked
        });
        if had {
            return Err(DirectoryError::Refused(format!("the account already has this {}", kind.name())));
        }
        let (read, _) = self.read_unchanged(account_id, seen, action).await?;
        let before: Vec<String> = read.user.values(kind).iter().map(|(value, _)| normalized(kind, value)).collect();
        if before.contains(&wanted) {
            // An earlier attempt wrote it and its answer was lost: the change is made.
            return Ok(Some(added(kind, address)));
        }
        let operations = json!([{ "op": "add", "path": attribute(kind), "value": [{ "value": address }] }]);
        if !self.patch(account_id, &read, operations, None).await? {
            return Ok(None);
        }
        // The server may store the address in its own spelling (a phone number's punctuation, a domain's case): the
        // change records what it stored, so that a rollback finds it.
        let after = self.read(account_id).await?.ok_or_else(|| DirectoryError::NoSuchAccount(account_id.clone()))?;
        let new: Vec<String> = after
            .user
            .values(kind)
            .into_iter()
            .map(|(value, _)| value)
            .filter(|value| !before.contains(&normalized(kind, value)))
            .collect();
        let stored = if new.len() == 1 { new[0].as_str() } else { address };
        Ok(Some(added(kind, stored)))
    }

    async fn reset_password(
        &self,
        account_id: &AccountId,
        seen: &AccountSnapshot,
        action: &RecoveryAction,
    ) -> Result<Option<Vec<Change>>, DirectoryError> {
        let (read, _) = self.read_unchanged(account_id, seen, action).await?;
        let password = random_password();
        let operations = json!([{ "op": "replace", "path": "password", "value": password }]);
        let written = self.patch(account_id, &read, operations, Some(&password)).await?;
        let change = Change { record: "password".into(), old: Some("set".into()), new: Some("replaced".into()) };
        Ok(written.then(|| vec![change, sessions_not_revoked()]))
    }

    /// Sets the user's password, unconditionally (the owner's choice, or ending every password known, depends on no
    /// factor). The answer is never quoted, since a server may echo the password escaped: only its status is said.
    async fn put_password(&self, account_id: &AccountId, password: &str) -> Result<(), DirectoryError> {
        let operations = json!([{ "op": "replace", "path": "password", "value": password }]);
        let body = json!({ "schemas": [PATCH_OP], "Operations": operations });
        let answer = self.send(reqwest::Method::PATCH, &Self::user_path(account_id), Some(&body), None).await?;
        match answer.status.as_u16() {
            200..=299 => Ok(()),
            404 => Err(DirectoryError::NoSuchAccount(account_id.clone())),
            400..=499 => {
                Err(DirectoryError::Refused(format!("{SCIM} did not accept the password ({})", answer.status)))
            }
            _ => Err(DirectoryError::Corrupt(format!("{SCIM} answered a password change with {}", answer.status))),
        }
    }

    /// Removes an address the reversal names, rewriting its list whole (no filter path); nothing when it is gone.
    async fn remove_destination(
        &self,
        account_id: &AccountId,
        change: &Change,
    ) -> Result<Option<bool>, DirectoryError> {
        let Some((kind, address)) = change.old.as_deref().and_then(|old| old.split_once(':')) else {
            return Err(DirectoryError::Corrupt(format!("the reversal of {} names no address", change.record)));
        };
        let kind = match kind {
            "email" => DestinationKind::Email,
            "phone" => DestinationKind::Phone,
            _ => return Err(DirectoryError::Corrupt(format!("the reversal of {} names no kind", change.record))),
        };
        let read = self.read(account_id).await?.ok_or_else(|| DirectoryError::NoSuchAccount(account_id.clone()))?;
        let wanted = normalized(kind, address);
        let values = read.user.values(kind);
        let kept: Vec<Value> = values
            .iter()
            .filter(|(value, _)| normalized(kind, value) != wanted)
            .map(|(_, item)| (*item).clone())
            .collect();
        if kept.len() == values.len() {
            return Ok(Some(false));
        }
        let operation = if kept.is_empty() {
            json!({ "op": "remove", "path": attribute(kind) })
        } else {
            json!({ "op": "replace", "path": attribute(kind), "value": kept })
        };
        Ok(self.patch(account_id, &read, json!([operation]), None).await?.then_some(true))
    }
}

/// The start of an answer, for an error, with `secret` masked first: a server may quote the request in its error, and
/// the secret it carried goes no further (masked before the quote is cut, so no part of it survives the cut).
fn masked_quote(answer: &Answer, secret: Option<&str>) -> String {
    match secret {
        Some(secret) => {
            let body = String::from_utf8_lossy(&answer.body).replace(secret, "***");
            quote(&Answer { status: answer.status, etag: None, body: body.into_bytes() })
        }
        None => quote(answer),
    }
}

/// The answer's JSON as `T`, if it is a 2xx carrying it; otherwise an error that says where the JSON broke (never a
/// value it holds) or quotes the start of an answer that is not a success.
fn scim_json<T: serde::de::DeserializeOwned>(answer: &Answer, what: &str) -> Result<T, DirectoryError> {
    if !answer.status.is_success() {
        return Err(DirectoryError::Corrupt(format!("{SCIM} answered a {what} with {}", quote(answer))));
    }
    serde_json::from_slice(&answer.body).map_err(|error| {
        DirectoryError::Corrupt(format!(
            "{SCIM}'s {what} is not SCIM JSON ({:?} error at line {} column {})",
            error.classify(),
            error.line(),
            error.column()
        ))
    })
}

/// What adding `address` changed.
fn added(kind: DestinationKind, address: &str) -> Vec<Change> {
    let change = Change {
        record: format!("destination:{}", destination_id(kind, address)),
        old: None,
        new: Some(format!("{}:{address}", kind.name())),
    };
    vec![change, sessions_not_revoked()]
}

fn attribute(kind: DestinationKind) -> &'static str {
    match kind {
        DestinationKind::Email => "emails",
        DestinationKind::Phone => "phoneNumbers",
    }
}

/// What the receipt says of sessions: SCIM cannot end them, so none were.
fn sessions_not_revoked() -> Change {
    Change {
        record: "sessions".into(),
        old: None,
        new: Some("not revoked: SCIM cannot end sessions; end them at the identity provider".into()),
    }
}

#[async_trait::async_trait]
impl AccountDirectory for ScimDirectory {
    fn capabilities(&self) -> Capabilities {
        Capabilities { hold: false, verify_second_factor: false, revoke_sessions: false, per_factor_ages: false }
    }

    async fn snapshot(&self, account_id: &AccountId) -> Result<AccountSnapshot, DirectoryError> {
        match self.read(account_id).await? {
            Some(read) => self.snapshot_of(account_id, &read.user),
            None => Ok(AccountSnapshot::unknown(account_id.clone())),
        }
    }

    async fn list(&self, cursor: Option<&str>) -> Result<AccountPage, DirectoryError> {
        let start = match cursor {
            None => 1,
            Some(cursor) => cursor
                .parse::<usize>()
                .map_err(|_| DirectoryError::Corrupt("a SCIM listing's cursor is a start index".into()))?,
        };
        // No `count`: the server picks its page size (RFC 7644 lets it), and canaille 0.3.6 fails on any count (it
        // compares the parameter's text with a number).
        let path = format!("Users?startIndex={start}");
        let answer = self.send(reqwest::Method::GET, &path, None, None).await?;
        let page: ListResponse = scim_json(&answer, "listing")?;
        // A server that ignores startIndex would answer its first page for ever.
        if page.start_index.is_some_and(|answered| answered != start) {
            return Err(DirectoryError::Corrupt(format!("{SCIM} answered another page than the one asked for")));
        }
        let read = page.resources.len();
        let mut accounts = Vec::with_capacity(read);
        for resource in page.resources {
            // A user airlock cannot read (its id, an address) is left out and said, never a reason to stop the sync:
            // it is dated when it is read for a request, if it can be then.
            let usable = serde_json::from_value::<User>(resource)
                .ok()
                .filter(|user| crate::core::text::check_identifier("account id", &user.id).is_ok())
                .and_then(|user| self.snapshot_of(&AccountId::new(user.id.clone()), &user).ok());
            match usable {
                Some(snapshot) => accounts.push(snapshot),
                None => tracing::warn!("directory sync: a SCIM user airlock cannot read is left out"),
            }
        }
        let more = page.total_results.is_none_or(|total| start - 1 + read < total);
        let next = (read > 0 && more).then(|| (start + read).to_string());
        Ok(AccountPage { accounts, next })
    }

    async fn set_password(
        &self,
        _key: &str,
        account_id: &AccountId,
        password: &crate::directory::Password,
        _now: UnixMs,
    ) -> Result<Vec<Change>, DirectoryError> {
        self.put_password(account_id, password.reveal_to_directory()).await?;
        Ok(vec![Change {
            record: "password".into(),
            old: Some("replaced".into()),
            new: Some("set by the owner".into()),
        }])
    }

    async fn verify_totp(&self, _: &AccountId, _: &str, _: UnixMs) -> Result<SecondFactorCheck, DirectoryError> {
        Err(DirectoryError::Unavailable("SCIM cannot check an authenticator code".into()))
    }

    async fn hold(&self, _: &AccountId, _: &str, _: UnixMs) -> Result<(), DirectoryError> {
        Err(DirectoryError::Unavailable("SCIM cannot hold an account".into()))
    }

    async fn release(&self, _: &AccountId, _: &str) -> Result<(), DirectoryError> {
        Err(DirectoryError::Unavailable("SCIM cannot hold an account".into()))
    }

    async fn execute(
        &self,
        _effect_id: &EffectId,
        account_id: &AccountId,
        action: &RecoveryAction,
        seen: &AccountSnapshot,
        _now: UnixMs,
    ) -> Result<Vec<Change>, DirectoryError> {
        match action {
            RecoveryAction::AddDestination { kind, address } => {
                self.conditionally(|| self.add_destination(account_id, seen, action, *kind, address)).await
            }
            RecoveryAction::ResetPassword => self.conditionally(|| self.reset_password(account_id, seen, action)).await,
            RecoveryAction::RemoveTotp => Err(DirectoryError::Refused(
                "SCIM has no authenticator to remove: remove it at the identity provider".into(),
            )),
        }
    }

    async fn revert(
        &self,
        _effect_id: &EffectId,
        account_id: &AccountId,
        reversal: &[Change],
        _executed_at: UnixMs,
        _now: UnixMs,
    ) -> Result<Vec<Change>, DirectoryError> {
        let mut changes = Vec::new();
        for change in reversal {
            if change.record.starts_with("destination:") && change.new.is_none() {
                let mut removed = None;
                for _ in 0..ROUNDS_MAX {
                    removed = self.remove_destination(account_id, change).await?;
                    if removed.is_some() {
                        break;
                    }
                }
                match removed {
                    Some(true) => changes.push(change.clone()),
                    Some(false) => {}
                    None => {
                        return Err(DirectoryError::Changed(format!(
                            "the user kept changing while airlock wrote to it ({ROUNDS_MAX} tries)"
                        )));
                    }
                }
            } else if change.record == "password" {
                // The password a reset replaced was never airlock's to keep, so it cannot be put back. The rollback
                // ends whatever password was set since (through the reset's link, or by anyone): a new random one, and
                // the case rolled back spends the link. The owner sets a new password at the identity provider.
                self.put_password(account_id, &random_password()).await?;
                changes.push(Change {
                    record: "password".into(),
                    old: change.old.clone(),
                    new: Some("replaced again: SCIM keeps no earlier password to restore".into()),
                });
            }
        }
        changes.push(sessions_not_revoked());
        Ok(changes)
    }
}
