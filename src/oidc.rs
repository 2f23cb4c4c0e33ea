//! Sign-in at the company's OpenID Connect provider (issue 18, item 6): the owner proves the account's second factor
//! by signing in there, where that factor lives, so airlock holds no authenticator secret of a directory that cannot
//! check a code itself (SCIM, most identity providers). The reviewers' console (issue 19) is to sign people in with
//! the same `Provider`.
//!
//! What it promises:
//! - the authorization code flow with PKCE (S256), a random `state` and `nonce`, `prompt=login` and a `max_age`; the
//!   provider's answer is never trusted to have honoured them: the verified ID token's `auth_time` must be after the
//!   flow started, and its `amr`/`acr` must name a second factor the deployment accepts;
//! - the ID token's signature (the provider's published keys), issuer, audience, expiry and nonce are checked by the
//!   `openidconnect` crate, a maintained implementation, not by hand;
//! - nothing is kept on the server between the start and the end of a flow: the PKCE verifier, nonce and state travel
//!   in an HttpOnly cookie signed with airlock's link key (signed, not encrypted: readable by the browser that holds
//!   it, changed by nobody), so a flow cannot be started by one browser and finished by another;
//! - what a sign-in proved is handed to the verification form as a short-lived token signed with that key, bound to the
//!   case and to the subject the provider named; the code typed with it decides whether that subject is the account;
//! - the endpoints discovery names are held to the issuer's rule (`https://`, or `http://` to loopback), so the client
//!   secret never travels in the clear.
//!
//! Times here are the wall clock (`SystemTime`), not the service's clock: they are compared with the provider's.

use crate::keys::Keys;
use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow, CoreProviderMetadata};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a flow may take, from `start` to the provider's answer.
pub const FLOW_TTL_MS: u64 = 10 * 60 * 1000;
/// How long what a sign-in proved may be used for, from the provider's answer to the code typed with it.
pub const STEP_UP_TTL_MS: u64 = 10 * 60 * 1000;
/// The `max_age` asked of the provider. Not 0: canaille 0.3.6 takes `max_age=0` as "sign in again" on every
/// round and never answers; the real check is airlock's own, `auth_time` after the flow started.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// How far the provider's clock may be behind airlock's when `auth_time` is compared with the flow's start.
pub const CLOCK_SKEW_MS: u64 = 30 * 1000;
/// How long the provider's discovery document and keys are used before they are read again (keys rotate).
const METADATA_TTL: Duration = Duration::from_secs(5 * 60);
/// After a failed read of them, how long the last good ones are used before another read is tried.
const METADATA_RETRY: Duration = Duration::from_secs(30);

/// The ID token's claims beyond the standard ones (the console's roles come from one, such as `groups`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct OtherClaims {
    #[serde(flatten)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl openidconnect::AdditionalClaims for OtherClaims {}

type TokenFields = openidconnect::IdTokenFields<
    OtherClaims,
    openidconnect::EmptyExtraTokenFields,
    openidconnect::core::CoreGenderClaim,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJwsSigningAlgorithm,
>;

/// A client made from discovery (its authorization endpoint set, its token and user-info endpoints as discovered),
/// `CoreClient` but for the claims beyond the standard ones, which it keeps.
type Client = openidconnect::Client<
    OtherClaims,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreGenderClaim,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::StandardTokenResponse<TokenFields, openidconnect::core::CoreTokenType>,
    openidconnect::core::CoreTokenIntrospectionResponse,
    openidconnect::core::CoreRevocableToken,
    openidconnect::core::CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The wall clock in milliseconds since the epoch.
pub fn wall_clock_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}

/// The client secret, kept out of `Debug`.
#[derive(Clone)]
pub struct ClientSecretText(String);

impl ClientSecretText {
    /// The secret read from an owner-only file (first line, trimmed).
    pub fn new(text: &str) -> Result<ClientSecretText, String> {
        let secret = text.lines().next().unwrap_or_default().trim();
        if secret.is_empty() {
            return Err("the client secret file is empty".to_string());
        }
        Ok(ClientSecretText(secret.to_string()))
    }
}

