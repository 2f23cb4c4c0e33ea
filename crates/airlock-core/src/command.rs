//! Commands: what an actor asks the core to do to one case. A command carries no proof of who sent it; the actor
//! and its role come from the authenticated channel, and `decide` checks the role.

use crate::action::{ActionHash, RecoveryAction};
use crate::actor::Actor;
use crate::ids::{AccountId, CommandId, DestinationId, EffectId, UnixMs};
use crate::signals::Signals;
use crate::text::UntrustedText;
use crate::verification::CodeHash;
use serde::{Deserialize, Serialize};

/// A command with the identity that sent it and its idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandEnvelope {
    pub command_id: CommandId,
    pub actor: Actor,
    pub command: Command,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Open a case (intake actors, or an owner at airlock's own page).
    RequestRecovery { account_id: AccountId, action: RecoveryAction, summary: UntrustedText, signals: Signals },
    /// The owner's answer to a challenge, already hashed by the shell under the code key: the plain code never
    /// reaches the core.
    /// `second_factor` is what the shell's directory said of an authenticator code typed with it: the secret and the
    /// typed digits stay in the directory.
    SubmitProof { proof: CodeHash, second_factor: SecondFactorCheck },
    /// A reviewer approves the exact action whose hash they were shown.
    ApproveReview { action_hash: ActionHash, reason: UntrustedText },
    /// A reviewer denies the case.
    DenyReview { reason: UntrustedText },
    /// The owner (from a pre-existing destination's cancel link) or an operator stops a pending change.
    Cancel { reason: UntrustedText },
    /// airlock's timer: look at the clock in the context and move the case if a period has passed.
    Tick,
    /// airlock's executor reports the effect it applied (or failed to apply) to the account directory.
    ConfirmExecution { effect_id: EffectId, outcome: EffectOutcome },
    /// An operator undoes an executed change; the reversal has already been applied idempotently by the shell.
    RollBack { reason: UntrustedText },
    /// airlock's notifier reports notices it delivered: those owed by the event at case version `for_event`, to these
    /// destinations.
    ConfirmNotices { for_event: u64, destinations: Vec<DestinationId> },
    /// The owner, from the set-password link an applied reset sent to `destination`, set a new password, and the
    /// directory did `changes`. The shell checked the link's signature, asked `decide::set_password_allowed` before
    /// writing, and keeps the password out of the command; the core records the link as spent.
    SetPassword { destination: DestinationId, changes: Vec<Change> },
}

/// An authenticator (TOTP, RFC 6238) code typed next to the one-time code, as checked by the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SecondFactorCheck {
    /// None was typed, or the account has no authenticator.
    NotGiven,
    /// The directory accepted it (current time step, not used before).
    Valid,
    /// The directory refused it. Counts as a wrong code for the account.
    Invalid,
    /// It is a right code of the app, but already used (the same proof sent twice at once, from two tabs): refused,
    /// and not counted as a wrong code (issue 15, item 14).
    AlreadyUsed,
    /// No code was typed: the owner signed in at the company's OpenID Connect provider, as this account and with a
    /// second factor, at `auth_time` (the verified ID token's claim), just before (issue 18, item 6).
    SignedIn { auth_time: UnixMs },
    /// A verified sign-in at the provider, with a second factor, but as another account than the case's: a wrong
    /// second factor, counted like a wrong authenticator code, and recorded as such (someone holding the message's
    /// code signed in as somebody else).
    SignedInAsAnother,
}

pub use crate::kind::CommandKind;

impl Command {
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::RequestRecovery { .. } => CommandKind::RequestRecovery,
            Command::SubmitProof { .. } => CommandKind::SubmitProof,
            Command::ApproveReview { .. } => CommandKind::ApproveReview,
            Command::DenyReview { .. } => CommandKind::DenyReview,
            Command::Cancel { .. } => CommandKind::Cancel,
            Command::Tick => CommandKind::Tick,
            Command::ConfirmExecution { .. } => CommandKind::ConfirmExecution,
            Command::RollBack { .. } => CommandKind::RollBack,
            Command::ConfirmNotices { .. } => CommandKind::ConfirmNotices,
            Command::SetPassword { .. } => CommandKind::SetPassword,
        }
    }
}

/// What the executor saw when it applied an effect.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EffectOutcome {
    Applied { changes: Vec<Change> },
    Failed { reason: String },
}

/// One record the executor changed, old value to new value, for receipts and rollback.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Change {
    /// What changed, in the directory's words (for example `destination:email-2`, `password`, `sessions`).
    pub record: String,
    pub old: Option<String>,
    pub new: Option<String>,
}
