//! The owner's sign-in at the company's OpenID Connect provider, as the second factor of a proof (issue 18, item 6;
//! `crate::oidc` says what is checked). Served only when `serve` has a provider (`--oidc-issuer`):
//! - `GET /oidc/start?case=C` starts a flow: the flow's secrets go into an HttpOnly cookie signed with airlock's key
//!   (`SameSite=Lax`, so that the provider's redirect back brings it; behind an `https://` public address `Secure`
//!   and named `__Host-…`, so that no sibling subdomain can plant one), and the browser is sent to the provider with
//!   `prompt=login`. Opening it changes nothing in airlock.
//! - `GET /oidc/callback` finishes it: the cookie's state must match, the ID token must verify, the sign-in must be
//!   fresh and show a second factor; then the verification form is shown with what the sign-in proved, sealed, for
//!   the code typed with it. Whether the provider's subject is the case's account is decided with the code, where a
//!   wrong one counts like a wrong authenticator code.

use crate::http::{SecondOnForm, message, templates, verify_form_page};
use crate::log::EventLog;
use crate::oidc::{Flow, OidcError, Provider, STEP_UP_TTL_MS, SignIn, StepUp, second_factor_time, wall_clock_ms};
use crate::service::Service;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use std::sync::Arc;

/// The cookie a flow travels in between its start and `/oidc/callback`, one per purpose (a console sign-in started
/// from a link does not spoil an owner's step-up in progress): `__Host-` behind `https://` (the browser then takes it
/// only if Secure, for the whole host, with no Domain: a sibling subdomain cannot set one).
fn flow_cookie_name(purpose: &str, secure: bool) -> &'static str {
    match (purpose == crate::http::console::PURPOSE, secure) {
        (false, false) => "airlock_oidc_flow",
        (false, true) => "__Host-airlock_oidc_flow",
        (true, false) => "airlock_console_flow",
        (true, true) => "__Host-airlock_console_flow",
    }
}
/// Callbacks finished at once, per purpose: each asks the provider to redeem a code, and anyone can start a flow, so
/// a flood of made-up codes must not turn airlock into a flood at the provider, nor shut reviewers out while owners
/// sign in. Past it, "try again".
const CALLBACKS_IN_FLIGHT_MAX: usize = 8;
/// The most finished flows remembered (each until its flow would have expired), so that one is used once.
const SPENT_FLOWS_MAX: usize = 10_000;
/// What a step-up flow is marked with, so that a flow of another purpose (the console's) is never taken for one.
const PURPOSE: &str = "step-up";

pub struct StepUpState<L: EventLog> {
    pub service: Arc<Service<L>>,
    pub provider: Arc<Provider>,
    /// Slots for step-up callbacks and for console callbacks.
    pub callbacks: Arc<(tokio::sync::Semaphore, tokio::sync::Semaphore)>,
    /// The flows finished (their `state`), and until when each is remembered.
    spent: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
    /// The console, whose sign-ins end at the same callback (one redirect URI to register at the provider).
    pub console: Option<Arc<crate::http::console::Console>>,
}

impl<L: EventLog> StepUpState<L> {
    pub fn new(
        service: Arc<Service<L>>,
        provider: Arc<Provider>,
        console: Option<Arc<crate::http::console::Console>>,
    ) -> Self {
        let slots = || tokio::sync::Semaphore::new(CALLBACKS_IN_FLIGHT_MAX);
        let callbacks = Arc::new((slots(), slots()));
        StepUpState { service, provider, callbacks, spent: Arc::default(), console }
    }
}

impl<L: EventLog> Clone for StepUpState<L> {
    fn clone(&self) -> Self {
        StepUpState {
            service: self.service.clone(),
            provider: self.provider.clone(),
            callbacks: self.callbacks.clone(),
            spent: self.spent.clone(),
            console: self.console.clone(),
        }
    }
}