impl std::fmt::Debug for ClientSecretText {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("<redacted>")
    }
}

/// One thing a sign-in must show to count as a second factor: an `amr` value (RFC 8176: `mfa`, `otp`, `hwk`, ...)
/// or an `acr` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    Amr(String),
    Acr(String),
}

/// What a sign-in must show, any one of them: `amr:mfa`, `amr:otp`, `acr:<value>`, comma-separated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepUpRule(pub Vec<Requirement>);

impl StepUpRule {
    /// The default: a one-time password from an app or token (`otp`), or a hardware or software key (`hwk`, `swk`).
    /// Not `mfa` (several factors of any kind): a provider says it for a code it sent by SMS or email too, to the very
    /// phone or mailbox the recovery's code went to. Name `amr:mfa` only where the provider's second factors are
    /// never those.
    pub const DEFAULT: &'static str = "amr:otp,amr:hwk,amr:swk";

    pub fn parse(text: &str) -> Result<StepUpRule, String> {
        let mut requirements = Vec::new();
        for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
            let requirement = match part.split_once(':') {
                Some(("amr", value)) if !value.is_empty() => Requirement::Amr(value.to_string()),
                Some(("acr", value)) if !value.is_empty() => Requirement::Acr(value.to_string()),
                _ => return Err(format!("oidc_step_up: {part:?} is not amr:VALUE or acr:VALUE")),
            };
            requirements.push(requirement);
        }
        if requirements.is_empty() {
            return Err("oidc_step_up names no amr or acr value".to_string());
        }
        Ok(StepUpRule(requirements))
    }

    /// The `acr` values the rule names, asked of the provider (`acr_values`) so that it steps up to one of them.
    fn acr_values(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|requirement| match requirement {
            Requirement::Acr(value) => Some(value.as_str()),
            Requirement::Amr(_) => None,
        })
    }

    fn met_by(&self, sign_in: &SignIn) -> bool {
        self.0.iter().any(|requirement| match requirement {
            Requirement::Amr(value) => sign_in.amr.iter().any(|amr| amr == value),
            Requirement::Acr(value) => sign_in.acr.as_deref() == Some(value.as_str()),
        })
    }
}

impl std::fmt::Display for StepUpRule {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|requirement| match requirement {
                Requirement::Amr(value) => format!("amr:{value}"),
                Requirement::Acr(value) => format!("acr:{value}"),
            })
            .collect();
        formatter.write_str(&parts.join(", "))
    }
}

/// The company's provider, as configured.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// The issuer (its discovery document is at `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: ClientSecretText,
    pub step_up: StepUpRule,
}

/// Why a sign-in cannot be used. Says what to do, never a token or a code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OidcError {
    #[error("the identity provider cannot be reached or answered what OpenID Connect does not allow: {0}")]
    Provider(String),
    #[error("the sign-in did not finish within {} minutes, or in another browser: start again", FLOW_TTL_MS / 60_000)]
    FlowExpired,
    #[error("the identity provider's answer does not belong to this sign-in: start again")]
    WrongState,
    #[error("the identity provider refused the sign-in ({0})")]
    Refused(String),
    #[error("the identity provider's ID token does not verify: {0}")]
    Token(String),
    #[error("the sign-in happened before it was asked for: sign in again")]
    Stale,
    #[error("the sign-in did not use a second factor this airlock accepts (it asks for one of: {0})")]
    NoSecondFactor(String),
}

/// What a verified ID token says about the sign-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignIn {
    pub subject: String,
    /// When the person signed in (the `auth_time` claim), in milliseconds.
    pub auth_time: Option<u64>,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    /// The claims beyond the standard ones, as the provider sent them.
    pub other: serde_json::Map<String, serde_json::Value>,
    /// Standard claims a deployment may name people by (`--console-person-claim`): the crate keeps them out of
    /// `other`.
    pub preferred_username: Option<String>,
    /// The email, only when the provider says it verified it (`email_verified`).
    pub verified_email: Option<String>,
}

