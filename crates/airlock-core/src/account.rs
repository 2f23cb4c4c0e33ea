//! The account as the directory described it when a case was opened: its destinations with the time each became
//! trusted, its second factor, its risk class. The snapshot is recorded in the case's first event so that every
//! later decision, and every replay, uses the same facts.

use crate::ids::{AccountId, DestinationId, UnixMs};
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

/// Masks an address as `Destination::masked` does, for addresses that are not (yet) destinations. The mask is safe to
/// put in front of the owner whoever wrote the address (THREATS 20, issue 15 item 12): at most one ASCII letter or
/// digit of the local part, and the domain only as a plain ASCII host name (an internationalised one in its punycode
/// form, so a look-alike shows as `xn--...`); a domain that is not a host name (a path, a query, a bidi control, a
/// zero-width character, an IP literal) is masked whole.
pub fn mask_address(kind: DestinationKind, address: &str) -> String {
    match kind {
        DestinationKind::Email => match address.rsplit_once('@') {
            Some((local, domain)) => {
                let first = local.chars().next().filter(char::is_ascii_alphanumeric).map_or('*', |first| first);
                format!("{first}***@{}", shown_domain(domain).unwrap_or_else(|| "***".to_string()))
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

/// A domain as it may be shown: lower-case ASCII labels of letters, digits and inner hyphens, at least two of them,
/// after IDNA (UTS 46) mapping; `None` for anything else.
fn shown_domain(domain: &str) -> Option<String> {
    /// Longer than any real host name a person reads; a longer one is more likely a trick than an address.
    const SHOWN_DOMAIN_BYTES_MAX: usize = 64;
    // IDNA maps invisible characters away; a domain written with them is a trick, not an address, and is not shown.
    if domain.chars().any(|character| character.is_control() || crate::text::invisible(character)) {
        return None;
    }
    let ascii = idna::domain_to_ascii_strict(domain.strip_suffix('.').unwrap_or(domain)).ok()?;
    let labels: Vec<&str> = ascii.split('.').collect();
    let plain = |label: &&str| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
    };
    let named = labels.last().is_some_and(|top| top.bytes().any(|byte| byte.is_ascii_lowercase()));
    (labels.len() >= 2 && labels.iter().all(plain) && named && ascii.len() <= SHOWN_DOMAIN_BYTES_MAX).then_some(ascii)
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
    /// The directory cannot tell whether the account has an authenticator (SCIM 2.0 carries none): a factor change
    /// then needs a second factor proven another way (a sign-in at the company's identity provider) or people
    /// (THREATS 9, issue 18 item 6). New in `recovery_requested` v3; older events are upcast with `false`.
    pub authenticator_unknown: bool,
    /// The last password or factor change, which makes a new recovery suspicious (policy input).
    pub last_credential_change: Option<UnixMs>,
    /// Free-form flags the directory raises (for example `sim_swap_reported`); policy input, never proof.
    pub risk_flags: Vec<String>,
}

/// One change to an account's factors, named by destination id, never by address (it goes into events and logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FactorChange {
    DestinationAdded(DestinationId),
    DestinationRemoved(DestinationId),
    DestinationRevoked(DestinationId),
    DestinationChanged(DestinationId),
    Authenticator,
    Credential,
    Risk,
}

impl std::fmt::Display for FactorChange {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FactorChange::DestinationAdded(id) => write!(formatter, "destination {id} added"),
            FactorChange::DestinationRemoved(id) => write!(formatter, "destination {id} removed"),
            FactorChange::DestinationRevoked(id) => write!(formatter, "destination {id} revoked"),
            FactorChange::DestinationChanged(id) => write!(formatter, "destination {id} changed"),
            FactorChange::Authenticator => formatter.write_str("authenticator changed"),
            FactorChange::Credential => formatter.write_str("credential changed"),
            FactorChange::Risk => formatter.write_str("risk class or flags changed"),
        }
    }
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
            authenticator_unknown: false,
            last_credential_change: None,
            risk_flags: Vec::new(),
        }
    }

    /// Whether the account may have a second factor stronger than its destinations: an authenticator the directory
    /// reports, or one it cannot rule out. A factor change then needs it proven, or people (THREATS 9).
    pub fn may_have_authenticator(&self) -> bool {
        self.totp_enrolled_since.is_some() || self.authenticator_unknown
    }

    /// What changed in the account's factors between `self` (what a decision saw) and `now` (the account read again):
    /// destinations added, removed, revoked or changed, the authenticator, the last credential change, the risk class
    /// and flags. Ages are not compared (a directory that keeps none dates every read anew), nor the order of flags.
    /// Empty when nothing changed.
    pub fn factor_changes(&self, now: &AccountSnapshot) -> Vec<FactorChange> {
        let mut changes = Vec::new();
        for before in &self.destinations {
            match now.destination(&before.id) {
                None => changes.push(FactorChange::DestinationRemoved(before.id.clone())),
                Some(after) if after.revoked && !before.revoked => {
                    changes.push(FactorChange::DestinationRevoked(before.id.clone()))
                }
                Some(after) if after.kind != before.kind || after.address != before.address => {
                    changes.push(FactorChange::DestinationChanged(before.id.clone()))
                }
                Some(_) => {}
            }
        }
        for after in now.destinations.iter().filter(|after| self.destination(&after.id).is_none()) {
            changes.push(FactorChange::DestinationAdded(after.id.clone()));
        }
        if self.totp_enrolled_since != now.totp_enrolled_since {
            changes.push(FactorChange::Authenticator);
        }
        if self.last_credential_change != now.last_credential_change {
            changes.push(FactorChange::Credential);
        }
        let flags = |account: &AccountSnapshot| {
            let mut flags = account.risk_flags.clone();
            flags.sort();
            flags
        };
        if self.risk_class != now.risk_class || flags(self) != flags(now) || self.known != now.known {
            changes.push(FactorChange::Risk);
        }
        changes
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
