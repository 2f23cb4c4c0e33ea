//! The reviewers' and operators' console (issue 19): `/console` on `airlock serve --http`, server-rendered HTML
//! (`templates/console/`), usable without JavaScript, runs none.
//!
//! What it promises:
//! - it is on only with the company's OpenID Connect provider configured (`--oidc-issuer`) and a reviewer or operator
//!   group named; otherwise `/console` says it is off;
//! - people sign in at the provider (`crate::oidc`: PKCE, state, nonce, a fresh sign-in with a second factor), and
//!   their id and roles come from the verified ID token's claims (`--console-person-claim`, the groups claim), never
//!   from a form;
//! - a session is a random token in a `SameSite=Strict`, HttpOnly cookie (`__Host-` and Secure behind `https://`),
//!   kept server-side only as its SHA-256 (`access.db`), ended by signing out, after `IDLE_MS` without a request, or
//!   `ABSOLUTE_MS` after sign-in;
//! - every POST carries the session's CSRF token and, where the browser says, comes from this origin;
//! - every action is the same JSON command the NATS and HTTP front doors take (`intake::handle_json`), sent as the
//!   signed-in person's actor, so the core refuses here exactly what it refuses there, and the log names the person;
//!   every read is the same query the command line asks (`intake::query::answer`).

use crate::core::actor::{Actor, Role};
use crate::core::text::check_identifier;
use crate::http::templates::render;
use crate::intake::CommandType;
use crate::log::EventLog;
use crate::oidc::{OidcError, Provider, SignIn, wall_clock_ms};
use crate::service::{Service, new_id};
use crate::sqlite::OpenError;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use rusqlite::{Connection, OptionalExtension};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};

/// A session ends after this long without a request.
pub const IDLE_MS: u64 = 30 * 60 * 1000;
/// And this long after sign-in, whatever happens.
pub const ABSOLUTE_MS: u64 = 12 * 60 * 60 * 1000;
/// What a console flow is marked with (`crate::oidc::Flow::purpose`).
pub const PURPOSE: &str = "console";
const SESSION_COOKIE: &str = "airlock_console";
const SESSION_COOKIE_SECURE: &str = "__Host-airlock_console";

/// Who may use the console, and how the provider says so.
#[derive(Clone, Debug)]
pub struct ConsoleConfig {
    /// The ID token claim naming the person (`sub` by default): an airlock actor id, so letters, digits and `-_.@+`.
    pub person_claim: String,
    /// The claim listing the person's groups (`groups` by default).
    pub groups_claim: String,
    /// Members of this group are reviewers.
    pub reviewer_group: Option<String>,
    /// Members of this group are operators.
    pub operator_group: Option<String>,
    /// Scopes asked for besides `openid`, so that the provider puts the groups in the ID token (`groups`).
    pub scopes: Vec<String>,
}

/// The console's configuration and its sessions.
pub struct Console {
    pub config: ConsoleConfig,
    sessions: Sessions,
}

impl Console {
    /// The console of `config`, its sessions in `access_db` (the data directory's `access.db`).
    pub fn open(config: ConsoleConfig, access_db: &std::path::Path) -> Result<Console, OpenError> {
        Ok(Console { config, sessions: Sessions::open(access_db)? })
    }

    /// The person and roles a verified sign-in names, or why it names none.
    pub fn person_of(&self, sign_in: &SignIn) -> Result<(String, Vec<Role>), String> {
        let config = &self.config;
        let person = match config.person_claim.as_str() {
            "sub" => Some(sign_in.subject.clone()),
            "preferred_username" => sign_in.preferred_username.clone(),
            // An email the provider did not verify names nobody.
            "email" => sign_in.verified_email.clone(),
            claim => sign_in.other.get(claim).and_then(Value::as_str).map(str::to_string),
        };
        let person = person.filter(|person| check_identifier("person", person).is_ok()).ok_or_else(|| {
            format!(
                "the identity provider's {} claim does not name you in a way airlock can record (letters, digits and \
                 -_.@+ only); ask an administrator to map it",
                config.person_claim
            )
        })?;
        let groups: Vec<String> = match sign_in.other.get(&config.groups_claim) {
            Some(Value::Array(groups)) => groups.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            Some(Value::String(group)) => vec![group.clone()],
            _ => Vec::new(),
        };
        let member = |group: &Option<String>| group.as_ref().is_some_and(|group| groups.contains(group));
        let mut roles = Vec::new();
        if member(&config.reviewer_group) {
            roles.push(Role::Reviewer);
        }
        if member(&config.operator_group) {
            roles.push(Role::Operator);
        }
        if roles.is_empty() {
            return Err(format!(
                "you are signed in as {person}, who is in neither airlock's reviewer nor its operator group: the \
                 console is not for you. Ask an administrator if it should be."
            ));
        }
        Ok((person, roles))
    }
}

/// A signed-in person, as a request's session cookie names them.
#[derive(Clone, Debug)]
pub struct Session {
    pub person: String,
    pub roles: Vec<Role>,
    csrf: String,
}

