//! One address however it is spelled (THREATS 19, issue 15 item 10). Velocity counts, bulk rollback and the alerts to
//! come must treat `Evil+1@Mail.Evil.Example.`, `evil@mail.evil.example` and a Cyrillic look-alike of it as one
//! address of one registrable domain, or an attacker starts a fresh count with every spelling.
//!
//! The rules, in order (documented in ADR 13):
//! - the domain: a trailing dot dropped, each label lower-cased; a label that mixes scripts (Latin with Cyrillic, say)
//!   is refused outright, since no honest address needs one; then the UTS 39 skeleton (what the text looks like:
//!   Cyrillic `а` and Latin `a` are one), then IDNA to ASCII (punycode);
//! - the registrable domain: the public-suffix list's (`psl`) registrable part of that, so `mail.evil.example` and
//!   `evil.example` count together, and `evil.co.uk` is not lumped with every `co.uk` address;
//! - the local part: skeleton, lower case, and everything from the first `+` dropped (sub-addressing, which every
//!   large provider offers); dots dropped too at Gmail (`gmail.com`, `googlemail.com`), which ignores them.
//! - a phone number: its digits, with a leading `+` kept.

use crate::account::DestinationKind;
use unicode_security::{MixedScript, skeleton};

/// An email address as airlock counts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalEmail {
    /// What the address is counted by: `local@domain key`, both canonical. A comparison key, not for display (a
    /// skeleton writes `m` as `rn`, as UTS 39 does, so that `rn` and `m` compare equal).
    pub address: String,
    /// The domain as written, canonical: lower case, no trailing dot, ASCII (punycode).
    pub domain: String,
    /// Its registrable part (the public-suffix list's), ASCII: what a campaign's domain is.
    pub registrable: String,
    /// What `domain` looks like (its UTS 39 skeleton): equal for a domain and its look-alikes.
    pub domain_key: String,
}

/// Why an address cannot be counted as written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressProblem {
    #[error("not an email address")]
    NotAnEmail,
    #[error("the domain label {0:?} mixes scripts, as look-alike domains do")]
    MixedScript(String),
    #[error("the domain is not a valid host name")]
    BadDomain,
}

/// Providers that ignore dots in the local part, by registrable domain.
const DOTLESS_PROVIDERS: [&str; 2] = ["gmail.com", "googlemail.com"];

/// A domain, canonical.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalDomain {
    /// Lower case, no trailing dot, ASCII (punycode).
    pub ascii: String,
    /// The registrable part of `ascii`.
    pub registrable: String,
    /// What `ascii` looks like (UTS 39 skeleton of its Unicode form): a comparison key.
    pub key: String,
}

/// What `text` looks like, case aside: the UTS 39 skeleton of its lower case, lower-cased.
fn looks_like(text: &str) -> String {
    skeleton(&text.to_lowercase()).collect::<String>().to_lowercase()
}

/// The canonical form of a domain.
pub fn canonical_domain(domain: &str) -> Result<CanonicalDomain, AddressProblem> {
    let trimmed = domain.trim();
    let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed).to_lowercase();
    if trimmed.is_empty() {
        return Err(AddressProblem::BadDomain);
    }
    // A domain in punycode is read back to Unicode first, so it is checked and compared like any other.
    let (unicode, decoded) = idna::domain_to_unicode(&trimmed);
    decoded.map_err(|_| AddressProblem::BadDomain)?;
    for label in unicode.split('.') {
        if !label.is_single_script() {
            return Err(AddressProblem::MixedScript(label.to_string()));
        }
    }
    let ascii = idna::domain_to_ascii(&unicode).map_err(|_| AddressProblem::BadDomain)?;
    let host_label = |label: &str| {
        !label.is_empty()
            && label.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
    };
    if !ascii.split('.').all(host_label) || !ascii.contains('.') {
        return Err(AddressProblem::BadDomain);
    }
    let registrable = psl::domain_str(&ascii).unwrap_or(&ascii).to_string();
    Ok(CanonicalDomain { key: looks_like(&unicode), ascii, registrable })
}

/// The canonical form of an email address.
pub fn canonical_email(address: &str) -> Result<CanonicalEmail, AddressProblem> {
    let (local, domain) = address.trim().rsplit_once('@').ok_or(AddressProblem::NotAnEmail)?;
    if local.is_empty() {
        return Err(AddressProblem::NotAnEmail);
    }
    let CanonicalDomain { mut ascii, mut registrable, mut key } = canonical_domain(domain)?;
    let mut local = looks_like(local).split('+').next().unwrap_or_default().to_string();
    if DOTLESS_PROVIDERS.contains(&registrable.as_str()) {
        local.retain(|character| character != '.');
        ascii = "gmail.com".to_string();
        registrable = ascii.clone();
        key = looks_like(&ascii);
    }
    if local.is_empty() {
        return Err(AddressProblem::NotAnEmail);
    }
    Ok(CanonicalEmail { address: format!("{local}@{key}"), domain: ascii, registrable, domain_key: key })
}

/// The key an address is counted under: the canonical email address, or a phone number's digits. An email address
/// that cannot be made canonical is counted as written, lower-cased (it is refused at intake anyway).
pub fn counted_as(kind: DestinationKind, address: &str) -> String {
    match kind {
        DestinationKind::Email => {
            canonical_email(address).map_or_else(|_| address.trim().to_lowercase(), |canonical| canonical.address)
        }
        DestinationKind::Phone => {
            let digits: String = address.chars().filter(char::is_ascii_digit).collect();
            if address.trim_start().starts_with('+') { format!("+{digits}") } else { digits }
        }
    }
}

/// The registrable domain an email address is counted under (`evil.example` for `x@mail.evil.example`, a look-alike
/// of it, or its punycode), for velocity per domain. None for a phone number or an address that is not canonical.
pub fn registrable_domain(kind: DestinationKind, address: &str) -> Option<String> {
    match kind {
        DestinationKind::Email => canonical_email(address).ok().map(|canonical| {
            let (unicode, _) = idna::domain_to_unicode(&canonical.registrable);
            looks_like(&unicode)
        }),
        DestinationKind::Phone => None,
    }
}

/// The registrable domain of an email address as people read it (Unicode, look-alike letters kept): what an alert
/// shows for the domain it counts under `registrable_domain`.
pub fn registrable_domain_shown(kind: DestinationKind, address: &str) -> Option<String> {
    match kind {
        DestinationKind::Email => canonical_email(address).ok().map(|canonical| {
            let (unicode, _) = idna::domain_to_unicode(&canonical.registrable);
            unicode
        }),
        DestinationKind::Phone => None,
    }
}

/// Whether `address` is at `domain` or below it, however either is spelled: `domain` named by an operator
/// (`evil.example`) matches `x@EVIL.example.`, `x@mail.evil.example`, `x@xn--...` and a look-alike of it.
pub fn within_domain(address: &str, domain: &str) -> bool {
    let (Ok(found), Ok(wanted)) = (canonical_email(address), canonical_domain(domain)) else { return false };
    found.domain_key == wanted.key || found.domain_key.ends_with(&format!(".{}", wanted.key))
}
