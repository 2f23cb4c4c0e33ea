//! The account as the directory described it when a case was opened: its destinations with the time each became
//! trusted, its second factor, its risk class. The snapshot is recorded in the case's first event so that every
//! later decision, and every replay, uses the same facts.

use crate::core::ids::{AccountId, DestinationId, UnixMs};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DestinationKind {
    Email,
    Phone,
}

impl DestinationKind {
    pub fn name(self) -> &'static str {
        match self {
            DestinationKind::Email => "email",
            DestinationKind::Phone => "phone",
        }
    }
}

/// One place the account owner can be reached.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Destination {
    pub id: DestinationId,
    pub kind: DestinationKind,
    /// The full address. It stays inside airlock: replies to requesters show at most `masked()`.
    pub address: String,
    /// When the account owner proved this destination. Codes go only to destinations trusted long enough before
    /// the request (see `verification::eligible_destinations`).
    pub trusted_since: UnixMs,
    /// Set when the owner or an operator reported the destination lost; a revoked destination gets nothing.
    pub revoked: bool,
}

impl Destination {
    /// A hint a person can recognise without learning the address: `a***@example.com`, `*******12`.
    pub fn masked(&self) -> String {
        mask_address(self.kind, &self.address)
    }
}

/// Masks an address as `Destination::masked` does, for addresses that are not (yet) destinations.
pub fn mask_address(kind: DestinationKind, address: &str) -> String {
    match kind {
        DestinationKind::Email => match address.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            None => "***".to_string(),
        },
        DestinationKind::Phone => {
            let digits: Vec<char> = address.chars().filter(char::is_ascii_digit).collect();
            let tail: String = digits.iter().skip(digits.len().saturating_sub(2)).collect();
            format!("*******{tail}")
        }
    }
}

/// Why an account is high-value. Any of these means: never automated, two reviewers, the longest cooling-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HighValueReason {
    Admin,
    Creator,
    Finance,
    Government,
    Vip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RiskClass {
    Standard,
    HighValue(HighValueReason),
}

/// What the directory knew about an account when the case was opened.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccountSnapshot {
    pub account_id: AccountId,
    /// False when the directory has no such account. The case still opens and the requester gets the same answer as
    /// for a known account (THREATS 8); it simply never issues a code. Its internal status can differ (a known account
    /// may go to review), so public status views must map `requested` and `in_review` to one public word.
    pub known: bool,
    pub risk_class: RiskClass,
    pub destinations: Vec<Destination>,
    /// When a TOTP authenticator was enrolled, if one is.
    pub totp_enrolled_since: Option<UnixMs>,
    /// The last password or factor change, which makes a new recovery suspicious (policy input).
    pub last_credential_change: Option<UnixMs>,
    /// Free-form flags the directory raises (for example `sim_swap_reported`); policy input, never proof.
    pub risk_flags: Vec<String>,
}

impl AccountSnapshot {
    /// The snapshot recorded for an account the directory does not know.
    pub fn unknown(account_id: AccountId) -> Self {
        AccountSnapshot {
            account_id,
            known: false,
            risk_class: RiskClass::Standard,
            destinations: Vec::new(),
            totp_enrolled_since: None,
            last_credential_change: None,
            risk_flags: Vec::new(),
        }
    }

    pub fn is_high_value(&self) -> bool {
        match self.risk_class {
            RiskClass::Standard => false,
            RiskClass::HighValue(_) => true,
        }
    }

    pub fn destination(&self, id: &DestinationId) -> Option<&Destination> {
        self.destinations.iter().find(|destination| &destination.id == id)
    }

    /// Destinations that existed (and were not revoked) when the case was opened: they get every notice.
    pub fn pre_existing(&self, requested_at: UnixMs) -> Vec<&Destination> {
        self.destinations
            .iter()
            .filter(|destination| !destination.revoked && destination.trusted_since <= requested_at)
            .collect()
    }
}