impl Session {
    fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The actor this person acts as in `role`.
    fn actor(&self, role: Role) -> Actor {
        Actor::new(role, self.person.clone())
    }

    /// The actor the person reads as: reviewer if they are one, else operator.
    fn reader(&self) -> Actor {
        self.actor(if self.has(Role::Reviewer) { Role::Reviewer } else { Role::Operator })
    }

    fn role_names(&self) -> Vec<String> {
        self.roles.iter().map(ToString::to_string).collect()
    }
}

/// The sessions, in `access.db`: the SHA-256 of each token, never the token.
struct Sessions {
    connection: Mutex<Connection>,
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn random_hex() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    fn open(path: &std::path::Path) -> Result<Sessions, OpenError> {
        Ok(Sessions { connection: Mutex::new(crate::sqlite::open(path, crate::http::api_keys::MIGRATIONS)?) })
    }

    /// A new session: its token, for the cookie (shown once, kept only as a hash). Sessions long over are removed.
    fn create(&self, person: &str, roles: &[Role], now: u64) -> rusqlite::Result<String> {
        let token = random_hex();
        let roles: Vec<&str> = roles.iter().map(|role| role.name()).collect();
        let connection = self.connection.lock().expect("the sessions lock is never poisoned");
        connection.execute(
            "DELETE FROM console_sessions WHERE created_at_ms < ?1",
            [now.saturating_sub(ABSOLUTE_MS + 24 * 60 * 60 * 1000) as i64],
        )?;
        connection.execute(
            "INSERT INTO console_sessions (token_sha256, person, roles, csrf, created_at_ms, last_seen_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            rusqlite::params![token_hash(&token), person, roles.join(","), random_hex(), now as i64],
        )?;
        Ok(token)
    }

    /// The live session of `token`, its idle time restarted; `None` for an unknown, ended or expired one (an expired
    /// one is ended then).
    fn find(&self, token: &str, now: u64) -> rusqlite::Result<Option<Session>> {
        let connection = self.connection.lock().expect("the sessions lock is never poisoned");
        let hash = token_hash(token);
        let row: Option<(String, String, String, i64, i64, Option<i64>)> = connection
            .query_row(
                "SELECT person, roles, csrf, created_at_ms, last_seen_ms, ended_at_ms FROM console_sessions
                 WHERE token_sha256 = ?1",
                [&hash],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?)),
            )
            .optional()?;
        let Some((person, roles, csrf, created, last_seen, ended)) = row else { return Ok(None) };
        let (created, last_seen) = (created as u64, last_seen as u64);
        if ended.is_some() {
            return Ok(None);
        }
        if now >= created + ABSOLUTE_MS || now >= last_seen + IDLE_MS {
            // Ended for good: a wall clock stepped back later does not bring it back.
            connection.execute(
                "UPDATE console_sessions SET ended_at_ms = ?2 WHERE token_sha256 = ?1",
                rusqlite::params![hash, now as i64],
            )?;
            return Ok(None);
        }
        connection.execute(
            "UPDATE console_sessions SET last_seen_ms = ?2 WHERE token_sha256 = ?1",
            rusqlite::params![hash, now as i64],
        )?;
        let roles = roles.split(',').filter_map(Role::parse).collect();
        Ok(Some(Session { person, roles, csrf }))
    }

    fn end(&self, token: &str, now: u64) -> rusqlite::Result<()> {
        let connection = self.connection.lock().expect("the sessions lock is never poisoned");
        connection.execute(
            "UPDATE console_sessions SET ended_at_ms = ?2 WHERE token_sha256 = ?1 AND ended_at_ms IS NULL",
            rusqlite::params![token_hash(token), now as i64],
        )?;
        Ok(())
    }
}

pub struct ConsoleState<L: EventLog> {
    pub service: Arc<Service<L>>,
    pub provider: Arc<Provider>,
    pub console: Arc<Console>,
}

impl<L: EventLog> Clone for ConsoleState<L> {
    fn clone(&self) -> Self {
        ConsoleState { service: self.service.clone(), provider: self.provider.clone(), console: self.console.clone() }
    }
}

pub fn router<L: EventLog + 'static>(state: ConsoleState<L>) -> Router {
    Router::new()
        .route("/console", get(queue::<L>))
        .route("/console/sign-in", get(sign_in::<L>))
        .route("/console/sign-out", post(sign_out::<L>))
        .route("/console/cases/{case_id}", get(case_page::<L>))
        .route("/console/cases/{case_id}/decision", post(decide::<L>))
        .route("/console/operators", get(operators::<L>))
        .route("/console/operators/{switch}", post(switch::<L>))
        .route("/console/operators/rollback-preview", post(rollback_preview::<L>))
        .route("/console/operators/rollback", post(rollback_matching::<L>))
        .route("/console/operators/audit", post(audit::<L>))
        .route("/console/cases/{case_id}/{command}", post(case_command::<L>))
        .route("/console/alerts/{alert_id}", get(alert_page::<L>))
        .route("/console/alerts/{alert_id}/acknowledge", post(acknowledge::<L>))
        .with_state(state)
}

