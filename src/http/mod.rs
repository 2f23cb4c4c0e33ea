//! airlock's own web endpoint (`airlock serve --http ADDR`). For account owners: the verification page where a code
//! (and an authenticator code, where the account has one) is entered, a JSON endpoint for the same, and the page a
//! cancel link opens. No intake actor reaches any of this: a support chat can send the owner here, never act for them.
//! For support desks: the HTTP intake (`requests.rs`), which can open a case and read its public status, nothing more.
//!
//! What it promises:
//! - a code only ever travels in a POST body, is hashed by the service at once, and is never echoed, logged or put
//!   in a URL;
//! - opening a link changes nothing: mail scanners fetch links, so the cancel link shows a page whose button sends
//!   the cancel (a POST), and the verification link only shows the form;
//! - every answer is `no-store`, framed by nobody, sends no referrer (the cancel token is in the link) and runs no
//!   script;
//! - bodies over `COMMAND_BYTES_MAX` are refused before they are read.

pub mod api_keys;
pub mod console;
pub mod requests;
pub mod step_up;
pub mod templates;

use crate::core::actor::{Actor, Role};
use crate::core::ids::{CaseId, DestinationId};
use crate::core::limits;
use crate::core::rejection::Rejection;
use crate::core::state::Status;
use crate::core::text::check_identifier;
use crate::http::api_keys::ApiKeys;
use crate::intake::{self, ErrorCode, Reply, ReplyStatus};
use crate::log::EventLog;
use crate::service::{Service, new_id};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::sync::Arc;

/// The actor every proof from the page is recorded under: the page cannot tell which destination the owner read
/// the code at, and the challenge binds the code to its case anyway.
pub const PAGE_ACTOR_ID: &str = "verification-page";

/// The routes, for `serve` to bind and for tests to drive: the owners' pages, and the HTTP intake for requesters
/// holding an API key from `keys`.
pub fn router<L: EventLog + 'static>(
    service: Arc<Service<L>>,
    keys: Arc<ApiKeys>,
    sending: Arc<crate::service::Sending>,
    sign_ins: Option<SignIns>,
) -> Router {
    let requests = requests::router(requests::IntakeState { service: service.clone(), keys, sending });
    let step_up = match sign_ins {
        Some(SignIns { provider, console }) => {
            let console_routes = match &console {
                Some(console) => console::router(console::ConsoleState {
                    service: service.clone(),
                    provider: provider.clone(),
                    console: console.clone(),
                }),
                None => console::off_router(),
            };
            step_up::router(step_up::StepUpState::new(service.clone(), provider, console)).merge(console_routes)
        }
        None => console::off_router(),
    };
    Router::new()
        .route("/verify", get(verify_page::<L>).post(verify_form::<L>))
        .route("/v1/proofs", axum::routing::post(verify_json::<L>))
        .route("/cancel", get(cancel_page).post(cancel_form::<L>))
        .route("/set-password", get(set_password_page).post(set_password_form::<L>))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(service)
        .merge(requests)
        .merge(step_up)
        .layer(DefaultBodyLimit::max(limits::COMMAND_BYTES_MAX))
        .layer(axum::middleware::map_response(hardened))
}

/// The company's identity provider, where owners prove a second factor (`step_up`) and, with a console configured,
/// reviewers and operators sign in (`console`).
#[derive(Clone)]
pub struct SignIns {
    pub provider: Arc<crate::oidc::Provider>,
    pub console: Option<Arc<console::Console>>,
}

/// Serves `router` on `listener` until `shutdown` resolves; requests in flight finish first, and so do the notices
/// they held back.
pub async fn serve<L: EventLog + 'static>(
    listener: tokio::net::TcpListener,
    service: Arc<Service<L>>,
    (keys, sign_ins): (Arc<ApiKeys>, Option<SignIns>),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sending = Arc::new(crate::service::Sending::default());
    let routes = router(service, keys, sending.clone(), sign_ins);
    let served = axum::serve(listener, routes).with_graceful_shutdown(shutdown).await;
    sending.finish().await;
    served
}

