//! Why the core refused a command. Each variant is a reason a client can show; none of them reveals whether an
//! account exists, which destinations it has, or anything about a code.

use crate::actor::Role;
use crate::kind::CommandKind;
use crate::status::Status;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    /// The sender's role may not send this command. The caller should not retry; the attempt is recorded.
    RoleNotAllowed { role: Role, command: CommandKind },
    /// The case is not in a state where this command means anything. The caller may re-read the case.
    WrongState { status: Status, command: CommandKind },
    /// A case with this id exists already; open a new case with a new id.
    CaseExists,
    /// No code is outstanding on this case (none was sent, it was used, or the case moved on).
    NoOutstandingChallenge,
    /// The code expired; ask for a new case.
    ChallengeExpired,
    /// The approval names an action hash that is not this case's action: the reviewer saw something else.
    ActionHashMismatch,
    /// The reviewer is the one who requested the case.
    SelfApproval,
    /// The reviewer has already approved this case; a quorum needs distinct people.
    DuplicateApproval,
    /// The executor confirmed an effect this case did not start.
    EffectMismatch,
    /// The kill switch is already in the requested position; nothing was recorded.
    KillSwitchUnchanged { halted: bool },
    /// The case's time limit has passed; it takes no more proofs or approvals and will expire.
    DeadlinePassed,
    /// A text field is longer than allowed.
    TooLong { field: String, bytes_max: usize },
    /// A field has a value outside what is accepted.
    InvalidValue { field: String, expected: String },
    /// The command could not be read (not JSON, unknown or missing fields, oversized, wrong version). The reason
    /// names what is wrong; fix the command and send it again.
    MalformedCommand { reason: String },
    /// A verification code was placed in a field that is not the verification page (THREATS 1, 12). The value is
    /// not stored.
    SecretInUntrustedField { field: String },
    /// The authenticator code was right but already used (another tab sent the same proof first). Not a wrong code:
    /// it is not counted against the account. Wait for the next code of the app.
    SecondFactorAlreadyUsed,
    /// The change would reach nobody: a password reset on an account with no destination that existed before the
    /// request, where the owner could set the new password and be told of it. It cannot be approved; the owner needs
    /// a destination established another way first.
    NothingDeliverable,
    /// The sender already used this command id for a different command (another account, another action, a halt
    /// where this is a resume). A command id means one command; send this one under a new id. Kept, never merged.
    CommandIdReused,
    /// The set-password link was used already: a link sets a password once.
    PasswordAlreadySet,
    /// An operator pulled the kill switch: no account changes until it is released (an owner's link included).
    Halted,
    /// A reviewer approving a change to their own account: a reviewer whose id is the case's account id (the console
    /// names people by the identity provider's subject, which is the account id there).
    OwnAccountApproval,
    /// No alert has this id.
    NoSuchAlert,
    /// The alert is acknowledged that way already (as a campaign, or as benign), by someone else or an earlier command.
    AlertAlreadyAcknowledged,
}

impl Rejection {
    /// Refusals about the bytes sent, the same whatever case they name: the input cannot be read, is not allowed,
    /// or holds a code where none belongs. Sending the same bytes again gets the same answer.
    pub fn about_the_input(&self) -> bool {
        matches!(
            self,
            Rejection::MalformedCommand { .. }
                | Rejection::InvalidValue { .. }
                | Rejection::TooLong { .. }
                | Rejection::SecretInUntrustedField { .. }
                | Rejection::RoleNotAllowed { .. }
        )
    }