/// `/console` when the console is off: it says so, and why.
pub fn off_router() -> Router {
    let off = || async {
        render(
            StatusCode::NOT_FOUND,
            "console/message.html",
            json!({
                "title": "The console is off",
                "kind": "refused",
                "message": "airlock serves the console only with the company's identity provider configured \
                            (--oidc-issuer) and a reviewer or operator group named (--console-reviewer-group, \
                            --console-operator-group). Without them nobody can sign in, so it is not served.",
            }),
        )
    };
    Router::new().route("/console", get(off)).route("/console/{*rest}", get(off).post(off))
}

fn cookie_name(provider: &Provider) -> &'static str {
    if provider.secure_cookies() { SESSION_COOKIE_SECURE } else { SESSION_COOKIE }
}

fn session_cookie(provider: &Provider, token: &str, max_age_ms: u64) -> HeaderValue {
    let secure = if provider.secure_cookies() { "; Secure" } else { "" };
    let cookie = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        cookie_name(provider),
        max_age_ms / 1000
    );
    HeaderValue::from_str(&cookie).expect("a session token is hex")
}

/// The session the request's cookie names, if it is live.
async fn session<L: EventLog>(state: &ConsoleState<L>, headers: &HeaderMap) -> Option<(String, Session)> {
    let token = crate::http::step_up::cookie(headers, cookie_name(&state.provider))?.to_string();
    if token.len() != 64 || !token.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    let console = state.console.clone();
    let looked_up = token.clone();
    let found = tokio::task::spawn_blocking(move || console.sessions.find(&looked_up, wall_clock_ms())).await;
    match found {
        Ok(Ok(Some(session))) => Some((token, session)),
        Ok(Ok(None)) => None,
        Ok(Err(error)) => {
            tracing::warn!(%error, "console: the sessions could not be read");
            None
        }
        Err(_) => None,
    }
}

/// The sign-in page, for a request without a live session.
fn signed_out<L: EventLog>(state: &ConsoleState<L>, problem: Option<&str>) -> Response {
    render(
        if problem.is_some() { StatusCode::FORBIDDEN } else { StatusCode::OK },
        "console/signin.html",
        json!({ "title": "airlock console", "issuer": state.provider.issuer(), "problem": problem }),
    )
}

/// The answer to a POST without a live session: nothing was done.
fn session_ended<L: EventLog>(state: &ConsoleState<L>) -> Response {
    render(
        StatusCode::UNAUTHORIZED,
        "console/signin.html",
        json!({
            "title": "airlock console",
            "issuer": state.provider.issuer(),
            "problem": "Your session has ended (you signed out, or it was idle too long): sign in again. Nothing was \
                        changed.",
        }),
    )
}

/// A refusal page for a signed-in person.
fn refused(session: &Session, status: StatusCode, title: &str, message: &str) -> Response {
    render(
        status,
        "console/message.html",
        json!({
            "title": title,
            "kind": "refused",
            "message": message,
            "person": session.person,
            "roles": session.role_names(),
            "csrf": session.csrf,
            "next": json!({ "href": "/console", "text": "Back to the review queue" }),
        }),
    )
}

async fn sign_in<L: EventLog + 'static>(State(state): State<ConsoleState<L>>) -> Response {
    match state.provider.start(PURPOSE, None, &state.console.config.scopes).await {
        Ok((url, flow)) => {
            let cookie = crate::http::step_up::flow_cookie(
                PURPOSE,
                &flow.seal(&state.service.keys),
                state.provider.secure_cookies(),
                true,
            );
            let mut response = Redirect::to(&url).into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Err(error) => {
            tracing::warn!(%error, "console sign-in could not start");
            signed_out(&state, Some("The identity provider cannot be reached just now. Try again in a minute."))
        }
    }
}

/// The end of a console sign-in (`/oidc/callback` for a flow of `PURPOSE`): a session for a person in a reviewer or
/// operator group, then the queue. The page that follows the provider's redirect links on to the console itself, so
/// that the browser sends the `SameSite=Strict` cookie: a redirect chain begun at the provider would not.
pub async fn signed_in<L: EventLog>(state: &ConsoleState<L>, sign_in: Result<SignIn, OidcError>) -> Response {
    let refused = |problem: &str| signed_out(state, Some(problem));
    let sign_in = match sign_in {
        Ok(sign_in) => sign_in,
        Err(error) => {
            tracing::warn!(%error, "console sign-in refused");
            return refused(&format!("The sign-in could not be used: {error}."));
        }
    };
    let (person, roles) = match state.console.person_of(&sign_in) {
        Ok(found) => found,
        Err(problem) => {
            tracing::warn!(subject = %sign_in.subject, "console sign-in refused: no console role, or no usable id");
            return refused(&problem);
        }
    };
    let console = state.console.clone();
    let (who, what) = (person.clone(), roles.clone());
    let created = tokio::task::spawn_blocking(move || console.sessions.create(&who, &what, wall_clock_ms())).await;
    let token = match created {
        Ok(Ok(token)) => token,
        _ => return refused("The session could not be recorded just now. Try again in a minute."),
    };
    tracing::info!(person = %person, roles = ?roles, "console: signed in");
    let names: Vec<String> = roles.iter().map(ToString::to_string).collect();
    let mut response = render(
        StatusCode::OK,
        "console/message.html",
        json!({
            "title": "Signed in",
            "kind": "done",
            "refresh": "/console",
            "message": format!("Signed in as {person} ({}).", names.join(", ")),
            "next": json!({ "href": "/console", "text": "Continue to the console" }),
        }),
    );
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&state.provider, &token, ABSOLUTE_MS));
    response
}

