//! The closed list of changes a recovery case may ask for, and the hash that binds a reviewer's approval to
//! exactly one of them. Nothing outside this list can ever be executed, whatever a requester writes.

use crate::account::{DestinationKind, mask_address};
use crate::ids::{AccountId, CaseId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecoveryAction {
    /// Reset the password and end every session, so the owner can set a new one at a pre-existing destination.
    ResetPassword,
    /// Add a new recovery destination. It is the destination named in the request: it is never challenged, never
    /// proof, and is usable for recovery only after its own cooling-off.
    AddDestination { kind: DestinationKind, address: String },
    /// Remove the TOTP authenticator (a lost phone). A factor change: it needs the account's strongest proof.
    RemoveTotp,
}

impl RecoveryAction {
    pub fn name(&self) -> &'static str {
        match self {
            RecoveryAction::ResetPassword => "reset_password",
            RecoveryAction::AddDestination { .. } => "add_destination",
            RecoveryAction::RemoveTotp => "remove_totp",
        }
    }

    /// Whether the action introduces a destination that did not exist before the request.
    pub fn adds_destination(&self) -> bool {
        match self {
            RecoveryAction::ResetPassword | RecoveryAction::RemoveTotp => false,
            RecoveryAction::AddDestination { .. } => true,
        }
    }

    /// Whether the action changes how the account is proven (a destination or an authenticator): such a change
    /// needs the strongest factor the account has, or people (THREATS 9).
    pub fn changes_factors(&self) -> bool {
        match self {
            RecoveryAction::ResetPassword => false,
            RecoveryAction::AddDestination { .. } | RecoveryAction::RemoveTotp => true,
        }
    }

    /// Whether `change`, read from the account `now`, is what this action itself does: a retried execution re-reads an
    /// account its own first attempt may already have changed (the directory answered, airlock crashed before it
    /// recorded), and that must not count as the account changing under the decision.
    pub fn explains(&self, change: &crate::account::FactorChange, now: &crate::account::AccountSnapshot) -> bool {
        use crate::account::FactorChange;
        match (self, change) {
            (RecoveryAction::ResetPassword, FactorChange::Credential) => true,
            (RecoveryAction::RemoveTotp, FactorChange::Authenticator) => now.totp_enrolled_since.is_none(),
            (RecoveryAction::AddDestination { kind, address }, FactorChange::DestinationAdded(id)) => now
                .destination(id)
                .is_some_and(|added| added.kind == *kind && added.address.trim().eq_ignore_ascii_case(address.trim())),
            _ => false,
        }
    }

    /// How the account changed between `seen` (what the decision saw) and `now` (read just before applying this
    /// action), leaving out what this action itself does; empty when nothing else changed.
    pub fn unexplained_changes(
        &self,
        seen: &crate::account::AccountSnapshot,
        now: &crate::account::AccountSnapshot,
    ) -> Vec<crate::account::FactorChange> {
        seen.factor_changes(now).into_iter().filter(|change| !self.explains(change, now)).collect()
    }

    /// A description with any new address masked, for people and for public replies.
    pub fn describe(&self) -> String {
        match self {
            RecoveryAction::ResetPassword => "reset the password and end all sessions".to_string(),
            RecoveryAction::AddDestination { kind, address } => {
                format!("add {} {} as a recovery destination", kind.name(), mask_address(*kind, address))
            }
            RecoveryAction::RemoveTotp => "remove the TOTP authenticator".to_string(),
        }
    }
}

/// SHA-256 over the case, the account and the action. A reviewer approves this hash, so an approval cannot be
/// replayed onto another case or onto a changed action.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ActionHash(pub String);

impl ActionHash {
    pub fn of(case_id: &CaseId, account_id: &AccountId, action: &RecoveryAction) -> ActionHash {
        let bytes = postcard::to_stdvec(&(case_id, account_id, action))
            .expect("postcard encodes plain data into a Vec without failing");
        ActionHash(hex::encode(Sha256::digest(bytes)))
    }
}

impl fmt::Display for ActionHash {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}