async fn hardened(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed = [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Escapes text for HTML element content and double-quoted attributes.
/// An owners' page that says one thing: `message` is text (the template escapes it), in the layout every page shares.
pub(crate) fn message(status: StatusCode, title: &str, message: &str) -> Response {
    templates::render(status, "owner/message.html", serde_json::json!({ "title": title, "message": message }))
}

fn invalid_link() -> Response {
    message(
        StatusCode::BAD_REQUEST,
        "This link is not valid",
        "Open the link from the message exactly as it arrived, or ask for a new recovery.",
    )
}

#[derive(Deserialize)]
struct VerifyQuery {
    case: Option<String>,
}

/// The form. Opening it changes nothing and reveals nothing about the case.
async fn verify_page<L: EventLog + 'static>(
    State(service): State<Arc<Service<L>>>,
    Query(query): Query<VerifyQuery>,
) -> Response {
    let Some(case_id) = query.case.filter(|case| check_identifier("case_id", case).is_ok()) else {
        return invalid_link();
    };
    let second = match service.sign_in_step_up {
        true => SecondOnForm::SignInOffered,
        false => SecondOnForm::Authenticator,
    };
    verify_form_page(StatusCode::OK, &case_id, second)
}

/// What the verification form offers besides the code.
pub(crate) enum SecondOnForm<'a> {
    /// A field for the authenticator app's code (a directory that checks one, or the embedded directory).
    Authenticator,
    /// That field, and a sign-in at the company's identity provider to use instead.
    SignInOffered,
    /// The owner signed in already: what the sign-in proved, sealed, goes with the code.
    SignedIn { step_up: &'a str },
}

/// The verification form of `case_id`, as a page.
pub(crate) fn verify_form_page(status: StatusCode, case_id: &str, second: SecondOnForm<'_>) -> Response {
    let (offered, step_up) = match second {
        SecondOnForm::Authenticator => (false, None),
        SecondOnForm::SignInOffered => (true, None),
        SecondOnForm::SignedIn { step_up } => (false, Some(step_up)),
    };
    let context = serde_json::json!({
        "title": "Confirm it is you",
        "case_id": case_id,
        "command_id": new_id("page"),
        "sign_in_offered": offered,
        "step_up": step_up,
    });
    templates::render(status, "owner/verify.html", context)
}

/// What the page and the JSON endpoint accept. Unknown fields are refused by the wire parser behind it.
#[derive(Deserialize)]
struct ProofForm {
    case_id: String,
    command_id: String,
    code: String,
    #[serde(default)]
    totp: String,
    #[serde(default)]
    step_up: String,
}

impl std::fmt::Debug for ProofForm {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ProofForm").field("case_id", &self.case_id).finish_non_exhaustive()
    }
}

fn owner() -> Actor {
    Actor::new(Role::Owner, PAGE_ACTOR_ID)
}

/// The form's fields, as the JSON command every front door shares.
fn proof_json(form: &ProofForm) -> Vec<u8> {
    let mut command = serde_json::json!({
        "version": 1,
        "command_id": form.command_id,
        "case_id": form.case_id,
        "code": form.code,
    });
    if !form.totp.trim().is_empty() {
        command["totp"] = serde_json::Value::String(form.totp.clone());
    }
    if !form.step_up.trim().is_empty() {
        command["step_up"] = serde_json::Value::String(form.step_up.clone());
    }
    serde_json::to_vec(&command).expect("a JSON value serializes")
}

async fn verify_form<L: EventLog + 'static>(
    State(service): State<Arc<Service<L>>>,
    axum::Form(form): axum::Form<ProofForm>,
) -> Response {
    let reply = intake::handle_public_proof(&service, &owner(), &proof_json(&form)).await;
    let (status, title, text) = proof_outcome(&reply);
    message(status, title, &text)
}