#[derive(Deserialize, Default)]
struct QueueFilter {
    #[serde(default)]
    status: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    age: String,
}

const STATES: [&str; 9] =
    ["requested", "in_review", "cooling_off", "executing", "executed", "denied", "cancelled", "expired", "rolled_back"];
const AGES: [(&str, u64); 4] =
    [("1 hour", 3_600_000), ("1 day", 86_400_000), ("7 days", 7 * 86_400_000), ("30 days", 30 * 86_400_000)];

async fn queue<L: EventLog + 'static>(
    State(state): State<ConsoleState<L>>,
    headers: HeaderMap,
    Query(filter): Query<QueueFilter>,
) -> Response {
    let Some((_, session)) = session(&state, &headers).await else { return signed_out(&state, None) };
    let filtered = !filter.status.is_empty() || !filter.account.is_empty() || !filter.age.is_empty();
    let now = state.service.clock.now();
    let answer = if filtered {
        let mut list = json!({ "limit": 200 });
        if STATES.contains(&filter.status.as_str()) {
            list["status"] = json!(filter.status);
        }
        if check_identifier("account", filter.account.trim()).is_ok() {
            list["account_id"] = json!(filter.account.trim());
        }
        if let Some((_, ms)) = AGES.iter().find(|(name, _)| *name == filter.age) {
            list["since"] = json!(now.0.saturating_sub(*ms));
        }
        ask(&state, &session, json!({ "query": "case_list", "filter": list })).await
    } else {
        ask(&state, &session, json!({ "query": "review_queue" })).await
    };
    let Ok(answer) = answer else {
        return refused(
            &session,
            StatusCode::SERVICE_UNAVAILABLE,
            "Please try again",
            "The cases could not be read now.",
        );
    };
    let mut items = answer["items"].as_array().cloned().unwrap_or_default();
    for item in &mut items {
        if let Some(ms) = item["waiting_ms"].as_u64() {
            item["waited"] = json!(crate::cli::store::span(ms));
        }
    }
    render(
        StatusCode::OK,
        "console/queue.html",
        json!({
            "title": if filtered { "Cases" } else { "Review queue" },
            "wide": true,
            "person": session.person,
            "roles": session.role_names(),
            "csrf": session.csrf,
            "queue": !filtered,
            "items": items,
            "more": answer["more"].as_bool().unwrap_or(false),
            "states": STATES,
            "ages": AGES.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
            "filter": json!({ "status": filter.status, "account": filter.account, "age": filter.age }),
        }),
    )
}

/// A query as the command line asks it, as the signed-in person.
async fn ask<L: EventLog>(state: &ConsoleState<L>, session: &Session, query: Value) -> Result<Value, String> {
    let answer = crate::intake::query::answer(&state.service, &session.reader(), query.to_string().as_bytes()).await;
    match answer.get("error") {
        Some(error) => Err(error["reason"].as_str().unwrap_or("unavailable").to_string()),
        None => Ok(answer),
    }
}

async fn case_page<L: EventLog + 'static>(
    State(state): State<ConsoleState<L>>,
    headers: HeaderMap,
    Path(case_id): Path<String>,
) -> Response {
    let Some((_, session)) = session(&state, &headers).await else { return signed_out(&state, None) };
    show_case(&state, &session, &case_id, None).await
}

async fn show_case<L: EventLog>(
    state: &ConsoleState<L>,
    session: &Session,
    case_id: &str,
    outcome: Option<Value>,
) -> Response {
    if check_identifier("case_id", case_id).is_err() {
        return refused(session, StatusCode::BAD_REQUEST, "No such case", "That is not a case id.");
    }
    let view = ask(state, session, json!({ "query": "case_view", "case_id": case_id })).await;
    let evidence = ask(state, session, json!({ "query": "evidence", "case_id": case_id })).await;
    let history = ask(state, session, json!({ "query": "history", "case_id": case_id })).await;
    let (Ok(view), Ok(evidence), Ok(history)) = (view, evidence, history) else {
        return refused(
            session,
            StatusCode::SERVICE_UNAVAILABLE,
            "Please try again",
            "The case could not be read now.",
        );
    };
    if view["case"].is_null() || evidence["evidence"].is_null() {
        return refused(session, StatusCode::NOT_FOUND, "No such case", &format!("There is no case {case_id}."));
    }
    let engines = crate::policy::retake::Engines::with(vec![state.service.policy.clone()]);
    let mut events = history["events"].as_array().cloned().unwrap_or_default();
    for event in &mut events {
        let recorded = serde_json::from_value::<crate::core::policy::PolicyDecision>(event["decision"].clone());
        if let Ok(recorded) = recorded {
            event["retaken"] = json!(match engines.retake(&recorded) {
                crate::policy::retake::Retaken::Same => "the same",
                crate::policy::retake::Retaken::Differs(_) => "DIFFERENT",
                crate::policy::retake::Retaken::NotLoaded => "not retaken (policy version not loaded)",
            });
        }
    }
    let evidence = &evidence["evidence"];
    render(
        StatusCode::OK,
        "console/case.html",
        json!({
            "title": format!("Case {case_id}"),
            "wide": true,
            "person": session.person,
            "roles": session.role_names(),
            "csrf": session.csrf,
            "case": view["case"],
            "evidence": evidence,
            "account": evidence["account"],
            "history": events,
            "outcome": outcome,
            "may_decide": session.has(Role::Reviewer),
            "operator": session.has(Role::Operator),
            "command_id": new_id("console"),
        }),
    )
}

