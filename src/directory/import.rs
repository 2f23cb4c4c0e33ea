//! `airlock directory import`: loads accounts into the embedded directory from a JSON file whose format is published
//! as `schemas/directory_import.v1.schema.json`. Every error names the line (for JSON errors) or the field path (for
//! values), and an import is all or nothing: one bad account means no account is written.

use crate::core::account::{Destination, DestinationKind, HighValueReason};
use crate::core::ids::{DestinationId, UnixMs};
use crate::core::limits;
use crate::core::text::check_identifier;
use crate::directory::embedded::AccountRecord;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The most accounts one import file may hold; larger directories are imported in several files.
pub const ACCOUNTS_PER_IMPORT_MAX: usize = 100_000;

/// A file of accounts to load into airlock's embedded account directory.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectoryImportV1 {
    /// The shape of this file; must be 1.
    #[schemars(extend("const" = 1))]
    pub version: u16,
    /// The accounts. An account already in the directory is replaced whole.
    pub accounts: Vec<AccountImportV1>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountImportV1 {
    /// The account's id in the directory.
    #[schemars(length(min = 1, max = limits::ID_BYTES_MAX), pattern(r"^[A-Za-z0-9_.@+-]+$"))]
    pub account_id: String,
    /// Why the account is high-value, if it is: it is then never recovered automatically.
    #[serde(default)]
    pub high_value: Option<HighValueV1>,
    /// When a TOTP authenticator was enrolled (RFC 3339), if one is.
    #[serde(default)]
    pub totp_enrolled_since: Option<String>,
    /// The authenticator's shared secret in base32 (as in its `otpauth://` link), so that airlock's directory can
    /// check the owner's authenticator codes. Needs `totp_enrolled_since`. Kept in the directory only.
    #[serde(default)]
    pub totp_secret: Option<Base32Secret>,
    /// The last password or factor change (RFC 3339), if known.
    #[serde(default)]
    pub last_credential_change: Option<String>,
    /// Flags the identity system raised (for example `sim_swap_reported`); policies read them, nothing proves them.
    #[serde(default)]
    pub risk_flags: Vec<String>,
    /// Where the owner can be reached, each with the time it became trusted.
    pub destinations: Vec<DestinationImportV1>,
    /// Sessions open now, by the time each was opened (RFC 3339).
    #[serde(default)]
    pub sessions_opened_at: Vec<String>,
}

/// A secret as base32 text. `Debug` is redacted, so an import file's secrets never reach a log or a panic message.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Base32Secret(#[schemars(length(min = 26, max = 128), pattern(r"^[A-Za-z2-7= ]+$"))] pub String);

