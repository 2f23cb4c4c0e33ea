//! The versioned envelope every event is stored in, on either backend: type, version, stream, position, time,
//! actor, the causing command, and the postcard-encoded payload. Decoding goes through `decode`, which is where
//! upcasters from older versions live; golden fixtures of every type at its current version sit in `tests/golden/`.

use crate::core::actor::Actor;
use crate::core::campaign::{ALERT_EVENT_VERSION, AlertEvent, AlertEventBody};
use crate::core::control::{ControlEvent, ControlEventBody};
use crate::core::event::{Event, EventBody, EventKind};
use crate::core::ids::{CaseId, CommandId, UnixMs};
use crate::core::limits;
use serde::{Deserialize, Serialize};

/// The payload version of each case event type today. Bump a type's version when its payload changes, keep the old
/// shape in `upcast`, and commit a golden fixture of the new version under `tests/golden/v<N>/`.
pub fn case_event_version(kind: EventKind) -> u16 {
    match kind {
        // v2 (ADR 11): `failed` says which part of the proof was wrong.
        EventKind::ProofRejected => 2,
        // v3 (issue 18, item 6): the snapshot says whether the directory could tell if an authenticator exists.
        // v4 (issue 20): the recorded decision's facts name the campaign alerts open when it was taken.
        EventKind::RecoveryRequested => 4,
        // v2 (issue 15, item 10): the recorded velocity counts the named address's registrable domain.
        // v3 (issue 20): the recorded decision's facts name the open campaign alerts.
        EventKind::ReviewRequired | EventKind::CoolingOffStarted => 3,
        // v2 (issue 16): a code per destination, so a proof says which destination it came from.
        EventKind::ChallengeIssued => 2,
        EventKind::ChallengeWithheld
        | EventKind::ProofAccepted
        | EventKind::ReviewApproved
        | EventKind::CaseDenied
        | EventKind::CaseCancelled
        | EventKind::ExecutionStarted
        | EventKind::ExecutionConfirmed
        | EventKind::ExecutionFailed
        | EventKind::RolledBack
        | EventKind::CaseExpired
        | EventKind::CommandRefused
        | EventKind::SecondFactorProven
        | EventKind::NoticesDelivered
        | EventKind::PasswordSet => 1,
    }
}
/// The payload version of the kill-switch events.
pub const CONTROL_EVENT_VERSION: u16 = 1;

/// Which history an envelope belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Stream {
    Case(CaseId),
    Control,
    /// Campaign alerts (issue 20, ADR 25): raised, grown and acknowledged, for every indicator.
    Alerts,
}