/// What every console POST carries.
#[derive(Deserialize)]
struct Posted {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    command_id: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    action_hash: String,
    /// A rollback indicator (`destination-domain=...`, `source-network=...`), how far back, and the cases previewed.
    #[serde(default)]
    indicator: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    cases: String,
    /// An alert acknowledged as no campaign (a checkbox: present when ticked).
    #[serde(default)]
    benign: String,
}

/// Whether a POST is the console's own: the session's CSRF token, and, where the browser says where it comes from,
/// this origin.
fn same_origin<L: EventLog>(state: &ConsoleState<L>, headers: &HeaderMap, session: &Session, posted: &Posted) -> bool {
    use subtle::ConstantTimeEq;
    let token_right: bool = session.csrf.as_bytes().ct_eq(posted.csrf.as_bytes()).into();
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let site = header("sec-fetch-site");
    let site_right = site.is_none_or(|site| site == "same-origin");
    // Every page is sent with `Referrer-Policy: no-referrer`, under which Chromium sends `Origin: null` even from the
    // page's own origin: "null" says nothing, and the fetch metadata (same-origin) and the token decide.
    let origin_right = header("origin").is_none_or(|origin| {
        origin == state.provider.public_origin() || (origin == "null" && site == Some("same-origin"))
    });
    if !(token_right && origin_right && site_right) {
        tracing::info!(token_right, origin_right, site_right, "console: a POST not from a console page refused");
    }
    token_right && origin_right && site_right
}

/// The session of a POST that may act: live, the console's own (`same_origin`), of a person with `role` if one is
/// named; else the page that says why nothing was done.
async fn posting<L: EventLog>(
    state: &ConsoleState<L>,
    headers: &HeaderMap,
    posted: &Posted,
    role: Option<Role>,
) -> Result<(String, Session), Response> {
    let Some((token, session)) = session(state, headers).await else { return Err(session_ended(state)) };
    if !same_origin(state, headers, &session, posted) {
        return Err(not_ours(&session));
    }
    match role {
        Some(role) if !session.has(role) => {
            tracing::warn!(person = %session.person, roles = ?session.roles, needed = %role, "console: an action refused for its role");
            let message = format!("This is for {role}s, and you are not one.");
            Err(refused(&session, StatusCode::FORBIDDEN, "Not allowed", &message))
        }
        Some(_) | None => Ok((token, session)),
    }
}

fn not_ours(session: &Session) -> Response {
    refused(
        session,
        StatusCode::FORBIDDEN,
        "Not sent from the console",
        "This request did not come from a console page of this session (it may be forged, or the page was older than \
         your session). Nothing was changed. Open the page again and retry.",
    )
}

/// `command` (the JSON every front door takes) sent through the intake path as the signed-in person in `role`.
async fn send<L: EventLog>(
    state: &ConsoleState<L>,
    session: &Session,
    role: Role,
    command_type: CommandType,
    command: Value,
) -> crate::intake::Reply {
    crate::intake::handle_json(&state.service, &session.actor(role), command_type, command.to_string().as_bytes()).await
}

/// The outcome of a command, for the page that follows it: `done` (and the case's state, for a case), or the refusal.
fn outcome(reply: &crate::intake::Reply, done: &str) -> Value {
    match (reply.accepted, &reply.status) {
        (true, Some(status)) => json!({ "kind": "done", "message": format!("{done} The case is now {status}.") }),
        (true, None) => json!({ "kind": "done", "message": done }),
        (false, _) => json!({ "kind": "refused", "message": format!("Refused: {}", reply.message) }),
    }
}

async fn decide<L: EventLog + 'static>(
    State(state): State<ConsoleState<L>>,
    headers: HeaderMap,
    Path(case_id): Path<String>,
    axum::Form(posted): axum::Form<Posted>,
) -> Response {
    let (_, session) = match posting(&state, &headers, &posted, Some(Role::Reviewer)).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let (decision, done) = match posted.decision.as_str() {
        "approve" => ("approve", "Approved."),
        "deny" => ("deny", "Denied."),
        _ => return refused(&session, StatusCode::BAD_REQUEST, "Nothing decided", "Choose approve or deny."),
    };
    let mut command = json!({ "version": 1, "command_id": posted.command_id, "case_id": case_id,
                              "decision": decision, "reason": posted.reason });
    if decision == "approve" {
        command["action_hash"] = json!(posted.action_hash);
    }
    let reply = send(&state, &session, Role::Reviewer, CommandType::ReviewDecision, command).await;
    show_case(&state, &session, &case_id, Some(outcome(&reply, done))).await
}