/// `POST /v1/proofs` with the `submit_proof.v1` JSON command; the answer is the same reply NATS senders get.
async fn verify_json<L: EventLog + 'static>(
    State(service): State<Arc<Service<L>>>,
    body: axum::body::Bytes,
) -> Response {
    let reply = intake::handle_public_proof(&service, &owner(), &body).await;
    let (status, _, _) = proof_outcome(&reply);
    (status, axum::Json(reply)).into_response()
}

/// The owner's view of a proof's outcome. A refusal says what the owner can do about it, never more about the
/// account than the owner already knows.
fn proof_outcome(reply: &Reply) -> (StatusCode, &'static str, String) {
    if reply.accepted {
        let next = match reply.status {
            Some(ReplyStatus::Case(Status::CoolingOff)) => {
                "The change is scheduled. Every contact method already on the account has been told, and any of \
                 them can still cancel it before it takes effect."
            }
            Some(ReplyStatus::Case(Status::InReview)) => {
                "People will review the request before anything changes. You will hear from us."
            }
            Some(ReplyStatus::Case(Status::Denied)) => {
                "The request was not allowed. Nothing on the account has changed."
            }
            _ => "Thank you. The request goes on as described in the message.",
        };
        return (StatusCode::OK, "Verified", next.to_string());
    }
    match reply.code().unwrap_or(&ErrorCode::Unavailable) {
        ErrorCode::Rejected(Rejection::MalformedCommand { .. }) => {
            (StatusCode::BAD_REQUEST, "Not verified", reply.message.clone())
        }
        ErrorCode::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Please try again",
            "We could not check the code just now. Try again in a minute.".to_string(),
        ),
        _ => (StatusCode::UNPROCESSABLE_ENTITY, "Not verified", reply.message.clone()),
    }
}

#[derive(Deserialize)]
struct CancelLink {
    case: Option<String>,
    destination: Option<String>,
    token: Option<String>,
}

fn link_parts(link: &CancelLink) -> Option<(String, String, String)> {
    let case = link.case.clone().filter(|case| check_identifier("case_id", case).is_ok())?;
    let destination = link.destination.clone().filter(|id| check_identifier("destination", id).is_ok())?;
    let token = link.token.clone().filter(|token| token.len() <= limits::ID_BYTES_MAX && !token.is_empty())?;
    Some((case, destination, token))
}

#[derive(Deserialize)]
struct SetPasswordLink {
    case: Option<String>,
    destination: Option<String>,
    until: Option<String>,
    token: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    again: Option<String>,
}

/// The parts of a set-password link, checked for shape (the signature is checked by the service).
fn set_password_parts(link: &SetPasswordLink) -> Option<(String, String, u64, String)> {
    let parts =
        CancelLink { case: link.case.clone(), destination: link.destination.clone(), token: link.token.clone() };
    let (case, destination, token) = link_parts(&parts)?;
    let until = link.until.as_deref()?.parse::<u64>().ok()?;
    Some((case, destination, until, token))
}

/// The form a set-password link opens: the new password, twice. Opening it changes nothing (a mail scanner may).
async fn set_password_page(Query(link): Query<SetPasswordLink>) -> Response {
    let Some((case, destination, until, token)) = set_password_parts(&link) else { return invalid_link() };
    set_password_form_page(StatusCode::OK, "", (&case, &destination, until, &token))
}

fn set_password_form_page(
    status: StatusCode,
    problem: &str,
    (case, destination, until, token): (&str, &str, u64, &str),
) -> Response {
    let context = serde_json::json!({
        "title": "Choose a new password",
        "problem": problem,
        "case": case,
        "destination": destination,
        "until": until,
        "token": token,
        "min": crate::directory::Password::CHARS_MIN,
        "max": crate::directory::Password::CHARS_MAX,
    });
    templates::render(status, "owner/set_password.html", context)
}