/// Whether `sign_in` proves a second factor for a flow started at `started_ms`: it happened after the flow started
/// (within `CLOCK_SKEW_MS` of the provider's clock), and shows what `rule` asks for. Its time, if so.
pub fn second_factor_time(sign_in: &SignIn, started_ms: u64, rule: &StepUpRule) -> Result<u64, OidcError> {
    let auth_time = sign_in.auth_time.ok_or_else(|| OidcError::Token("it has no auth_time".to_string()))?;
    if auth_time + CLOCK_SKEW_MS < started_ms {
        return Err(OidcError::Stale);
    }
    if !rule.met_by(sign_in) {
        return Err(OidcError::NoSecondFactor(rule.to_string()));
    }
    Ok(auth_time)
}

/// A flow in progress: what its cookie carries between `start` and `finish`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Flow {
    /// What the flow is for (`step-up`, `console`), and its case for a step-up.
    pub purpose: String,
    pub case: Option<String>,
    state: String,
    nonce: String,
    verifier: String,
    pub started_ms: u64,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Flow")
            .field("purpose", &self.purpose)
            .field("case", &self.case)
            .field("started_ms", &self.started_ms)
            .finish_non_exhaustive()
    }
}

impl Flow {
    /// The flow sealed for its cookie.
    pub fn seal(&self, keys: &Keys) -> String {
        keys.seal("oidc-flow", &serde_json::to_vec(self).expect("a flow serializes"))
    }

    /// The flow of a cookie, if airlock sealed it and it is younger than `FLOW_TTL_MS`.
    pub fn open(keys: &Keys, sealed: &str, now_ms: u64) -> Result<Flow, OidcError> {
        let bytes = keys.open("oidc-flow", sealed).ok_or(OidcError::FlowExpired)?;
        let flow: Flow = serde_json::from_slice(&bytes).map_err(|_| OidcError::FlowExpired)?;
        if now_ms >= flow.started_ms.saturating_add(FLOW_TTL_MS) {
            return Err(OidcError::FlowExpired);
        }
        Ok(flow)
    }

    /// The flow's `state`, which the provider answers with.
    pub fn state(&self) -> &str {
        &self.state
    }

    /// Whether `state` is this flow's, compared in constant time.
    pub fn state_matches(&self, state: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.state.as_bytes().ct_eq(state.as_bytes()).into()
    }
}

/// The company's OpenID Connect provider, discovered at start and read again every few minutes.
pub struct Provider {
    config: OidcConfig,
    /// airlock's public address; the provider sends the browser back to `{public_url}/oidc/callback`.
    public_url: String,
    issuer: IssuerUrl,
    redirect: RedirectUrl,
    http: reqwest::Client,
    /// The provider's metadata and keys, and when to read them again.
    metadata: tokio::sync::Mutex<(Instant, CoreProviderMetadata)>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Provider").field("issuer", &self.config.issuer).finish_non_exhaustive()
    }
}