async fn operators<L: EventLog + 'static>(State(state): State<ConsoleState<L>>, headers: HeaderMap) -> Response {
    let Some((_, session)) = session(&state, &headers).await else { return signed_out(&state, None) };
    operators_page(&state, &session, None).await
}

/// What an operators' page shows besides the kill switch: a rollback preview or its results, an audit report.
#[derive(Default)]
struct OperatorsExtra {
    indicator: String,
    since: String,
    preview: Option<Value>,
    rolled: Vec<String>,
    audit: Option<Value>,
}

async fn operators_page<L: EventLog>(state: &ConsoleState<L>, session: &Session, outcome: Option<Value>) -> Response {
    operators_page_with(state, session, outcome, OperatorsExtra::default()).await
}

async fn operators_page_with<L: EventLog>(
    state: &ConsoleState<L>,
    session: &Session,
    outcome: Option<Value>,
    extra: OperatorsExtra,
) -> Response {
    let events = match crate::log::control_events(&state.service.log).await {
        Ok(events) => events,
        Err(_) => {
            return refused(
                session,
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "The kill switch could not be read now.",
            );
        }
    };
    let state_now =
        events.iter().fold(crate::core::control::ControlState::default(), crate::core::control::evolve_control);
    // The active campaign alerts (issue 20); the page says so when they cannot be read, and shows the rest.
    let alerts = ask(state, session, json!({ "query": "alerts" })).await;
    let last = events.iter().rev().find_map(|event| match &event.body {
        crate::core::control::ControlEventBody::AutomationHalted { reason }
        | crate::core::control::ControlEventBody::AutomationResumed { reason } => Some(json!({
            "at": crate::projection::views::rfc3339(event.at),
            "by": event.actor.to_string(),
            "reason": reason.as_untrusted_str(),
        })),
        crate::core::control::ControlEventBody::BaselineAttested { .. } => None,
    });
    render(
        StatusCode::OK,
        "console/operators.html",
        json!({
            "title": "Operators",
            "wide": true,
            "person": session.person,
            "roles": session.role_names(),
            "csrf": session.csrf,
            "halted": state_now.halted,
            "last": last,
            "outcome": outcome,
            "operator": session.has(Role::Operator),
            "command_id": new_id("console"),
            "ages": AGES.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
            "indicator": extra.indicator,
            "since": extra.since,
            "preview": extra.preview,
            "rolled": extra.rolled,
            "audit": extra.audit,
            "alerts": alerts.as_ref().ok().map(|answer| alerts_shown(&answer["alerts"])),
            "more_alerts": alerts.as_ref().ok().map(|answer| answer["more"].clone()),
        }),
    )
}

/// Alerts as the pages show them: times in RFC 3339, the window in words.
fn alerts_shown(alerts: &Value) -> Vec<Value> {
    let time = |value: &Value| crate::projection::views::rfc3339(crate::core::ids::UnixMs(value.as_u64().unwrap_or(0)));
    alerts
        .as_array()
        .into_iter()
        .flatten()
        .map(|alert| {
            let mut shown = alert.clone();
            shown["first"] = json!(time(&alert["first_at"]));
            shown["last"] = json!(time(&alert["last_at"]));
            shown["window"] = json!(
                humantime::format_duration(std::time::Duration::from_millis(alert["window_ms"].as_u64().unwrap_or(0)))
                    .to_string()
            );
            shown
        })
        .collect()
}

async fn alert_page<L: EventLog + 'static>(
    State(state): State<ConsoleState<L>>,
    headers: HeaderMap,
    Path(alert_id): Path<String>,
) -> Response {
    let Some((_, session)) = session(&state, &headers).await else { return signed_out(&state, None) };
    show_alert(&state, &session, &alert_id, None).await
}

async fn show_alert<L: EventLog>(
    state: &ConsoleState<L>,
    session: &Session,
    alert_id: &str,
    outcome: Option<Value>,
) -> Response {
    if check_identifier("alert_id", alert_id).is_err() {
        return refused(session, StatusCode::BAD_REQUEST, "No such alert", "That is not an alert id.");
    }
    let answer = match ask(state, session, json!({ "query": "alert", "alert_id": alert_id })).await {
        Ok(answer) => answer,
        Err(_) => {
            return refused(
                session,
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "The alert could not be read now.",
            );
        }
    };
    if answer["alert"].is_null() {
        return refused(session, StatusCode::NOT_FOUND, "No such alert", &format!("There is no alert {alert_id}."));
    }
    let alert = alerts_shown(&json!([answer["alert"]])).remove(0);
    render(
        StatusCode::OK,
        "console/alert.html",
        json!({
            "title": format!("Alert {alert_id}"),
            "wide": true,
            "person": session.person,
            "roles": session.role_names(),
            "csrf": session.csrf,
            "alert": alert,
            "cases": answer["case_ids"],
            "more_cases": answer["more_cases"],
            "outcome": outcome,
            "operator": session.has(Role::Operator),
            "command_id": new_id("console"),
        }),
    )
}

