//! HTTP intake for support desks that cannot speak NATS (`airlock serve --http`): `POST /v1/recovery-requests` opens
//! a case, `GET /v1/recovery-requests/{id}` reads its public status. The requester is the owner of the API key in
//! `Authorization: Bearer ak_...` (`airlock api-key create`), never anything in the body. The body is the same
//! `request_recovery.v1` JSON as on NATS, read by the same code (`intake::handle_json`), with the same rules and the
//! same request ledgers; the answer is the same reply. `schemas/http_intake.openapi.json` documents it.
//!
//! Like every front door, the request runs under `service::with_deferred_notices`: the answer goes out before the
//! owner's code does, so how long it takes says nothing about whether the account exists.

use crate::core::actor::{Actor, Role};
use crate::core::rejection::Rejection;
use crate::core::text::check_identifier;
use crate::http::api_keys::ApiKeys;
use crate::intake::{self, CommandType, ErrorCode, Reply};
use crate::log::EventLog;
use crate::service::{Sending, Service, with_deferred_notices};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

pub struct IntakeState<L: EventLog> {
    pub service: Arc<Service<L>>,
    pub keys: Arc<ApiKeys>,
    /// The notices held back for answers, being sent; `http::serve` waits for them before it returns.
    pub sending: Arc<Sending>,
}

impl<L: EventLog> Clone for IntakeState<L> {
    fn clone(&self) -> Self {
        IntakeState { service: self.service.clone(), keys: self.keys.clone(), sending: self.sending.clone() }
    }
}

pub fn router<L: EventLog + 'static>(state: IntakeState<L>) -> Router {
    Router::new()
        .route("/v1/recovery-requests", axum::routing::post(create::<L>))
        .route("/v1/recovery-requests/{id}", get(status::<L>))
        .with_state(state)
}

fn error(status: StatusCode, code: ErrorCode, reason: &str) -> Response {
    (status, axum::Json(Reply::refusal(code, reason))).into_response()
}

/// Why a request was not let in.
enum Denied {
    Unauthorized,
    Unavailable,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Unauthorized => {
                let mut response = error(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::Unauthorized,
                    "send a live API key as `Authorization: Bearer ak_...` (airlock api-key create)",
                );
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            Denied::Unavailable => error(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "try again later"),
        }
    }
}

/// The intake actor the request's API key belongs to. The key store is read on the blocking pool.
async fn requester<L: EventLog>(state: &IntakeState<L>, headers: &HeaderMap) -> Result<Actor, Denied> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .filter(|presented| ApiKeys::well_formed(presented))
        .ok_or(Denied::Unauthorized)?
        .to_string();
    // Only a key of the right shape costs a lookup on the blocking pool: anything else is refused here.
    let keys = state.keys.clone();
    let found = tokio::task::spawn_blocking(move || keys.authenticate(&presented).map_err(|error| error.to_string()));
    match found.await.unwrap_or_else(|error| Err(format!("the key lookup failed: {error}"))) {
        Ok(Some(requester)) => Ok(Actor::new(Role::Intake, requester)),
        Ok(None) => Err(Denied::Unauthorized),
        Err(failure) => {
            tracing::warn!(%failure, "HTTP intake: the API key store is unavailable");
            Err(Denied::Unavailable)
        }
    }
}

/// The HTTP status of a reply: 202 accepted; 400 for input that can never be accepted; 403 for a command the role
/// may not send; 503 when airlock cannot take it now (send it again, with the same `command_id`).
fn status_of(reply: &Reply) -> StatusCode {
    if reply.accepted {
        return StatusCode::ACCEPTED;
    }
    match reply.code() {
        Some(ErrorCode::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
        Some(ErrorCode::Rejected(Rejection::RoleNotAllowed { .. })) => StatusCode::FORBIDDEN,
        Some(ErrorCode::Rejected(Rejection::MalformedCommand { .. })) => StatusCode::BAD_REQUEST,
        Some(_) | None => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

async fn create<L: EventLog + 'static>(
    State(state): State<IntakeState<L>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let actor = match requester(&state, &headers).await {
        Ok(actor) => actor,
        Err(denied) => return denied.into_response(),
    };
    let handled =
        with_deferred_notices(intake::handle_json(&state.service, &actor, CommandType::RequestRecovery, &body));
    let (reply, notices) = intake::answered_no_sooner(handled).await;
    // The answer is not held for the notices: they go out on their own once it is on its way.
    state.sending.spawn(state.service.clone(), notices);
    let status = status_of(&reply);
    let location =
        reply.case_id.as_ref().filter(|_| reply.accepted).map(|case| format!("/v1/recovery-requests/{case}"));
    let mut response = (status, axum::Json(reply)).into_response();
    if let Some(location) = location.and_then(|location| HeaderValue::from_str(&location).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

async fn status<L: EventLog + 'static>(
    State(state): State<IntakeState<L>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let actor = match requester(&state, &headers).await {
        Ok(actor) => actor,
        Err(denied) => return denied.into_response(),
    };
    if check_identifier("case_id", &id).is_err() {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::Rejected(Rejection::MalformedCommand { reason: "not a case id".into() }),
            "not a case id",
        );
    }
    let payload = serde_json::json!({ "case_id": id }).to_string();
    let answer = intake::answered_no_sooner(intake::query::answer(&state.service, &actor, payload.as_bytes())).await;
    let code = match answer.get("status").and_then(|status| status.as_str()) {
        Some("not_found") => StatusCode::NOT_FOUND,
        Some(_) => StatusCode::OK,
        None => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, axum::Json(answer)).into_response()
}