async fn set_password_form<L: EventLog + 'static>(
    State(service): State<Arc<Service<L>>>,
    axum::Form(link): axum::Form<SetPasswordLink>,
) -> Response {
    let Some((case, destination, until, token)) = set_password_parts(&link) else { return invalid_link() };
    let typed = link.password.as_deref().unwrap_or_default();
    let password = match crate::directory::Password::new(typed, link.again.as_deref().unwrap_or_default()) {
        Ok(password) => password,
        Err(problem) => {
            return set_password_form_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                problem,
                (&case, &destination, until, &token),
            );
        }
    };
    let (case_id, destination_id) = (CaseId::new(case), DestinationId::new(destination));
    match service.set_password_with_link(&case_id, &destination_id, (until, &token), &password).await {
        Ok(_) => message(
            StatusCode::OK,
            "Password set",
            "Your new password is set. Sign in with it. This link cannot be used again.",
        ),
        Err(crate::service::ServiceError::Rejected(Rejection::PasswordAlreadySet)) => message(
            StatusCode::CONFLICT,
            "Link already used",
            "This link set a password already, and works only once. If that was not you, contact support.",
        ),
        Err(crate::service::ServiceError::Rejected(Rejection::Halted)) => message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Paused",
            "Account changes are paused for now. Try the link again later, while it is still valid.",
        ),
        Err(crate::service::ServiceError::Rejected(_)) => message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "This link cannot set a password",
            "The link is not valid, or its time has passed. Ask for a new recovery if you still cannot sign in.",
        ),
        Err(crate::service::ServiceError::Directory(crate::directory::DirectoryError::Refused(_))) => {
            set_password_form_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Your account's rules did not accept this password: choose another one.",
                (case_id.as_str(), destination_id.as_str(), until, &token),
            )
        }
        Err(crate::service::ServiceError::Directory(
            crate::directory::DirectoryError::NoSuchAccount(_) | crate::directory::DirectoryError::Held { .. },
        )) => message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "This link cannot set a password now",
            "The account cannot take a new password now. Contact support.",
        ),
        Err(error) => {
            tracing::warn!(%error, "set-password link: the directory or the log is unavailable");
            message(StatusCode::SERVICE_UNAVAILABLE, "Please try again", "Try the link again in a minute.")
        }
    }
}

/// The page a cancel link opens: a confirmation button, so that a scanner fetching the link cancels nothing.
async fn cancel_page(Query(link): Query<CancelLink>) -> Response {
    let Some((case, destination, token)) = link_parts(&link) else { return invalid_link() };
    let context = serde_json::json!({
        "title": "Cancel a scheduled change?", "case": case, "destination": destination, "token": token,
    });
    templates::render(StatusCode::OK, "owner/cancel.html", context)
}

async fn cancel_form<L: EventLog + 'static>(
    State(service): State<Arc<Service<L>>>,
    axum::Form(link): axum::Form<CancelLink>,
) -> Response {
    let Some((case, destination, token)) = link_parts(&link) else { return invalid_link() };
    let outcome = service.cancel_with_link(&CaseId::new(case), &DestinationId::new(destination), &token).await;
    match outcome {
        Ok(handled) if handled.status == crate::core::state::Status::Cancelled && handled.appended == 0 => message(
            StatusCode::OK,
            "Already cancelled",
            "This change was already cancelled. Nothing on your account changed.",
        ),
        Ok(handled) if handled.status == crate::core::state::Status::Cancelled => message(
            StatusCode::OK,
            "Cancelled",
            "The change was cancelled and nothing on your account changed. If you did not ask for it, consider \
             changing your password.",
        ),
        Ok(_) | Err(crate::service::ServiceError::Rejected(_)) => message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Nothing to cancel",
            "This link cannot cancel anything now: the change was already cancelled, already applied, or the link \
             is not valid. If a change you did not ask for was applied, contact support: it can be rolled back.",
        ),
        Err(error) => {
            tracing::warn!(%error, "cancel link: service unavailable");
            message(StatusCode::SERVICE_UNAVAILABLE, "Please try again", "Try the link again in a minute.")
        }
    }
}