/// An operator acknowledges an alert from its page.
async fn acknowledge<L: EventLog + 'static>(
    State(state): State<ConsoleState<L>>,
    headers: HeaderMap,
    Path(alert_id): Path<String>,
    axum::Form(posted): axum::Form<Posted>,
) -> Response {
    let (_, session) = match posting(&state, &headers, &posted, Some(Role::Operator)).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let benign = !posted.benign.is_empty();
    let command = json!({ "version": 1, "command_id": posted.command_id, "alert_id": alert_id,
                          "reason": posted.reason, "benign": benign });
    let reply = send(&state, &session, Role::Operator, CommandType::AcknowledgeAlert, command).await;
    let done = if benign { "Acknowledged as no campaign." } else { "Acknowledged." };
    show_alert(&state, &session, &alert_id, Some(outcome(&reply, done))).await
}

async fn switch<L: EventLog + 'static>(
    State(state): State<ConsoleState<L>>,
    headers: HeaderMap,
    Path(switch): Path<String>,
    axum::Form(posted): axum::Form<Posted>,
) -> Response {
    let (_, session) = match posting(&state, &headers, &posted, Some(Role::Operator)).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let (command_type, done) = match switch.as_str() {
        "halt" => (CommandType::Halt, "Automation is halted."),
        "resume" => (CommandType::Resume, "Automation runs again."),
        _ => return refused(&session, StatusCode::NOT_FOUND, "No such switch", "Halt or resume."),
    };
    let command = json!({ "version": 1, "command_id": posted.command_id, "reason": posted.reason });
    let reply = send(&state, &session, Role::Operator, command_type, command).await;
    operators_page(&state, &session, Some(outcome(&reply, done))).await
}

async fn sign_out<L: EventLog + 'static>(
    State(state): State<ConsoleState<L>>,
    headers: HeaderMap,
    axum::Form(posted): axum::Form<Posted>,
) -> Response {
    let (token, session) = match posting(&state, &headers, &posted, None).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let console = state.console.clone();
    let _ = tokio::task::spawn_blocking(move || console.sessions.end(&token, wall_clock_ms())).await;
    tracing::info!(person = %session.person, "console: signed out");
    let mut response = render(
        StatusCode::OK,
        "console/message.html",
        json!({
            "title": "Signed out",
            "kind": "done",
            "message": "You are signed out of the console.",
            "next": json!({ "href": "/console", "text": "Sign in again" }),
        }),
    );
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&state.provider, "", 0));
    response
}

/// The executed cases `posted`'s indicator matches since its age (operators; a dry run changes nothing).
async fn matching<L: EventLog>(
    state: &ConsoleState<L>,
    session: &Session,
    posted: &Posted,
) -> Result<Vec<Value>, String> {
    let since = AGES.iter().find(|(name, _)| *name == posted.since).map_or(AGES[1].1, |(_, ms)| *ms);
    let since_ms = state.service.clock.now().0.saturating_sub(since);
    let query = json!({ "query": "executed_matching", "match": posted.indicator.trim(), "since_ms": since_ms });
    let answer =
        crate::intake::query::answer(&state.service, &session.actor(Role::Operator), query.to_string().as_bytes())
            .await;
    match answer.get("error") {
        Some(error) => Err(error["reason"].as_str().unwrap_or("unavailable").to_string()),
        None => Ok(answer["cases"].as_array().cloned().unwrap_or_default()),
    }
}

async fn rollback_preview<L: EventLog + 'static>(
    State(state): State<ConsoleState<L>>,
    headers: HeaderMap,
    axum::Form(posted): axum::Form<Posted>,
) -> Response {
    let (_, session) = match posting(&state, &headers, &posted, Some(Role::Operator)).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let extra =
        OperatorsExtra { indicator: posted.indicator.clone(), since: posted.since.clone(), ..Default::default() };
    match matching(&state, &session, &posted).await {
        Ok(cases) => {
            let extra = OperatorsExtra { preview: Some(Value::Array(cases)), ..extra };
            operators_page_with(&state, &session, None, extra).await
        }
        Err(reason) => {
            let refusal = json!({ "kind": "refused", "message": format!("Nothing to show: {reason}") });
            operators_page_with(&state, &session, Some(refusal), extra).await
        }
    }
}