    /// A stable machine-readable code for clients (`role_not_allowed`, `wrong_state`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::RoleNotAllowed { .. } => "role_not_allowed",
            Rejection::WrongState { .. } => "wrong_state",
            Rejection::CaseExists => "case_exists",
            Rejection::NoOutstandingChallenge => "no_outstanding_challenge",
            Rejection::ChallengeExpired => "challenge_expired",
            Rejection::ActionHashMismatch => "action_hash_mismatch",
            Rejection::SelfApproval => "self_approval",
            Rejection::DuplicateApproval => "duplicate_approval",
            Rejection::EffectMismatch => "effect_mismatch",
            Rejection::KillSwitchUnchanged { .. } => "kill_switch_unchanged",
            Rejection::DeadlinePassed => "deadline_passed",
            Rejection::TooLong { .. } => "too_long",
            Rejection::InvalidValue { .. } => "invalid_value",
            Rejection::MalformedCommand { .. } => "malformed_command",
            Rejection::SecretInUntrustedField { .. } => "secret_in_untrusted_field",
            Rejection::SecondFactorAlreadyUsed => "second_factor_already_used",
            Rejection::CommandIdReused => "command_id_reused",
            Rejection::NothingDeliverable => "nothing_deliverable",
            Rejection::PasswordAlreadySet => "password_already_set",
            Rejection::Halted => "halted",
            Rejection::OwnAccountApproval => "own_account_approval",
            Rejection::NoSuchAlert => "no_such_alert",
            Rejection::AlertAlreadyAcknowledged => "alert_already_acknowledged",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::RoleNotAllowed { role, command } => {
                write!(formatter, "the {role} role may not {}", command.name())
            }
            Rejection::WrongState { status, command } => {
                write!(formatter, "a case in state {} does not accept {}", status.name(), command.name())
            }
            Rejection::CaseExists => formatter.write_str("a case with this id already exists"),
            Rejection::NoOutstandingChallenge => formatter.write_str("no code is outstanding for this case"),
            Rejection::ChallengeExpired => formatter.write_str("the code has expired"),
            Rejection::ActionHashMismatch => {
                formatter.write_str("the approval names a different action than this case's; re-read the case")
            }
            Rejection::SelfApproval => formatter.write_str("nobody may approve a case they requested"),
            Rejection::DuplicateApproval => formatter.write_str("this reviewer has already approved this case"),
            Rejection::EffectMismatch => formatter.write_str("the confirmed effect is not the one this case started"),
            Rejection::KillSwitchUnchanged { halted: true } => formatter.write_str("automation is already halted"),
            Rejection::KillSwitchUnchanged { halted: false } => formatter.write_str("automation is not halted"),
            Rejection::DeadlinePassed => formatter.write_str("the case's time limit has passed"),
            Rejection::TooLong { field, bytes_max } => {
                write!(formatter, "{field} is longer than {bytes_max} bytes")
            }
            Rejection::InvalidValue { field, expected } => write!(formatter, "{field} is invalid: expected {expected}"),
            Rejection::MalformedCommand { reason } => write!(formatter, "the command is malformed: {reason}"),
            Rejection::SecretInUntrustedField { field } => write!(
                formatter,
                "{field} looks like it contains a verification code; codes are entered only at the verification page, and this one was not stored"
            ),
            Rejection::SecondFactorAlreadyUsed => {
                formatter.write_str("that authenticator code was already used; wait for the next one")
            }
            Rejection::NothingDeliverable => formatter.write_str(
                "the account has no destination that existed before the request: a password reset would reach \
                 nobody and nobody could be told of it; deny the case",
            ),
            Rejection::CommandIdReused => formatter.write_str(
                "this command id was already used for a different command; send a new command under a new command id",
            ),
            Rejection::PasswordAlreadySet => {
                formatter.write_str("this set-password link was used already: a link sets a password once")
            }
            Rejection::Halted => formatter.write_str("an operator halted all account changes; try again later"),
            Rejection::OwnAccountApproval => {
                formatter.write_str("nobody may approve a change to their own account; another reviewer must")
            }
            Rejection::NoSuchAlert => {
                formatter.write_str("there is no alert with this id; list them with `airlock alerts list`")
            }
            Rejection::AlertAlreadyAcknowledged => formatter.write_str(
                "this alert is acknowledged that way already; acknowledge it again only to change whether it is benign",
            ),
        }
    }
}