impl std::fmt::Debug for Base32Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Base32Secret(<redacted>)")
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HighValueV1 {
    Admin,
    Creator,
    Finance,
    Government,
    Vip,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKindV1 {
    Email,
    Phone,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationImportV1 {
    /// Unique across the whole directory.
    #[schemars(length(min = 1, max = limits::ID_BYTES_MAX), pattern(r"^[A-Za-z0-9_.@+-]+$"))]
    pub id: String,
    pub kind: DestinationKindV1,
    #[schemars(length(min = 1, max = limits::ADDRESS_BYTES_MAX))]
    pub address: String,
    /// When the owner proved this destination (RFC 3339). Codes go only to destinations trusted long enough.
    pub trusted_since: String,
    /// A destination reported lost: it gets nothing.
    #[serde(default)]
    pub revoked: bool,
}

/// Why a file was refused. `line` is set for errors found while reading the JSON, `field` for values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {reason}", line.map(|line| format!("line {line}")).unwrap_or_default(), field.as_ref().map(|field| format!("{}{field}", if line.is_some() { ", " } else { "" })).unwrap_or_default())]
pub struct ImportError {
    pub line: Option<usize>,
    pub field: Option<String>,
    pub reason: String,
}

fn at(field: String, reason: impl Into<String>) -> ImportError {
    ImportError { line: None, field: Some(field), reason: reason.into() }
}

fn moment(field: String, value: &str) -> Result<UnixMs, ImportError> {
    let time = humantime::parse_rfc3339(value)
        .map_err(|_| at(field.clone(), format!("{value:?} is not an RFC 3339 time like 2025-01-31T09:00:00Z")))?;
    let since_epoch =
        time.duration_since(std::time::UNIX_EPOCH).map_err(|_| at(field, "a time before 1970 is not accepted"))?;
    Ok(UnixMs(since_epoch.as_millis() as u64))
}

fn check_address(field: String, kind: DestinationKindV1, address: &str) -> Result<(), ImportError> {
    let valid = match kind {
        DestinationKindV1::Email => {
            address.len() <= limits::ADDRESS_BYTES_MAX
                && matches!(address.split_once('@'), Some((local, domain)) if !local.is_empty() && domain.contains('.'))
                && !address.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        DestinationKindV1::Phone => {
            let digits = address.chars().filter(char::is_ascii_digit).count();
            address.starts_with('+') && (7..=15).contains(&digits) && address[1..].chars().all(|c| c.is_ascii_digit())
        }
    };
    if valid { Ok(()) } else { Err(at(field, format!("{address:?} is not a valid {kind:?} address"))) }
}

/// Reads and checks a whole file; returns the accounts ready to write, or the first problem found.
pub fn parse(text: &str) -> Result<Vec<AccountRecord>, ImportError> {
    let file: DirectoryImportV1 = serde_json::from_str(text).map_err(|error| ImportError {
        line: Some(error.line()),
        field: None,
        reason: error.to_string(),
    })?;
    if file.version != 1 {
        return Err(at("version".into(), format!("version {} is not supported; use 1", file.version)));
    }
    if file.accounts.len() > ACCOUNTS_PER_IMPORT_MAX {
        return Err(at("accounts".into(), format!("more than {ACCOUNTS_PER_IMPORT_MAX} accounts; split the file")));
    }
    let mut accounts_seen = BTreeSet::new();
    let mut destinations_seen = BTreeSet::new();
    let mut records = Vec::with_capacity(file.accounts.len());
    for (index, account) in file.accounts.iter().enumerate() {
        let path = format!("accounts[{index}]");
        check_identifier("account_id", &account.account_id)
            .map_err(|rejection| at(format!("{path}.account_id"), rejection.to_string()))?;
        if !accounts_seen.insert(account.account_id.clone()) {
            return Err(at(format!("{path}.account_id"), format!("{:?} appears twice", account.account_id)));
        }
        if account.destinations.len() > limits::DESTINATIONS_PER_ACCOUNT_MAX {
            return Err(at(format!("{path}.destinations"), "too many destinations for one account"));
        }
        let mut destinations = Vec::with_capacity(account.destinations.len());
        for (number, destination) in account.destinations.iter().enumerate() {
            let field = format!("{path}.destinations[{number}]");
            check_identifier("id", &destination.id)
                .map_err(|rejection| at(format!("{field}.id"), rejection.to_string()))?;
            if !destinations_seen.insert(destination.id.clone()) {
                return Err(at(format!("{field}.id"), format!("destination id {:?} appears twice", destination.id)));
            }
            check_address(format!("{field}.address"), destination.kind, &destination.address)?;
            destinations.push(Destination {
                id: DestinationId::new(&destination.id),
                kind: match destination.kind {
                    DestinationKindV1::Email => DestinationKind::Email,
                    DestinationKindV1::Phone => DestinationKind::Phone,
                },
                address: destination.address.clone(),
                trusted_since: moment(format!("{field}.trusted_since"), &destination.trusted_since)?,
                revoked: destination.revoked,
            });
        }
        let optional = |name: &str, value: &Option<String>| {
            value.as_deref().map(|value| moment(format!("{path}.{name}"), value)).transpose()
        };
        let sessions = account
            .sessions_opened_at
            .iter()
            .enumerate()
            .map(|(number, value)| moment(format!("{path}.sessions_opened_at[{number}]"), value))
            .collect::<Result<Vec<_>, _>>()?;
        records.push(AccountRecord {
            account_id: account.account_id.clone(),
            high_value_reason: account.high_value.map(|reason| match reason {
                HighValueV1::Admin => HighValueReason::Admin,
                HighValueV1::Creator => HighValueReason::Creator,
                HighValueV1::Finance => HighValueReason::Finance,
                HighValueV1::Government => HighValueReason::Government,
                HighValueV1::Vip => HighValueReason::Vip,
            }),
            totp_enrolled_since: optional("totp_enrolled_since", &account.totp_enrolled_since)?,
            totp_secret: match (&account.totp_secret, &account.totp_enrolled_since) {
                (None, _) => None,
                (Some(_), None) => {
                    return Err(at(format!("{path}.totp_secret"), "a secret needs totp_enrolled_since as well"));
                }
                (Some(secret), Some(_)) => Some(
                    crate::directory::totp::TotpSecret::from_base32(&secret.0)
                        .map_err(|reason| at(format!("{path}.totp_secret"), reason))?,
                ),
            },
            last_credential_change: optional("last_credential_change", &account.last_credential_change)?,
            risk_flags: account.risk_flags.clone(),
            destinations,
            sessions_opened_at: sessions,
        });
    }
    Ok(records)
}