impl Stream {
    /// The key used by the SQLite log (and the suffix of the JetStream subject).
    pub fn key(&self) -> String {
        match self {
            Stream::Case(case_id) => format!("case.{case_id}"),
            Stream::Control => "control".to_string(),
            Stream::Alerts => "alerts".to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub event_type: String,
    pub version: u16,
    pub stream: Stream,
    /// 1-based position of this event in its stream.
    pub stream_version: u64,
    pub at: UnixMs,
    pub actor: Actor,
    pub command_id: CommandId,
    /// Read and written as one run of bytes (`serde_bytes`): postcard stores a byte vector the same way either way,
    /// so the stored format is unchanged, but decoding it byte by byte as a sequence was the largest cost of a replay.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// A stored envelope could not be read: a bug, tampering, or a version this airlock does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("envelope is {0} bytes, over the {max} byte limit", max = limits::EVENT_BYTES_MAX)]
    TooLarge(usize),
    #[error("envelope does not decode: {0}")]
    Envelope(String),
    #[error("unknown event type {event_type} version {version}")]
    UnknownType { event_type: String, version: u16 },
    #[error("payload of {event_type} v{version} does not decode: {reason}")]
    Payload { event_type: String, version: u16, reason: String },
    #[error("payload says {found} but the envelope says {declared}")]
    TypeMismatch { declared: String, found: &'static str },
}

fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("postcard encodes plain data into a Vec without failing")
}

pub fn encode_case_event(case_id: &CaseId, stream_version: u64, event: &Event) -> Vec<u8> {
    let envelope = Envelope {
        event_type: event.body.kind().name().to_string(),
        version: case_event_version(event.body.kind()),
        stream: Stream::Case(case_id.clone()),
        stream_version,
        at: event.at,
        actor: event.actor.clone(),
        command_id: event.command_id.clone(),
        payload: to_bytes(&event.body),
    };
    let bytes = to_bytes(&envelope);
    assert!(bytes.len() <= limits::EVENT_BYTES_MAX, "an event outgrew EVENT_BYTES_MAX: inputs are not bounded");
    bytes
}

pub fn encode_control_event(stream_version: u64, event: &ControlEvent) -> Vec<u8> {
    let event_type = match event.body {
        ControlEventBody::AutomationHalted { .. } => "automation_halted",
        ControlEventBody::AutomationResumed { .. } => "automation_resumed",
        ControlEventBody::BaselineAttested { .. } => "baseline_attested",
    };
    to_bytes(&Envelope {
        event_type: event_type.to_string(),
        version: CONTROL_EVENT_VERSION,
        stream: Stream::Control,
        stream_version,
        at: event.at,
        actor: event.actor.clone(),
        command_id: event.command_id.clone(),
        payload: to_bytes(&event.body),
    })
}

pub fn encode_alert_event(stream_version: u64, event: &AlertEvent) -> Vec<u8> {
    let bytes = to_bytes(&Envelope {
        event_type: event.body.type_name().to_string(),
        version: ALERT_EVENT_VERSION,
        stream: Stream::Alerts,
        stream_version,
        at: event.at,
        actor: event.actor.clone(),
        command_id: event.command_id.clone(),
        payload: to_bytes(&event.body),
    });
    assert!(bytes.len() <= limits::EVENT_BYTES_MAX, "an alert event outgrew EVENT_BYTES_MAX: inputs are not bounded");
    bytes
}

/// A decoded envelope.
#[expect(clippy::large_enum_variant, reason = "decoded one at a time and consumed at once")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    Case { case_id: CaseId, stream_version: u64, event: Event },
    Control { stream_version: u64, event: ControlEvent },
    Alert { stream_version: u64, event: AlertEvent },
}

pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    if bytes.len() > limits::EVENT_BYTES_MAX {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    let envelope: Envelope = postcard::from_bytes(bytes).map_err(|error| DecodeError::Envelope(error.to_string()))?;
    match &envelope.stream {
        Stream::Case(case_id) => {
            let body = decode_case_body(&envelope)?;
            let event = Event { at: envelope.at, actor: envelope.actor, command_id: envelope.command_id, body };
            Ok(Decoded::Case { case_id: case_id.clone(), stream_version: envelope.stream_version, event })
        }
        Stream::Control => {
            let body = decode_payload::<ControlEventBody>(&envelope, CONTROL_EVENT_VERSION)?;
            let event = ControlEvent { at: envelope.at, actor: envelope.actor, command_id: envelope.command_id, body };
            Ok(Decoded::Control { stream_version: envelope.stream_version, event })
        }
        Stream::Alerts => {
            let body = decode_payload::<AlertEventBody>(&envelope, ALERT_EVENT_VERSION)?;
            if body.type_name() != envelope.event_type {
                return Err(DecodeError::TypeMismatch {
                    declared: envelope.event_type.clone(),
                    found: body.type_name(),
                });
            }
            let event = AlertEvent { at: envelope.at, actor: envelope.actor, command_id: envelope.command_id, body };
            Ok(Decoded::Alert { stream_version: envelope.stream_version, event })
        }
    }
}

/// The upcasting boundary: the current version of a type decodes as the core's `EventBody`; an older one through
/// `upcast`; any other is refused, never guessed at.
fn decode_case_body(envelope: &Envelope) -> Result<EventBody, DecodeError> {
    let Some(kind) = EventKind::from_name(&envelope.event_type) else {
        return Err(DecodeError::UnknownType { event_type: envelope.event_type.clone(), version: envelope.version });
    };
    let body = if envelope.version == case_event_version(kind) {
        decode_payload::<EventBody>(envelope, envelope.version)?
    } else {
        super::upcast::upcast(kind, envelope)?
    };
    if body.kind().name() != envelope.event_type {
        return Err(DecodeError::TypeMismatch { declared: envelope.event_type.clone(), found: body.kind().name() });
    }
    Ok(body)
}

fn decode_payload<T: for<'de> Deserialize<'de>>(envelope: &Envelope, current: u16) -> Result<T, DecodeError> {
    if envelope.version != current {
        return Err(DecodeError::UnknownType { event_type: envelope.event_type.clone(), version: envelope.version });
    }
    postcard::from_bytes(&envelope.payload).map_err(|error| DecodeError::Payload {
        event_type: envelope.event_type.clone(),
        version: envelope.version,
        reason: error.to_string(),
    })
}
