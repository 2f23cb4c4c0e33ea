//! The step every front door shares: JSON bytes plus an authenticated actor become a command for the service, and
//! the outcome becomes a reply. The actor comes from the channel (a NATS subject bound by broker permissions, an API
//! key, the local operator's shell), never from the JSON. Bad input gets a specific, typed reason; when it names a
//! case that exists, the refusal is recorded on that case.

pub mod nats;
pub mod query;
pub mod subjects;

use crate::core::actor::{Actor, Role};
use crate::core::command::CommandKind;
use crate::core::ids::{CaseId, CommandId};
use crate::core::limits;
use crate::core::rejection::Rejection;
use crate::core::state::Status;
use crate::core::text::check_identifier;
use crate::log::EventLog;
use crate::service::{Handled, Service, ServiceError, new_id};
use crate::wire::{self, CaseCommand, WireError};
use serde::Serialize;

/// The commands a front door accepts, one per JSON schema in `schemas/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum CommandType {
    RequestRecovery,
    SubmitProof,
    ReviewDecision,
    Cancel,
    RollBack,
    Halt,
    Resume,
    AcknowledgeAlert,
}

impl CommandType {
    pub const ALL: [CommandType; 8] = [
        CommandType::RequestRecovery,
        CommandType::SubmitProof,
        CommandType::ReviewDecision,
        CommandType::Cancel,
        CommandType::RollBack,
        CommandType::Halt,
        CommandType::Resume,
        CommandType::AcknowledgeAlert,
    ];

    /// Whether an actor of `role` may send this command (a review decision: approve and deny allow the same roles).
    pub fn allowed_for(self, role: Role) -> bool {
        self.kind().allowed_roles().contains(&role)
    }

    /// The kind recorded when a command of this type is refused before it could be read.
    fn kind(self) -> CommandKind {
        match self {
            CommandType::RequestRecovery => CommandKind::RequestRecovery,
            CommandType::SubmitProof => CommandKind::SubmitProof,
            CommandType::ReviewDecision => CommandKind::ApproveReview,
            CommandType::Cancel => CommandKind::Cancel,
            CommandType::RollBack => CommandKind::RollBack,
            CommandType::Halt => CommandKind::Halt,
            CommandType::Resume => CommandKind::Resume,
            CommandType::AcknowledgeAlert => CommandKind::AcknowledgeAlert,
        }
    }
}

/// What the sender is told. Intake actors get the same words whatever happened to the account (THREATS 1, 8).
/// Typed until it is serialised: front doors decide on `status` and `error.code` as values, never as text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reply {
    pub accepted: bool,
    /// The command this answers, when its id could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ReplyStatus>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ReplyError>,
}

impl Reply {
    /// A refusal with its stable `code`, the reason as both message and error, and nothing else.
    pub fn refusal(code: ErrorCode, reason: &str) -> Reply {
        Reply {
            accepted: false,
            command_id: None,
            case_id: None,
            status: None,
            message: reason.to_string(),
            error: Some(ReplyError { code, reason: reason.to_string() }),
        }
    }

    /// The refusal's code, if this is a refusal.
    pub fn code(&self) -> Option<&ErrorCode> {
        self.error.as_ref().map(|error| &error.code)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplyError {
    /// Stable and machine-readable (`ErrorCode::name`).
    pub code: ErrorCode,
    pub reason: String,
}

/// What an accepted command left: the case's state, the one word an intake actor gets, or the kill switch's or an
/// alert's state. Serialised by `name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyStatus {
    /// An intake actor's answer, whatever happened to the case (THREATS 1, 8).
    Received,
    /// The case's state after the command.
    Case(Status),
    /// The kill switch is pulled.
    Halted,
    /// The kill switch is released.
    Running,
    /// The alert is acknowledged.
    Acknowledged,
}

impl ReplyStatus {
    /// The stable name senders read: a case state's own name, or `received`, `halted`, `running`, `acknowledged`.
    pub fn name(self) -> &'static str {
        match self {
            ReplyStatus::Received => "received",
            ReplyStatus::Case(status) => status.name(),
            ReplyStatus::Halted => "halted",
            ReplyStatus::Running => "running",
            ReplyStatus::Acknowledged => "acknowledged",
        }
    }
}

