//! Verification primitives (SPEC principle 2). Codes come from a cryptographic RNG the caller passes in, are kept
//! only as HMAC-SHA256 hashes under a key the caller passes in, are compared in constant time, and may be addressed
//! only to destinations trusted long enough before the request. Nothing here does I/O or reads a clock.

use crate::account::{AccountSnapshot, Destination};
use crate::action::RecoveryAction;
use crate::ids::{ChallengeId, UnixMs};
use crate::limits;
use hmac::{Hmac, Mac};
use rand::{CryptoRng, Rng};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use subtle::ConstantTimeEq;

/// A one-time code in plain text. It exists only between the RNG and the notifier (or between the owner's form and
/// the hasher). `Debug` is redacted so a stray `{:?}` in a log or a panic message cannot leak it, and it has no
/// `Display` and no `Serialize`, so it cannot end up in an event or a reply by accident.
pub struct VerificationCode(String);

impl VerificationCode {
    /// Parses what an owner typed: exactly `CODE_DIGITS` ASCII digits, spaces and dashes ignored.
    pub fn parse(typed: &str) -> Option<VerificationCode> {
        let digits: String = typed.chars().filter(|c| *c != ' ' && *c != '-').collect();
        let valid = digits.len() == limits::CODE_DIGITS && digits.bytes().all(|byte| byte.is_ascii_digit());
        valid.then_some(VerificationCode(digits))
    }

    /// The digits, for the one place that must see them: the message to the owner's destination.
    pub fn reveal_for_delivery(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for VerificationCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("VerificationCode(<redacted>)")
    }
}

/// Draws a uniformly random code of `CODE_DIGITS` digits. The `CryptoRng` bound refuses non-cryptographic RNGs at
/// compile time.
pub fn generate_code<R: Rng + CryptoRng>(rng: &mut R) -> VerificationCode {
    let code: String = (0..limits::CODE_DIGITS).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect();
    VerificationCode(code)
}

/// The key under which codes are hashed. Held by the shell (loaded from a key file), never stored with the hashes.
#[derive(Clone)]
pub struct CodeKey([u8; 32]);

impl CodeKey {
    pub fn from_bytes(bytes: [u8; 32]) -> CodeKey {
        CodeKey(bytes)
    }

    /// HMAC-SHA256 over the challenge id and the code. Binding the challenge id means a hash from one challenge
    /// can never match a code typed for another.
    pub fn hash(&self, challenge_id: &ChallengeId, code: &VerificationCode) -> CodeHash {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts a key of any length");
        mac.update(challenge_id.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(code.0.as_bytes());
        CodeHash(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for CodeKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("CodeKey(<redacted>)")
    }
}

/// A keyed hash of a code. Without the key it reveals nothing about the code, so it may be stored in events.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CodeHash(pub [u8; 32]);

impl CodeHash {
    /// Constant-time comparison: the time taken does not depend on how many leading bytes match.
    pub fn matches(&self, other: &CodeHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for CodeHash {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("CodeHash(<keyed>)")
    }
}

/// Verification settings an operator may tune; the defaults are the limits in `core::limits`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// How long a destination must have been trusted before a request to be challenged.
    pub destination_age_ms_min: u64,
    /// How long a code is valid.
    pub code_ttl_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            destination_age_ms_min: limits::DESTINATION_AGE_MS_MIN_DEFAULT,
            code_ttl_ms: limits::CODE_TTL_MS_DEFAULT,
        }
    }
}

/// The destinations a code may be sent to for a request made at `requested_at`: known account, not revoked, and
/// trusted at least `destination_age_ms_min` before the request. A destination named in the request, or added
/// during the case or shortly before it, is never in this list.
pub fn eligible_destinations<'a>(
    snapshot: &'a AccountSnapshot,
    requested_at: UnixMs,
    settings: &Settings,
) -> Vec<&'a Destination> {
    if !snapshot.known {
        return Vec::new();
    }
    snapshot
        .destinations
        .iter()
        .filter(|destination| {
            !destination.revoked && destination.trusted_since.plus(settings.destination_age_ms_min) <= requested_at
        })
        .collect()
}

/// The destinations a code for this request may go to: the eligible ones, less any whose address is the one the
/// request names. SPEC principle 2 says a destination named in the request never receives a code; that holds even
/// when the requester names an address the account already has.
pub fn challengeable_destinations<'a>(
    snapshot: &'a AccountSnapshot,
    action: &RecoveryAction,
    requested_at: UnixMs,
    settings: &Settings,
) -> Vec<&'a Destination> {
    let named = match action {
        RecoveryAction::AddDestination { address, .. } => Some(address.as_str()),
        RecoveryAction::ResetPassword | RecoveryAction::RemoveTotp => None,
    };
    eligible_destinations(snapshot, requested_at, settings)
        .into_iter()
        .filter(|destination| named.is_none_or(|named| !same_address(named, &destination.address)))
        .collect()
}

/// Whether two addresses reach the same place: emails compared without case, phone numbers by their digits.
fn same_address(left: &str, right: &str) -> bool {
    let digits = |text: &str| text.chars().filter(char::is_ascii_digit).collect::<String>();
    let is_phone = |text: &str| text.starts_with('+');
    if is_phone(left) && is_phone(right) {
        return digits(left) == digits(right);
    }
    left.trim().eq_ignore_ascii_case(right.trim())
}

/// Facts about the whole account that a single case cannot know, gathered by the shell from the log: they make the
/// limits hold across all of an account's cases (THREATS 7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountVerificationFacts {
    /// Wrong codes for this account, over all its cases, inside `PROOF_ATTEMPT_WINDOW_MS`.
    pub failed_attempts_in_window: u32,
    /// Whether another case of this account holds an unexpired, unused code.
    pub outstanding_challenge_elsewhere: bool,
}
