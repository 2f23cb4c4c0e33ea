//! The NATS subjects of airlock's front door. The actor's role and id are tokens of the subject a message is
//! published on, so broker permissions (issue 6: one NATS user per actor, allowed to publish only under its own
//! `<prefix>.intake.<role>.<id>.>`) are what binds identity; nothing in the message body can claim one.
//!
//! | subject | what |
//! | --- | --- |
//! | `<prefix>.intake.<role>.<actor>.<command>` | a command (JSON per `schemas/`), kept in the durable intake stream |
//! | `<prefix>.result.<role>.<actor>` | airlock's answer to each intake message, kept for a week |
//! | `<prefix>.deadletter.<role>.<actor>` | unreadable or refused input with the reason, kept |
//! | `<prefix>.query.<role>.<actor>` | request/reply: a case's status |

use crate::core::actor::{Actor, Role};
use crate::intake::CommandType;

/// The subject tokens of the command types, as senders publish them.
pub fn command_token(command: CommandType) -> &'static str {
    match command {
        CommandType::RequestRecovery => "request_recovery",
        CommandType::SubmitProof => "submit_proof",
        CommandType::ReviewDecision => "review_decision",
        CommandType::Cancel => "cancel",
        CommandType::RollBack => "roll_back",
        CommandType::Halt => "halt",
        CommandType::Resume => "resume",
        CommandType::AcknowledgeAlert => "acknowledge_alert",
    }
}

fn role_of(token: &str) -> Option<Role> {
    Role::ALL.into_iter().find(|role| role.name() == token && *role != Role::System)
}

/// An actor id must be one plain subject token.
pub fn actor_token_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// Why an intake subject could not be read, and the sender when the subject named a valid one (an unknown command
/// from a known sender is answered to that sender), and the command its last token names, if it names one: a proof
/// on a subject that is otherwise wrong is still kept as a proof is (its body withheld).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectError {
    pub actor: Option<Actor>,
    pub reason: String,
    pub command: Option<CommandType>,
}

/// Reads `<prefix>.intake.<role>.<actor>.<command>`.
pub fn parse_intake(prefix: &str, subject: &str) -> Result<(Actor, CommandType), SubjectError> {
    let named = subject
        .rsplit('.')
        .next()
        .and_then(|token| CommandType::ALL.into_iter().find(|candidate| command_token(*candidate) == token));
    let refused =
        |actor: Option<&Actor>, reason: String| SubjectError { actor: actor.cloned(), reason, command: named };
    let rest = subject
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix(".intake."))
        .ok_or_else(|| refused(None, format!("{subject} is not an intake subject")))?;
    let tokens: Vec<&str> = rest.split('.').collect();
    let [role, actor, command] = tokens.as_slice() else {
        return Err(refused(None, format!("{subject} should be {prefix}.intake.<role>.<actor>.<command>")));
    };
    let role = role_of(role).ok_or_else(|| refused(None, format!("unknown role {role:?} in {subject}")))?;
    if !actor_token_valid(actor) {
        return Err(refused(None, format!("actor id {actor:?} is not 1 to 64 of A-Z a-z 0-9 - _")));
    }
    let actor = Actor::new(role, *actor);
    let command =
        CommandType::ALL.into_iter().find(|candidate| command_token(*candidate) == *command).ok_or_else(|| {
            let known: Vec<&str> = CommandType::ALL.into_iter().map(command_token).collect();
            refused(
                Some(&actor),
                format!("unknown command {command:?} in {subject}; commands are {}", known.join(", ")),
            )
        })?;
    Ok((actor, command))
}

/// Reads `<prefix>.query.<role>.<actor>`.
pub fn parse_query(prefix: &str, subject: &str) -> Option<Actor> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix(".query.")?;
    let (role, actor) = rest.split_once('.')?;
    let role = role_of(role)?;
    actor_token_valid(actor).then(|| Actor::new(role, actor))
}

pub fn intake(prefix: &str, actor: &Actor, command: CommandType) -> String {
    format!("{prefix}.intake.{}.{}.{}", actor.role, actor.id, command_token(command))
}

pub fn result(prefix: &str, actor: &Actor) -> String {
    format!("{prefix}.result.{}.{}", actor.role, actor.id)
}

pub fn query(prefix: &str, actor: &Actor) -> String {
    format!("{prefix}.query.{}.{}", actor.role, actor.id)
}

/// Dead letters are filed under the sender when the subject named one, else under `unknown`.
pub fn dead_letter(prefix: &str, actor: Option<&Actor>) -> String {
    match actor {
        Some(actor) => format!("{prefix}.deadletter.{}.{}", actor.role, actor.id),
        None => format!("{prefix}.deadletter.unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves subjects round-trip, and that malformed ones are refused with a reason rather than misread.
    #[test]
    fn intake_subjects_round_trip_and_refuse_junk() {
        let actor = Actor::new(Role::Intake, "support-bot");
        let subject = intake("airlock", &actor, CommandType::Cancel);
        assert_eq!(subject, "airlock.intake.intake.support-bot.cancel");
        assert_eq!(parse_intake("airlock", &subject), Ok((actor, CommandType::Cancel)));
        for junk in [
            "airlock.intake.system.airlock.cancel",
            "airlock.intake.intake.bot.teleport",
            "airlock.intake.intake.bot",
            "airlock.intake.admin.bot.cancel",
            "other.intake.intake.bot.cancel",
        ] {
            assert!(parse_intake("airlock", junk).is_err(), "{junk} was accepted");
        }
        let unknown = parse_intake("airlock", "airlock.intake.intake.bot.teleport").unwrap_err();
        assert_eq!(unknown.actor, Some(Actor::new(Role::Intake, "bot")), "an unknown command names its sender");
        assert_eq!(parse_intake("airlock", "airlock.intake.admin.bot.cancel").unwrap_err().actor, None);
        let proof = parse_intake("airlock", "airlock.intake.owner.j+doe.submit_proof").unwrap_err();
        assert_eq!(proof.command, Some(CommandType::SubmitProof), "a proof on a bad subject is still a proof");
        assert_eq!(parse_query("airlock", "airlock.query.reviewer.ana"), Some(Actor::new(Role::Reviewer, "ana")));
        assert_eq!(parse_query("airlock", "airlock.query.system.airlock"), None);
    }
}