impl std::fmt::Display for ReplyStatus {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

impl Serialize for ReplyStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// Why a command was refused, as the sender reads it. Serialised by `name`, the stable code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The core (or the front door, before the core) refused it: the rejection's own code.
    Rejected(Rejection),
    /// airlock cannot take the command now (a store is down); the same command may be sent again.
    Unavailable,
    /// The owners' page's one answer to a proof that did not prove its case (THREATS 18).
    CodeNotAccepted,
    /// The owners' page: the message's code was right, the second factor was not.
    SecondFactorNotAccepted,
    /// The NATS intake: the subject does not name a sender and a command.
    BadSubject,
    /// The NATS intake: the command could not be taken in the deliveries allowed; it is kept in the dead letters.
    GaveUp,
    /// The HTTP intake: no live API key.
    Unauthorized,
}

impl ErrorCode {
    pub fn name(&self) -> &'static str {
        match self {
            ErrorCode::Rejected(rejection) => rejection.code(),
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::CodeNotAccepted => "code_not_accepted",
            ErrorCode::SecondFactorNotAccepted => "second_factor_not_accepted",
            ErrorCode::BadSubject => "bad_subject",
            ErrorCode::GaveUp => "gave_up",
            ErrorCode::Unauthorized => "unauthorized",
        }
    }

    /// Whether sending the same bytes again can never succeed (the NATS intake keeps such input in its dead
    /// letters): input that cannot be read or is not allowed, a reused command id, and what the intake gave up on.
    pub fn is_poison(&self) -> bool {
        match self {
            ErrorCode::Rejected(rejection) => rejection.about_the_input() || *rejection == Rejection::CommandIdReused,
            ErrorCode::BadSubject | ErrorCode::GaveUp => true,
            ErrorCode::Unavailable
            | ErrorCode::CodeNotAccepted
            | ErrorCode::SecondFactorNotAccepted
            | ErrorCode::Unauthorized => false,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// The one answer an intake actor gets about a recovery it asked for.
pub const INTAKE_MESSAGE: &str = "Request received. If the account exists, its owner has been contacted at a contact \
     method already on file. Verification codes are never shared through support.";

/// The case a request opens: derived from who asked and the command's id, so a redelivered or retried request
/// lands on the same case (and appends nothing), while two actors can never collide on one case.
pub fn case_id_for(actor: &Actor, command_id: &CommandId) -> CaseId {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}\0{}\0{}", actor.role, actor.id, command_id).as_bytes());
    CaseId::new(format!("case-{}", hex::encode(&digest[..12])))
}

/// Reads the case id and command id out of input that may not parse as its command, so a refusal can be recorded on
/// the case it names. Only well-formed identifiers are taken; anything else is ignored.
fn hints(bytes: &[u8]) -> (Option<CaseId>, CommandId) {
    let value: Option<serde_json::Value> =
        (bytes.len() <= limits::COMMAND_BYTES_MAX).then(|| serde_json::from_slice(bytes).ok()).flatten();
    let field = |name: &str| -> Option<String> {
        let text = value.as_ref()?.get(name)?.as_str()?;
        check_identifier(if name == "case_id" { "case_id" } else { "command_id" }, text).ok()?;
        Some(text.to_string())
    };
    let command_id = field("command_id").unwrap_or_else(|| new_id("unreadable"));
    (field("case_id").map(CaseId::new), CommandId::new(command_id))
}

/// The command kind to check the role of and to record a refusal as: a review decision is an approval unless it
/// reads as a denial.
fn kind_of(command_type: CommandType, bytes: &[u8]) -> CommandKind {
    let denial = || {
        let value: serde_json::Value =
            (bytes.len() <= limits::COMMAND_BYTES_MAX).then(|| serde_json::from_slice(bytes).ok()).flatten()?;
        (value.get("decision")?.as_str()? == "deny").then_some(())
    };
    match command_type {
        CommandType::ReviewDecision if denial().is_some() => CommandKind::DenyReview,
        CommandType::RequestRecovery
        | CommandType::SubmitProof
        | CommandType::ReviewDecision
        | CommandType::Cancel
        | CommandType::RollBack
        | CommandType::Halt
        | CommandType::Resume
        | CommandType::AcknowledgeAlert => command_type.kind(),
    }
}

/// What an accepted command led to.
enum Outcome {
    Case(Handled),
    /// The kill switch's position after a halt or resume.
    Control {
        halted: bool,
    },
    /// An alert acknowledged.
    Acknowledged {
        alert_id: String,
    },
}

fn accepted(actor: &Actor, outcome: &Outcome) -> Reply {
    let handled = match outcome {
        Outcome::Case(handled) => handled,
        Outcome::Acknowledged { alert_id } => {
            return Reply {
                accepted: true,
                command_id: None,
                case_id: None,
                status: Some(ReplyStatus::Acknowledged),
                message: format!("alert {alert_id} acknowledged"),
                error: None,
            };
        }
        Outcome::Control { halted } => {
            let status = if *halted { ReplyStatus::Halted } else { ReplyStatus::Running };
            let message = format!("automation is {status}");
            return Reply {
                accepted: true,
                command_id: None,
                case_id: None,
                status: Some(status),
                message,
                error: None,
            };
        }
    };
    let (status, message) = match actor.role {
        Role::Intake => (ReplyStatus::Received, INTAKE_MESSAGE.to_string()),
        Role::Owner | Role::Reviewer | Role::Operator | Role::System => {
            (ReplyStatus::Case(handled.status), format!("the case is {}", handled.status))
        }
    };
    Reply {
        accepted: true,
        command_id: None,
        case_id: Some(handled.case_id.to_string()),
        status: Some(status),
        message,
        error: None,
    }
}

pub fn refused(case_id: Option<&CaseId>, error: &ServiceError) -> Reply {
    let (code, reason) = match error {
        ServiceError::Rejected(rejection) => (ErrorCode::Rejected(rejection.clone()), rejection.to_string()),
        ServiceError::Log(_) | ServiceError::Projection(_) | ServiceError::Directory(_) | ServiceError::Notify(_) => {
            (ErrorCode::Unavailable, "airlock cannot take this command right now; send it again later".into())
        }
        ServiceError::Corrupt(_) => (ErrorCode::Unavailable, "airlock found an inconsistency and stopped".into()),
    };
    Reply { case_id: case_id.map(ToString::to_string), ..Reply::refusal(code, &reason) }
}

/// Handles one JSON command from `actor`, end to end, and says what to tell the sender.
pub async fn handle_json<L: EventLog>(
    service: &Service<L>,
    actor: &Actor,
    command_type: CommandType,
    bytes: &[u8],
) -> Reply {
    handle(service, actor, command_type, bytes, false).await
}

/// Handles a proof typed on the owners' public page (`submit_proof` JSON from `owner`), answering only whether the
/// case is proven now and nothing else about it (THREATS 18): a wrong code, a case with no code out, a case in
/// review, a case of an unknown account and no case at all read the same (`code_not_accepted`), so nobody who can
/// reach the page can tell accounts apart by trying a dummy code. The senders of the authenticated channels (NATS,
/// `airlock submit`) get the detailed answer.
pub async fn handle_public_proof<L: EventLog>(service: &Service<L>, owner: &Actor, bytes: &[u8]) -> Reply {
    handle(service, owner, CommandType::SubmitProof, bytes, true).await
}

async fn handle<L: EventLog>(
    service: &Service<L>,
    actor: &Actor,
    command_type: CommandType,
    bytes: &[u8],
    public_proof: bool,
) -> Reply {
    let started = std::time::Instant::now();
    let (case_hint, command_hint) = hints(bytes);
    let mut reply = match dispatch(service, actor, command_type, bytes).await {
        Ok(Outcome::Case(handled)) if public_proof && !handled.proven => {
            not_proven(service, actor, &handled.case_id, &command_hint).await
        }
        // Only a proof with the message's right code reaches the authenticator check (issue 15, item 17), so saying
        // which part to retype tells nothing to anyone without that code.
        Err(Refusal::Service(ServiceError::Rejected(Rejection::SecondFactorAlreadyUsed))) if public_proof => {
            owner_refusal(
                case_hint.as_ref(),
                ErrorCode::Rejected(Rejection::SecondFactorAlreadyUsed),
                SECOND_FACTOR_ALREADY_USED,
            )
        }
        Err(Refusal::Service(ServiceError::Rejected(rejection))) if public_proof && !rejection.about_the_input() => {
            code_not_accepted(case_hint.as_ref())
        }
        Ok(outcome) => accepted(actor, &outcome),
        Err(Refusal::AtTheEdge(rejection)) => {
            let error = match &case_hint {
                Some(case_id) => {
                    service.refuse(case_id, actor, &command_hint, kind_of(command_type, bytes), rejection).await
                }
                None => ServiceError::Rejected(rejection),
            };
            refused(case_hint.as_ref(), &error)
        }
        Err(Refusal::Service(error)) => refused(case_hint.as_ref(), &error),
    };
    reply.command_id = Some(command_hint.to_string());
    let outcome = reply.code().map_or("accepted", ErrorCode::name);
    crate::observe::command_handled(subjects::command_token(command_type), outcome, started.elapsed().as_secs_f64());
    reply
}

/// The least time a requester waits for an answer about a request (opening one, or reading its status) on the
/// HTTP intake and the MCP tools. The work behind an answer differs a little with the account (a known account's
/// request draws and hashes a code, reads its destinations); answering no sooner than this, measured from when the
/// request was authenticated, hides that difference (THREATS 18) as long as the work takes less.
pub const ANSWER_FLOOR_MS: u64 = 25;

/// Runs `work` and returns its output no sooner than `ANSWER_FLOOR_MS` after it started.
pub async fn answered_no_sooner<T>(work: impl std::future::Future<Output = T>) -> T {
    let started = tokio::time::Instant::now();
    let output = work.await;
    tokio::time::sleep_until(started + std::time::Duration::from_millis(ANSWER_FLOOR_MS)).await;
    output
}

/// The one answer to every proof that did not prove its case, whatever the case and its account are.
pub const CODE_NOT_ACCEPTED: &str = "That code was not accepted. Check the latest message (and your authenticator app) \
     and try again: a code works only for the request it was sent for, and only until it expires.";

/// The answer when the message's code was right and the authenticator code typed with it was not.
pub const SECOND_FACTOR_NOT_ACCEPTED: &str = "The code from the message was right, but the authenticator app's code \
     was not. Type the app's current code (and the message's code again) and try once more.";

/// The answer when the message's code was right and the sign-in sent with it was as another account.
pub const SIGNED_IN_AS_ANOTHER: &str = "The code from the message was right, but you signed in at the identity \
     provider as another account. Sign in as the account this request is for, and try once more.";

/// The answer when the message's code was right and the authenticator code was one already used.
pub const SECOND_FACTOR_ALREADY_USED: &str = "The code from the message was right, but that authenticator code was \
     already used. Wait for the app's next code and try again.";

fn code_not_accepted(case_id: Option<&CaseId>) -> Reply {
    owner_refusal(case_id, ErrorCode::CodeNotAccepted, CODE_NOT_ACCEPTED)
}

fn owner_refusal(case_id: Option<&CaseId>, code: ErrorCode, text: &str) -> Reply {
    Reply { case_id: case_id.map(ToString::to_string), ..Reply::refusal(code, text) }
}

/// The public page's answer to a proof that was recorded and did not prove the case: which part to retype when
/// this very proof had the message's code right and the authenticator code wrong, else the one answer for all.
async fn not_proven<L: EventLog>(
    service: &Service<L>,
    owner: &Actor,
    case_id: &CaseId,
    command_id: &CommandId,
) -> Reply {
    use crate::core::event::{EventBody, ProofFailure};
    let failed = match service.load(case_id).await {
        Ok((_, events)) => events.last().and_then(|event| match &event.body {
            EventBody::ProofRejected { failed, .. } if event.command_id == *command_id && event.actor == *owner => {
                Some(*failed)
            }
            _ => None,
        }),
        Err(_) => None,
    };
    match failed {
        Some(ProofFailure::WrongSecondFactor) => {
            owner_refusal(Some(case_id), ErrorCode::SecondFactorNotAccepted, SECOND_FACTOR_NOT_ACCEPTED)
        }
        Some(ProofFailure::SignedInAsAnother) => {
            owner_refusal(Some(case_id), ErrorCode::SecondFactorNotAccepted, SIGNED_IN_AS_ANOTHER)
        }
        Some(ProofFailure::WrongCode | ProofFailure::NotRecorded) | None => code_not_accepted(Some(case_id)),
    }
}

enum Refusal {
    /// Refused before it became a core command: malformed or invalid input.
    AtTheEdge(Rejection),
    /// Refused (and already recorded) by the service, or the service could not run it.
    Service(ServiceError),
}

fn malformed(error: WireError) -> Refusal {
    Refusal::AtTheEdge(Rejection::MalformedCommand { reason: error.to_string() })
}

async fn dispatch<L: EventLog>(
    service: &Service<L>,
    actor: &Actor,
    command_type: CommandType,
    bytes: &[u8],
) -> Result<Outcome, Refusal> {
    // The role first, as in `decide`: an actor probing a command it may not send learns nothing from how its input
    // would have been read, and nothing it sent is looked at further.
    let kind = kind_of(command_type, bytes);
    if !kind.allowed_roles().contains(&actor.role) {
        return Err(Refusal::AtTheEdge(Rejection::RoleNotAllowed { role: actor.role, command: kind }));
    }
    let case_command = |command: Result<CaseCommand, Rejection>| command.map_err(Refusal::AtTheEdge);
    let (case_id, command_id, command) = match command_type {
        CommandType::RequestRecovery => {
            let (_, command_id, command) =
                case_command(wire::parse::<wire::RequestRecoveryV1>(bytes).map_err(malformed)?.to_core())?;
            (Some(case_id_for(actor, &command_id)), command_id, command)
        }
        CommandType::SubmitProof => {
            let proof =
                wire::parse::<wire::SubmitProofV1>(bytes).map_err(malformed)?.to_core().map_err(Refusal::AtTheEdge)?;
            let typed = proof.reveal_typed_code();
            let second = crate::service::Second { totp: proof.reveal_typed_totp(), step_up: proof.reveal_step_up() };
            let handled =
                service.submit_proof(&proof.case_id, proof.command_id.clone(), actor.clone(), typed, second).await;
            return handled.map(Outcome::Case).map_err(Refusal::Service);
        }
        CommandType::ReviewDecision => {
            case_command(wire::parse::<wire::ReviewDecisionV1>(bytes).map_err(malformed)?.to_core())?
        }
        CommandType::Cancel => case_command(wire::parse::<wire::CancelV1>(bytes).map_err(malformed)?.to_core())?,
        CommandType::RollBack => case_command(wire::parse::<wire::RollBackV1>(bytes).map_err(malformed)?.to_core())?,
        CommandType::Halt | CommandType::Resume => {
            let (command_id, command) = match command_type {
                CommandType::Halt => wire::parse::<wire::HaltV1>(bytes).map_err(malformed)?.to_core(),
                CommandType::Resume
                | CommandType::RequestRecovery
                | CommandType::SubmitProof
                | CommandType::ReviewDecision
                | CommandType::Cancel
                | CommandType::RollBack
                | CommandType::AcknowledgeAlert => wire::parse::<wire::ResumeV1>(bytes).map_err(malformed)?.to_core(),
            }
            .map_err(Refusal::AtTheEdge)?;
            let halted = service.control(command_id, actor.clone(), command).await.map_err(Refusal::Service)?;
            return Ok(Outcome::Control { halted });
        }
        CommandType::AcknowledgeAlert => {
            let parsed = wire::parse::<wire::AcknowledgeAlertV1>(bytes).map_err(malformed)?;
            let (command_id, alert_id, reason, benign) = parsed.to_core().map_err(Refusal::AtTheEdge)?;
            service
                .acknowledge_alert(command_id, actor.clone(), &alert_id, reason, benign)
                .await
                .map_err(Refusal::Service)?;
            return Ok(Outcome::Acknowledged { alert_id });
        }
    };
    let case_id = case_id.expect("every case command names its case, or airlock made one");
    let envelope = crate::core::command::CommandEnvelope { command_id, actor: actor.clone(), command };
    service.handle(&case_id, envelope).await.map(Outcome::Case).map_err(Refusal::Service)
}