/// Rolls back the previewed cases that the indicator still matches, each as its own command (so a retried form
/// rolls back nothing twice), and says what became of each.
async fn rollback_matching<L: EventLog + 'static>(
    State(state): State<ConsoleState<L>>,
    headers: HeaderMap,
    axum::Form(posted): axum::Form<Posted>,
) -> Response {
    let (_, session) = match posting(&state, &headers, &posted, Some(Role::Operator)).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let previewed: Vec<&str> = posted.cases.split(',').filter(|case| !case.is_empty()).collect();
    let still = match matching(&state, &session, &posted).await {
        Ok(cases) => cases,
        Err(reason) => {
            let refusal = json!({ "kind": "refused", "message": format!("Nothing rolled back: {reason}") });
            return operators_page(&state, &session, Some(refusal)).await;
        }
    };
    let mut rolled = Vec::new();
    for case in still.iter().filter_map(|case| case["case_id"].as_str()).filter(|case| previewed.contains(case)) {
        let command = json!({ "version": 1, "command_id": format!("{}-{case}", posted.command_id), "case_id": case,
                              "reason": posted.reason });
        let reply = send(&state, &session, Role::Operator, CommandType::RollBack, command).await;
        rolled.push(match reply.accepted {
            true => format!("{case}: rolled back ({})", reply.status.map_or("", |status| status.name())),
            false => format!("{case}: refused: {}", reply.message),
        });
    }
    let skipped = previewed.len().saturating_sub(rolled.len());
    let message = format!("{} case(s) rolled back or refused as listed; {skipped} no longer matched.", rolled.len());
    let extra = OperatorsExtra { rolled, ..Default::default() };
    operators_page_with(&state, &session, Some(json!({ "kind": "done", "message": message })), extra).await
}

async fn audit<L: EventLog + 'static>(
    State(state): State<ConsoleState<L>>,
    headers: HeaderMap,
    axum::Form(posted): axum::Form<Posted>,
) -> Response {
    let (_, session) = match posting(&state, &headers, &posted, Some(Role::Operator)).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let query = json!({ "query": "verify" }).to_string();
    let answer = crate::intake::query::answer(&state.service, &session.actor(Role::Operator), query.as_bytes()).await;
    match answer.get("error") {
        Some(error) => {
            let reason = error["reason"].as_str().unwrap_or("unavailable");
            let refusal = json!({ "kind": "refused", "message": format!("The audit did not run: {reason}") });
            operators_page(&state, &session, Some(refusal)).await
        }
        None => {
            let extra = OperatorsExtra { audit: Some(answer["report"].clone()), ..Default::default() };
            operators_page_with(&state, &session, None, extra).await
        }
    }
}

/// An operator's rollback or cancel of one case, from its page.
async fn case_command<L: EventLog + 'static>(
    State(state): State<ConsoleState<L>>,
    headers: HeaderMap,
    Path((case_id, command)): Path<(String, String)>,
    axum::Form(posted): axum::Form<Posted>,
) -> Response {
    let (_, session) = match posting(&state, &headers, &posted, Some(Role::Operator)).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let (command_type, done) = match command.as_str() {
        "rollback" => (CommandType::RollBack, "Rolled back."),
        "cancel" => (CommandType::Cancel, "Cancelled."),
        _ => return refused(&session, StatusCode::NOT_FOUND, "No such command", "Roll back or cancel."),
    };
    let command = json!({ "version": 1, "command_id": posted.command_id, "case_id": case_id, "reason": posted.reason });
    let reply = send(&state, &session, Role::Operator, command_type, command).await;
    show_case(&state, &session, &case_id, Some(outcome(&reply, done))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves a console session ends after `IDLE_MS` without a request (each request restarts that time), at
    // `ABSOLUTE_MS` after sign-in however busy it is, and when signed out; and that `access.db` holds no token.
    #[test]
    fn a_session_ends_when_idle_at_its_absolute_limit_and_when_signed_out() {
        let scratch = tempfile::tempdir().unwrap();
        let sessions = Sessions::open(&scratch.path().join("access.db")).unwrap();
        let start = 1_800_000_000_000;
        let idle = sessions.create("rita", &[Role::Reviewer], start).unwrap();
        assert!(sessions.find(&idle, start + IDLE_MS - 1).unwrap().is_some());
        let later = start + 2 * IDLE_MS - 2;
        assert!(sessions.find(&idle, later).unwrap().is_some(), "a request did not restart the idle time");
        assert!(sessions.find(&idle, later + IDLE_MS).unwrap().is_none(), "an idle session still works");
        // The wall clock stepped back: an ended session stays ended.
        assert!(sessions.find(&idle, later + 1).unwrap().is_none(), "an expired session came back");

        let busy = sessions.create("rob", &[Role::Reviewer], start).unwrap();
        let mut now = start;
        while now + IDLE_MS / 2 < start + ABSOLUTE_MS {
            now += IDLE_MS / 2;
            assert!(sessions.find(&busy, now).unwrap().is_some());
        }
        assert!(sessions.find(&busy, start + ABSOLUTE_MS).unwrap().is_none(), "a session outlived its limit");

        let ended = sessions.create("olga", &[Role::Operator], start).unwrap();
        sessions.end(&ended, start + 1).unwrap();
        assert!(sessions.find(&ended, start + 2).unwrap().is_none(), "a signed-out session still works");

        let connection = sessions.connection.lock().unwrap();
        let dump: Vec<String> = connection
            .prepare("SELECT hex(token_sha256) || person || roles FROM console_sessions")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for token in [&idle, &busy, &ended] {
            assert!(dump.iter().all(|row| !row.to_lowercase().contains(token.as_str())), "a token is stored");
        }
    }
}