impl Provider {
    /// Reads the provider's discovery document and keys. Fails with the reason when the issuer is not `https://`
    /// (plain `http://` only to a loopback address), holds credentials, or does not answer as OpenID Connect says.
    /// The provider sends the browser back to `{public_url}/oidc/callback`, which must be registered there.
    pub async fn connect(config: OidcConfig, public_url: &str) -> Result<Provider, OidcError> {
        let issuer_url = checked_url("oidc_issuer", &config.issuer).map_err(OidcError::Provider)?;
        let issuer = IssuerUrl::new(issuer_url.as_str().trim_end_matches('/').to_string())
            .map_err(|error| OidcError::Provider(format!("oidc_issuer: {error}")))?;
        let public_url = public_url.trim_end_matches('/').to_string();
        let redirect_url = format!("{public_url}/oidc/callback");
        checked_url("public_url", &redirect_url).map_err(OidcError::Provider)?;
        let redirect = RedirectUrl::new(redirect_url).map_err(|error| OidcError::Provider(error.to_string()))?;
        let http = crate::directory::http::client().map_err(OidcError::Provider)?;
        let metadata = discover(&issuer, &http).await?;
        let metadata = tokio::sync::Mutex::new((Instant::now() + METADATA_TTL, metadata));
        Ok(Provider { config, public_url, issuer, redirect, http, metadata })
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// airlock's public origin (`scheme://host[:port]`), which a browser's `Origin` header names on its own POSTs.
    pub fn public_origin(&self) -> String {
        url::Url::parse(&self.public_url)
            .map_or_else(|_| self.public_url.clone(), |url| url.origin().ascii_serialization())
    }

    /// Whether cookies must be `Secure`: the public address is `https://`.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// A client of the provider's metadata, read again once it is older than `METADATA_TTL` (or at once with
    /// `fresh`, for keys the provider rotated). One read at a time; a failed one keeps the last good metadata and is
    /// tried again after `METADATA_RETRY`, so a provider that is down is not asked on every request.
    async fn client(&self, fresh: bool) -> Client {
        let metadata = {
            let mut cached = self.metadata.lock().await;
            if fresh || Instant::now() >= cached.0 {
                match discover(&self.issuer, &self.http).await {
                    Ok(metadata) => *cached = (Instant::now() + METADATA_TTL, metadata),
                    Err(error) => {
                        tracing::warn!(%error, "identity provider: metadata not read again; the last is kept");
                        cached.0 = Instant::now() + METADATA_RETRY;
                    }
                }
            }
            cached.1.clone()
        };
        Client::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.config.client_secret.0.clone())),
        )
        .set_redirect_uri(self.redirect.clone())
    }

    /// Starts a flow: the provider's address to send the browser to, and the flow for its cookie. `scopes` are asked
    /// for besides `openid` (the console's roles may need one, such as `groups`).
    pub async fn start(
        &self,
        purpose: &str,
        case: Option<String>,
        scopes: &[String],
    ) -> Result<(String, Flow), OidcError> {
        let client = self.client(false).await;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scope(Scope::new("openid".to_string()))
            .add_scopes(scopes.iter().map(|scope| Scope::new(scope.clone())))
            .add_prompt(CoreAuthPrompt::Login)
            .set_max_age(MAX_AGE)
            .set_pkce_challenge(challenge);
        for acr in self.config.step_up.acr_values() {
            request = request.add_auth_context_value(AuthenticationContextClass::new(acr.to_string()));
        }
        let (url, state, nonce) = request.url();
        let flow = Flow {
            purpose: purpose.to_string(),
            case,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            started_ms: wall_clock_ms(),
        };
        Ok((url.to_string(), flow))
    }

    /// Finishes `flow` with the provider's `code`: redeems it with the PKCE verifier, verifies the ID token (signature,
    /// issuer, audience, expiry, nonce) and returns what it says of the sign-in.
    pub async fn finish(&self, flow: &Flow, code: &str) -> Result<SignIn, OidcError> {
        use openidconnect::{ClaimsVerificationError, RequestTokenError, SignatureVerificationError};
        let client = self.client(false).await;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|error| OidcError::Provider(error.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|error| match error {
                RequestTokenError::ServerResponse(answer) => OidcError::Refused(bounded(&answer.to_string())),
                other => OidcError::Provider(bounded(&format!("{other}: {}", source_text(&other)))),
            })?;
        let id_token = response.id_token().ok_or_else(|| OidcError::Token("the answer has no ID token".into()))?;
        let nonce = Nonce::new(flow.nonce.clone());
        // A token signed with a key airlock has not read yet: the provider rotated its keys; read them once more.
        let rotated = matches!(
            id_token.claims(&client.id_token_verifier(), &nonce),
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey))
        );
        let client = if rotated { self.client(true).await } else { client };
        let claims = id_token
            .claims(&client.id_token_verifier(), &nonce)
            .map_err(|error| OidcError::Token(bounded(&error.to_string())))?;
        Ok(SignIn {
            subject: claims.subject().as_str().to_string(),
            auth_time: claims.auth_time().map(|at| at.timestamp_millis().max(0) as u64),
            amr: claims.auth_method_refs().map_or_else(Vec::new, |refs| refs.iter().map(|r| r.to_string()).collect()),
            acr: claims.auth_context_ref().map(|acr| acr.to_string()),
            other: claims.additional_claims().claims.clone(),
            preferred_username: claims.preferred_username().map(|name| name.as_str().to_string()),
            verified_email: claims
                .email()
                .filter(|_| claims.email_verified() == Some(true))
                .map(|email| email.as_str().to_string()),
        })
    }

    /// The rule a sign-in must meet to count as a second factor.
    pub fn step_up_rule(&self) -> &StepUpRule {
        &self.config.step_up
    }
}