pub fn router<L: EventLog + 'static>(state: StepUpState<L>) -> Router {
    Router::new().route("/oidc/start", get(start::<L>)).route("/oidc/callback", get(callback::<L>)).with_state(state)
}

#[derive(Deserialize)]
struct StartQuery {
    case: Option<String>,
}

async fn start<L: EventLog + 'static>(
    State(state): State<StepUpState<L>>,
    Query(query): Query<StartQuery>,
) -> Response {
    let Some(case) = query.case.filter(|case| crate::core::text::check_identifier("case_id", case).is_ok()) else {
        return super::invalid_link();
    };
    match state.provider.start(PURPOSE, Some(case), &[]).await {
        Ok((url, flow)) => {
            let cookie = flow_cookie(PURPOSE, &flow.seal(&state.service.keys), state.provider.secure_cookies(), true);
            let mut response = Redirect::to(&url).into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Err(error) => {
            tracing::warn!(%error, "step-up sign-in could not start");
            unavailable()
        }
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

async fn callback<L: EventLog + 'static>(
    State(state): State<StepUpState<L>>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let secure = state.provider.secure_cookies();
    // The flow and its state are checked before anything is asked of the provider, and a flow is finished once.
    let flow = open_flow(&state, &headers, query.state.as_deref()).and_then(|flow| spend(&state, flow));
    let purpose = flow.as_ref().map_or(PURPOSE, |flow| flow.purpose.as_str()).to_string();
    let slots = if purpose == crate::http::console::PURPOSE { &state.callbacks.1 } else { &state.callbacks.0 };
    let Ok(_permit) = slots.try_acquire() else {
        tracing::warn!(in_flight = CALLBACKS_IN_FLIGHT_MAX, purpose, "sign-in: too many callbacks at once");
        return unavailable();
    };
    // The flow is spent whatever happened: its cookie goes.
    let mut response = match (&flow, &state.console) {
        // A console sign-in ends in a session (`console::signed_in`).
        (Ok(flow), Some(console)) if flow.purpose == crate::http::console::PURPOSE => {
            let answer = answered(&state, flow, &query).await;
            let console = crate::http::console::ConsoleState {
                service: state.service.clone(),
                provider: state.provider.clone(),
                console: console.clone(),
            };
            crate::http::console::signed_in(&console, answer).await
        }
        _ => step_up_answer(finish(&state, flow, &query).await),
    };
    response.headers_mut().append(header::SET_COOKIE, flow_cookie(&purpose, "", secure, false));
    response
}

/// Marks `flow` finished, or says it was already: an answer replayed with its cookie asks the provider nothing.
fn spend<L: EventLog>(state: &StepUpState<L>, flow: Flow) -> Result<Flow, OidcError> {
    let now = wall_clock_ms();
    let mut spent = state.spent.lock().expect("the spent flows lock is never poisoned");
    spent.retain(|_, until| *until > now);
    if spent.len() >= SPENT_FLOWS_MAX {
        return Err(OidcError::Provider("too many sign-ins at once; try again in a few minutes".to_string()));
    }
    match spent.insert(flow.state().to_string(), flow.started_ms.saturating_add(crate::oidc::FLOW_TTL_MS)) {
        Some(_) => Err(OidcError::FlowExpired),
        None => Ok(flow),
    }
}

/// The page a step-up flow ends on: the code form carrying the sign-in, or why not.
fn step_up_answer(finished: Result<(String, String), (OidcError, Option<String>)>) -> Response {
    match finished {
        Ok((case, step_up)) => verify_form_page(StatusCode::OK, &case, SecondOnForm::SignedIn { step_up: &step_up }),
        Err((error, case)) => {
            tracing::info!(%error, "step-up sign-in refused");
            let status = match error {
                OidcError::Provider(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::BAD_REQUEST,
            };
            let context = serde_json::json!({
                "title": "The sign-in could not be used",
                "message": error.to_string(),
                "retry_case": case,
                "start_again": case.is_none(),
            });
            templates::render(status, "owner/message.html", context)
        }
    }
}

/// The flow a callback answers: of the flow cookies the browser sent (one per purpose), the one airlock signed, still
/// young, whose `state` the provider answered with.
fn open_flow<L: EventLog>(
    state: &StepUpState<L>,
    headers: &HeaderMap,
    answered: Option<&str>,
) -> Result<Flow, OidcError> {
    let secure = state.provider.secure_cookies();
    let mut found = Err(OidcError::FlowExpired);
    for purpose in [PURPOSE, crate::http::console::PURPOSE] {
        let Some(sealed) = cookie(headers, flow_cookie_name(purpose, secure)) else { continue };
        match Flow::open(&state.service.keys, sealed, wall_clock_ms()) {
            Ok(flow) if answered.is_some_and(|answered| flow.state_matches(answered)) => return Ok(flow),
            Ok(_) => found = Err(OidcError::WrongState),
            Err(error) => found = found.or(Err(error)),
        }
    }
    found
}

/// What the provider's answer to `flow` says of the sign-in, verified (the state first, then the provider's error or
/// its code redeemed and the ID token checked), and fresh and with a second factor the deployment accepts.
async fn answered<L: EventLog>(
    state: &StepUpState<L>,
    flow: &Flow,
    query: &CallbackQuery,
) -> Result<SignIn, OidcError> {
    if !query.state.as_deref().is_some_and(|answered| flow.state_matches(answered)) {
        return Err(OidcError::WrongState);
    }
    if let Some(error) = &query.error {
        // The provider's error code, if it looks like one (RFC 6749 codes are lowercase words): never its free text.
        let code = match error.len() <= 40 && error.bytes().all(|byte| byte.is_ascii_lowercase() || byte == b'_') {
            true => error.clone(),
            false => "an error".to_string(),
        };
        return Err(OidcError::Refused(code));
    }
    let code = query.code.as_deref().filter(|code| !code.is_empty() && code.len() <= 2048);
    let code = code.ok_or_else(|| OidcError::Refused("no code".to_string()))?;
    let sign_in = state.provider.finish(flow, code).await?;
    second_factor_time(&sign_in, flow.started_ms, state.provider.step_up_rule())?;
    Ok(sign_in)
}

/// A step-up flow's case and what its sign-in proved, signed; or why not (and the case, when the flow said it).
async fn finish<L: EventLog>(
    state: &StepUpState<L>,
    flow: Result<Flow, OidcError>,
    query: &CallbackQuery,
) -> Result<(String, String), (OidcError, Option<String>)> {
    let flow = flow.map_err(|error| (error, None))?;
    let case = flow.case.clone().filter(|_| flow.purpose == PURPOSE).ok_or((OidcError::WrongState, None))?;
    let sign_in = answered(state, &flow, query).await.map_err(|error| (error, Some(case.clone())))?;
    let auth_time = sign_in.auth_time.unwrap_or_default();
    let until = wall_clock_ms().saturating_add(STEP_UP_TTL_MS);
    let step_up = StepUp { case: case.clone(), subject: sign_in.subject, auth_time, until };
    Ok((case, step_up.seal(&state.service.keys)))
}

/// The flow cookie of `purpose` with `value`; an empty, expired one to remove it.
pub(crate) fn flow_cookie(purpose: &str, value: &str, secure: bool, set: bool) -> HeaderValue {
    let age = if set { crate::oidc::FLOW_TTL_MS / 1000 } else { 0 };
    let name = flow_cookie_name(purpose, secure);
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={age}{secure}");
    HeaderValue::from_str(&cookie).expect("a sealed flow is base64url and hex")
}

/// The value of cookie `name` in the request, if it has exactly one: two of one name mean one was planted (by a
/// sibling subdomain, for another path), and neither is trusted.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter_map(|(key, value)| (key == name).then_some(value));
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

fn unavailable() -> Response {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again",
        "The sign-in cannot start just now. Try again in a minute, or go back and enter the code alone.",
    )
}