/// The provider's discovery document and keys. Every endpoint it names is held to the issuer's rule: a token endpoint
/// at `http://` elsewhere would carry the client secret in the clear.
async fn discover(issuer: &IssuerUrl, http: &reqwest::Client) -> Result<CoreProviderMetadata, OidcError> {
    let metadata = CoreProviderMetadata::discover_async(issuer.clone(), http)
        .await
        .map_err(|error| OidcError::Provider(bounded(&format!("{error}: {}", source_text(&error)))))?;
    let mut endpoints = vec![
        ("authorization_endpoint", metadata.authorization_endpoint().as_str()),
        ("jwks_uri", metadata.jwks_uri().as_str()),
    ];
    if let Some(token) = metadata.token_endpoint() {
        endpoints.push(("token_endpoint", token.as_str()));
    }
    for (name, url) in endpoints {
        checked_url(&format!("the provider's {name}"), url).map_err(OidcError::Provider)?;
    }
    Ok(metadata)
}

/// The causes under an error, for a message that says why a request failed (not only that it did).
fn source_text(error: &dyn std::error::Error) -> String {
    let mut causes = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    causes.join(": ")
}

/// An answer quoted in an error: at most 200 characters.
fn bounded(text: &str) -> String {
    let mut out: String = text.chars().take(200).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// A URL airlock talks to or sends people to: `https://`, or `http://` to a loopback address only; no credentials.
/// The error names the setting and the rule, never the URL.
pub fn checked_url(setting: &str, url: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|error| format!("{setting}: {error}"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("{setting} holds a user or password: remove them"));
    }
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if crate::directory::http::loopback(&parsed) => Ok(parsed),
        _ => Err(format!("{setting}: use https:// (plain http:// only to a loopback address)")),
    }
}

/// What a sign-in proved, for the code typed with it: sealed with the link key, bound to a case and a subject.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StepUp {
    pub case: String,
    pub subject: String,
    pub auth_time: u64,
    pub until: u64,
}

impl StepUp {
    pub fn seal(&self, keys: &Keys) -> String {
        keys.seal("step-up", &serde_json::to_vec(self).expect("a step-up serializes"))
    }

    /// What `sealed` says, if airlock sealed it for `case` and it is still usable at `now_ms`.
    pub fn open(keys: &Keys, sealed: &str, case: &str, now_ms: u64) -> Option<StepUp> {
        let step_up: StepUp = serde_json::from_slice(&keys.open("step-up", sealed)?).ok()?;
        (step_up.case == case && now_ms < step_up.until).then_some(step_up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign_in(auth_time: Option<u64>, amr: &[&str], acr: Option<&str>) -> SignIn {
        SignIn {
            subject: "user-1".into(),
            auth_time,
            amr: amr.iter().map(|value| value.to_string()).collect(),
            acr: acr.map(str::to_string),
            other: serde_json::Map::new(),
            preferred_username: None,
            verified_email: None,
        }
    }

    // Proves the checks airlock makes beyond the ID token's own: a sign-in without `auth_time`, or from before the
    // flow started (past the allowed skew), or without a second factor the rule names, is refused (saying what the
    // rule asks for); one with it is taken with its time. The default rule takes an app's one-time password or a key,
    // not `mfa` alone (which a provider also says for a code it sent by SMS).
    #[test]
    fn a_sign_in_counts_only_when_fresh_and_with_a_second_factor() {
        let default = StepUpRule::parse(StepUpRule::DEFAULT).unwrap();
        let mfa = StepUpRule::parse("amr:mfa").unwrap();
        let started = 1_000_000;
        let check =
            |auth_time, amr: &[&str], acr, rule| second_factor_time(&sign_in(auth_time, amr, acr), started, rule);
        assert_eq!(check(Some(started + 5), &["pwd", "otp", "mfa"], None, &default), Ok(started + 5));
        assert_eq!(check(Some(started), &["hwk"], None, &default), Ok(started));
        let refused = check(Some(started), &["pwd", "sms", "mfa"], None, &default);
        assert_eq!(refused, Err(OidcError::NoSecondFactor("amr:otp, amr:hwk, amr:swk".into())));
        assert!(refused.unwrap_err().to_string().contains("amr:otp, amr:hwk, amr:swk"));
        assert_eq!(check(Some(started - CLOCK_SKEW_MS + 1), &["mfa"], None, &mfa), Ok(started - CLOCK_SKEW_MS + 1));
        assert_eq!(check(Some(started - CLOCK_SKEW_MS - 1), &["mfa"], None, &mfa), Err(OidcError::Stale));
        assert!(matches!(check(None, &["mfa"], None, &mfa), Err(OidcError::Token(_))));
        assert!(matches!(check(Some(started), &["pwd"], None, &mfa), Err(OidcError::NoSecondFactor(_))));
        let by_acr = StepUpRule::parse("acr:urn:example:loa:3, amr:hwk").unwrap();
        assert_eq!(by_acr.acr_values().collect::<Vec<_>>(), ["urn:example:loa:3"]);
        assert_eq!(check(Some(started), &["pwd"], Some("urn:example:loa:3"), &by_acr), Ok(started));
        assert_eq!(check(Some(started), &["hwk"], None, &by_acr), Ok(started));
        assert!(matches!(
            check(Some(started), &["mfa"], Some("urn:example:loa:2"), &by_acr),
            Err(OidcError::NoSecondFactor(_))
        ));
    }

    // Proves a rule that names nothing, or something other than amr/acr, is refused with the reason.
    #[test]
    fn a_step_up_rule_must_name_amr_or_acr_values() {
        assert!(StepUpRule::parse("").unwrap_err().contains("names no"));
        assert!(StepUpRule::parse("mfa").unwrap_err().contains("\"mfa\""));
        assert!(StepUpRule::parse("amr:").is_err());
        assert_eq!(
            StepUpRule::parse(" amr:otp ,acr:x").unwrap().0,
            vec![Requirement::Amr("otp".into()), Requirement::Acr("x".into())]
        );
    }

    // Proves a sealed flow and step-up open only with the key that sealed them, for their purpose, unaltered and in
    // time; a step-up only for its own case.
    #[test]
    fn sealed_flows_and_step_ups_are_bound_to_key_purpose_case_and_time() {
        let keys = Keys::generate();
        let flow = Flow {
            purpose: "step-up".into(),
            case: Some("case-1".into()),
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            started_ms: 5_000,
        };
        let sealed = flow.seal(&keys);
        assert_eq!(Flow::open(&keys, &sealed, 5_001), Ok(flow.clone()));
        assert_eq!(Flow::open(&keys, &sealed, 5_000 + FLOW_TTL_MS), Err(OidcError::FlowExpired));
        assert_eq!(Flow::open(&Keys::generate(), &sealed, 5_001), Err(OidcError::FlowExpired));
        let mut altered = sealed.clone().into_bytes();
        altered[2] ^= 1;
        assert!(Flow::open(&keys, &String::from_utf8_lossy(&altered), 5_001).is_err());
        assert!(flow.state_matches("s") && !flow.state_matches("t"));

        let step_up = StepUp { case: "case-1".into(), subject: "user-1".into(), auth_time: 4_000, until: 9_000 };
        let sealed_step_up = step_up.seal(&keys);
        assert_eq!(StepUp::open(&keys, &sealed_step_up, "case-1", 8_999), Some(step_up));
        assert_eq!(StepUp::open(&keys, &sealed_step_up, "case-2", 8_999), None);
        assert_eq!(StepUp::open(&keys, &sealed_step_up, "case-1", 9_000), None);
        assert_eq!(StepUp::open(&keys, &sealed, "case-1", 5_001), None, "a flow cookie is no step-up");
    }
}
