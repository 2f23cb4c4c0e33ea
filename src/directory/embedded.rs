//! The embedded account directory in a SQLite file. It also serves as the demo's identity store: accounts,
//! destinations with the time each became trusted, sessions, risk flags, and the effects applied to them.

use crate::core::account::{AccountSnapshot, Destination, DestinationKind, HighValueReason, RiskClass};
use crate::core::action::RecoveryAction;
use crate::core::command::{Change, SecondFactorCheck};
use crate::core::ids::{AccountId, DestinationId, EffectId, UnixMs};
use crate::directory::{AccountDirectory, DirectoryError};
use crate::sqlite::{self, Migration, OpenError};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

const MIGRATIONS: &[Migration] =
    crate::migrations!("directory": 1 => "0001_accounts", 2 => "0002_totp_secret", 3 => "0003_holds");

/// An account as it is imported into the embedded directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRecord {
    pub account_id: String,
    #[serde(default)]
    pub high_value_reason: Option<HighValueReason>,
    #[serde(default)]
    pub totp_enrolled_since: Option<UnixMs>,
    /// The authenticator's secret, when the directory checks its codes (never read from or written to JSON here:
    /// the import format carries it as base32 and converts it).
    #[serde(skip)]
    pub totp_secret: Option<crate::directory::totp::TotpSecret>,
    #[serde(default)]
    pub last_credential_change: Option<UnixMs>,
    #[serde(default)]
    pub risk_flags: Vec<String>,
    pub destinations: Vec<Destination>,
    /// Sessions open now, by the time each was opened.
    #[serde(default)]
    pub sessions_opened_at: Vec<UnixMs>,
}

#[derive(Clone)]
pub struct EmbeddedDirectory {
    /// Shared by the clones: the async adapter runs each call on the blocking pool with its own handle.
    connection: std::sync::Arc<Mutex<Connection>>,
}

fn unavailable(error: rusqlite::Error) -> DirectoryError {
    DirectoryError::Unavailable(error.to_string())
}

fn corrupt(error: serde_json::Error) -> DirectoryError {
    DirectoryError::Corrupt(error.to_string())
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes to JSON")
}

fn kind_name(kind: DestinationKind) -> &'static str {
    kind.name()
}

fn kind_from(name: &str) -> Result<DestinationKind, DirectoryError> {
    match name {
        "email" => Ok(DestinationKind::Email),
        "phone" => Ok(DestinationKind::Phone),
        other => Err(DirectoryError::Corrupt(format!("unknown destination kind {other}"))),
    }
}

impl EmbeddedDirectory {
    pub fn open(path: &Path) -> Result<EmbeddedDirectory, OpenError> {
        Ok(EmbeddedDirectory { connection: std::sync::Arc::new(Mutex::new(sqlite::open(path, MIGRATIONS)?)) })
    }

    /// The connection, shared with the embedded outbox (same file).
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Inserts or replaces one account, all in one transaction.
    pub fn put_account(&self, record: &AccountRecord) -> Result<(), DirectoryError> {
        self.put_accounts(std::slice::from_ref(record))
    }

    /// Inserts or replaces accounts, all in one transaction: either every account is written or none is.
    pub fn put_accounts(&self, records: &[AccountRecord]) -> Result<(), DirectoryError> {
        let mut connection = self.lock();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(unavailable)?;
        for record in records {
            if let Some(case) = holding_case(&transaction, &record.account_id, None)? {
                return Err(DirectoryError::Held { account: AccountId::new(&record.account_id), case });
            }
            put_in(&transaction, record)?;
        }
        transaction.commit().map_err(unavailable)
    }

    /// Opens a session (the demo uses this to show sessions revoked by a reset and by a rollback).
    pub fn open_session(&self, account_id: &AccountId, session_id: &str, at: UnixMs) -> Result<(), DirectoryError> {
        self.lock()
            .prepare_cached("INSERT INTO sessions (session_id, account_id, opened_at) VALUES (?1, ?2, ?3)")
            .and_then(|mut statement| statement.execute(params![session_id, account_id.as_str(), at.0 as i64]))
            .map(|_| ())
            .map_err(unavailable)
    }

    pub fn active_sessions(&self, account_id: &AccountId) -> Result<u32, DirectoryError> {
        self.lock()
            .prepare_cached("SELECT COUNT(*) FROM sessions WHERE account_id = ?1 AND revoked_at IS NULL")
            .and_then(|mut statement| statement.query_row([account_id.as_str()], |row| row.get(0)))
            .map_err(unavailable)
    }

    pub fn credential_version(&self, account_id: &AccountId) -> Result<u32, DirectoryError> {
        self.lock()
            .prepare_cached("SELECT credential_version FROM accounts WHERE account_id = ?1")
            .and_then(|mut statement| statement.query_row([account_id.as_str()], |row| row.get(0)))
            .map_err(unavailable)
    }

    /// Adds a risk flag to an account, as the company's other systems report one (a carrier's SIM-swap report), and
    /// changes nothing else of it. Not held by a pending recovery: the report is a fact about the world.
    pub fn add_risk_flag(&self, account_id: &AccountId, flag: &str) -> Result<(), DirectoryError> {
        let connection = self.lock();
        let text: String = connection
            .prepare_cached("SELECT risk_flags FROM accounts WHERE account_id = ?1")
            .and_then(|mut statement| statement.query_row([account_id.as_str()], |row| row.get(0)))
            .map_err(unavailable)?;
        let mut flags: Vec<String> =
            serde_json::from_str(&text).map_err(|error| DirectoryError::Corrupt(format!("risk flags: {error}")))?;
        if !flags.iter().any(|known| known == flag) {
            flags.push(flag.to_string());
        }
        connection
            .prepare_cached("UPDATE accounts SET risk_flags = ?2 WHERE account_id = ?1")
            .and_then(|mut statement| statement.execute(params![account_id.as_str(), json(&flags)]))
            .map(|_| ())
            .map_err(unavailable)
    }

    /// How many times effects were applied (each effect id once), for tests of idempotency.
    pub fn applied_effects(&self) -> Result<u32, DirectoryError> {
        self.lock()
            .prepare_cached("SELECT COUNT(*) FROM applied_effects")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .map_err(unavailable)
    }
}

fn put_in(transaction: &Transaction, record: &AccountRecord) -> Result<(), DirectoryError> {
    let id = &record.account_id;
    transaction
        .prepare_cached("DELETE FROM sessions WHERE account_id = ?1")
        .and_then(|mut statement| statement.execute([id]))
        .map_err(unavailable)?;
    transaction
        .prepare_cached("DELETE FROM destinations WHERE account_id = ?1")
        .and_then(|mut statement| statement.execute([id]))
        .map_err(unavailable)?;
    transaction
        .prepare_cached("DELETE FROM accounts WHERE account_id = ?1")
        .and_then(|mut statement| statement.execute([id]))
        .map_err(unavailable)?;
    transaction
        .prepare_cached(
            "INSERT INTO accounts (account_id, high_value_reason, totp_enrolled_since, last_credential_change, risk_flags,
                 totp_secret)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                id,
                record.high_value_reason.map(|reason| json(&reason)),
                record.totp_enrolled_since.map(|at| at.0 as i64),
                record.last_credential_change.map(|at| at.0 as i64),
                json(&record.risk_flags),
                record.totp_secret.as_ref().map(|secret| secret.as_bytes().to_vec())
            ])
        })
        .map_err(unavailable)?;
    for destination in &record.destinations {
        insert_destination(transaction, id, destination)?;
    }
    for (index, opened_at) in record.sessions_opened_at.iter().enumerate() {
        transaction
            .prepare_cached("INSERT INTO sessions (session_id, account_id, opened_at) VALUES (?1, ?2, ?3)")
            .and_then(|mut statement| statement.execute(params![format!("{id}-s{index}"), id, opened_at.0 as i64]))
            .map_err(unavailable)?;
    }
    Ok(())
}

fn insert_destination(
    transaction: &Transaction,
    account_id: &str,
    destination: &Destination,
) -> Result<(), DirectoryError> {
    transaction
        .prepare_cached(
            "INSERT INTO destinations (destination_id, account_id, kind, address, trusted_since, revoked)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                destination.id.as_str(),
                account_id,
                kind_name(destination.kind),
                destination.address,
                destination.trusted_since.0 as i64,
                destination.revoked
            ])
        })
        .map(|_| ())
        .map_err(unavailable)
}

fn read_snapshot(connection: &Connection, account_id: &AccountId) -> Result<AccountSnapshot, DirectoryError> {
    let row = connection
        .prepare_cached(
            "SELECT high_value_reason, totp_enrolled_since, last_credential_change, risk_flags
             FROM accounts WHERE account_id = ?1",
        )
        .and_then(|mut statement| {
            statement.query_row([account_id.as_str()], |row| {
                Ok((
                    row.get::<_, Option<String>>(0)?,
                    row.get::<_, Option<i64>>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })
        })
        .optional()
        .map_err(unavailable)?;
    let Some((high_value, totp, changed, flags)) = row else {
        return Ok(AccountSnapshot::unknown(account_id.clone()));
    };
    let risk_class = match high_value {
        Some(reason) => RiskClass::HighValue(serde_json::from_str(&reason).map_err(corrupt)?),
        None => RiskClass::Standard,
    };
    let mut statement = connection
        .prepare_cached(
            "SELECT destination_id, kind, address, trusted_since, revoked FROM destinations
             WHERE account_id = ?1 ORDER BY trusted_since, destination_id",
        )
        .map_err(unavailable)?;
    let rows = statement
        .query_map([account_id.as_str()], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get(2)?, row.get::<_, i64>(3)?, row.get(4)?))
        })
        .map_err(unavailable)?;
    let mut destinations = Vec::new();
    for row in rows {
        let (id, kind, address, trusted_since, revoked) = row.map_err(unavailable)?;
        destinations.push(Destination {
            id: DestinationId::new(id),
            kind: kind_from(&kind)?,
            address,
            trusted_since: UnixMs(trusted_since as u64),
            revoked,
        });
    }
    if destinations.len() > crate::core::limits::DESTINATIONS_PER_ACCOUNT_MAX {
        return Err(DirectoryError::Corrupt(format!("account {account_id} has {} destinations", destinations.len())));
    }
    Ok(AccountSnapshot {
        account_id: account_id.clone(),
        known: true,
        risk_class,
        destinations,
        totp_enrolled_since: totp.map(|at| UnixMs(at as u64)),
        authenticator_unknown: false,
        last_credential_change: changed.map(|at| UnixMs(at as u64)),
        risk_flags: serde_json::from_str(&flags).map_err(corrupt)?,
    })
}

/// The changes recorded for an effect applied before, if it was.
fn applied(transaction: &Transaction, effect_id: &EffectId) -> Result<Option<Vec<Change>>, DirectoryError> {
    let recorded: Option<String> = transaction
        .prepare_cached("SELECT changes FROM applied_effects WHERE effect_id = ?1")
        .and_then(|mut statement| statement.query_row([effect_id.as_str()], |row| row.get(0)))
        .optional()
        .map_err(unavailable)?;
    recorded.map(|text| serde_json::from_str(&text).map_err(corrupt)).transpose()
}

fn record_effect(
    transaction: &Transaction,
    effect_id: &EffectId,
    account_id: &AccountId,
    changes: &[Change],
    now: UnixMs,
) -> Result<(), DirectoryError> {
    transaction
        .prepare_cached(
            "INSERT INTO applied_effects (effect_id, account_id, changes, applied_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut statement| {
            statement.execute(params![effect_id.as_str(), account_id.as_str(), json(&changes), now.0 as i64])
        })
        .map(|_| ())
        .map_err(unavailable)
}

/// Revokes the account's active sessions opened at or after `since`, and returns one change per session revoked
/// (`session:<id>`, old `active, opened <time>`, new `revoked`), so a receipt says which sessions ended (issue 15,
/// item 11). A revoked session is not restorable: `core::decide::reversal_of` leaves these out of a rollback.
fn revoke_sessions_since(
    transaction: &Transaction,
    account_id: &AccountId,
    since: UnixMs,
    now: UnixMs,
) -> Result<Vec<Change>, DirectoryError> {
    let sessions: Vec<(String, i64)> = transaction
        .prepare_cached(
            "SELECT session_id, opened_at FROM sessions
             WHERE account_id = ?1 AND opened_at >= ?2 AND revoked_at IS NULL ORDER BY opened_at, session_id",
        )
        .and_then(|mut statement| {
            statement
                .query_map(params![account_id.as_str(), since.0 as i64], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()
        })
        .map_err(unavailable)?;
    transaction
        .prepare_cached(
            "UPDATE sessions SET revoked_at = ?3 WHERE account_id = ?1 AND opened_at >= ?2 AND revoked_at IS NULL",
        )
        .and_then(|mut statement| statement.execute(params![account_id.as_str(), since.0 as i64, now.0 as i64]))
        .map_err(unavailable)?;
    Ok(sessions
        .into_iter()
        .map(|(session_id, opened_at)| Change {
            record: format!("session:{session_id}"),
            old: Some(format!("active, opened {}", UnixMs(opened_at as u64))),
            new: Some("revoked".into()),
        })
        .collect())
}

fn apply_action(
    transaction: &Transaction,
    account_id: &AccountId,
    action: &RecoveryAction,
    now: UnixMs,
) -> Result<Vec<Change>, DirectoryError> {
    let snapshot = read_snapshot(transaction, account_id)?;
    if !snapshot.known {
        return Err(DirectoryError::NoSuchAccount(account_id.clone()));
    }
    let id = account_id.as_str();
    match action {
        RecoveryAction::ResetPassword => {
            let version: i64 = transaction
                .prepare_cached("SELECT credential_version FROM accounts WHERE account_id = ?1")
                .and_then(|mut statement| statement.query_row([id], |row| row.get(0)))
                .map_err(unavailable)?;
            transaction
                .prepare_cached(
                    "UPDATE accounts SET credential_version = ?2, last_credential_change = ?3 WHERE account_id = ?1",
                )
                .and_then(|mut statement| statement.execute(params![id, version + 1, now.0 as i64]))
                .map_err(unavailable)?;
            let mut changes = vec![Change {
                record: "password".into(),
                old: Some(format!("v{version}")),
                new: Some(format!("v{}", version + 1)),
            }];
            changes.extend(revoke_sessions_since(transaction, account_id, UnixMs(0), now)?);
            Ok(changes)
        }
        RecoveryAction::AddDestination { kind, address } => {
            let destination = Destination {
                id: DestinationId::new(format!("{id}-{}-{}", kind.name(), snapshot.destinations.len() + 1)),
                kind: *kind,
                address: address.clone(),
                trusted_since: now,
                revoked: false,
            };
            insert_destination(transaction, id, &destination)?;
            // A change to the account's factors ends its sessions, like a reset (issue 15, item 11).
            let mut changes = vec![Change {
                record: format!("destination:{}", destination.id),
                old: None,
                new: Some(format!("{}:{address}", kind.name())),
            }];
            changes.extend(revoke_sessions_since(transaction, account_id, UnixMs(0), now)?);
            Ok(changes)
        }
        RecoveryAction::RemoveTotp => {
            transaction
                .prepare_cached("UPDATE accounts SET totp_enrolled_since = NULL WHERE account_id = ?1")
                .and_then(|mut statement| statement.execute([id]))
                .map_err(unavailable)?;
            let old = snapshot.totp_enrolled_since.map(|at| at.0.to_string());
            let mut changes = vec![Change { record: "totp".into(), old, new: None }];
            changes.extend(revoke_sessions_since(transaction, account_id, UnixMs(0), now)?);
            Ok(changes)
        }
    }
}

/// Applies one reversed change. Passwords go back to the previous credential version; added destinations are
/// removed; a removed authenticator is restored. Revoked sessions are not restorable and never reach here
/// (`reversal_of` leaves them out); sessions opened since the execution are revoked separately.
fn apply_reversal(
    transaction: &Transaction,
    account_id: &AccountId,
    change: &Change,
) -> Result<Option<Change>, DirectoryError> {
    let id = account_id.as_str();
    let parse_version = |value: &Option<String>| {
        value
            .as_deref()
            .and_then(|text| text.strip_prefix('v'))
            .and_then(|digits| digits.parse::<i64>().ok())
            .ok_or_else(|| DirectoryError::Corrupt(format!("bad password version {value:?}")))
    };
    if change.record == "password" {
        let version = parse_version(&change.new)?;
        transaction
            .prepare_cached("UPDATE accounts SET credential_version = ?2 WHERE account_id = ?1")
            .and_then(|mut statement| statement.execute(params![id, version]))
            .map_err(unavailable)?;
        return Ok(Some(change.clone()));
    }
    if change.record == "totp" {
        let restored = change.new.as_deref().and_then(|text| text.parse::<i64>().ok());
        transaction
            .prepare_cached("UPDATE accounts SET totp_enrolled_since = ?2 WHERE account_id = ?1")
            .and_then(|mut statement| statement.execute(params![id, restored]))
            .map_err(unavailable)?;
        return Ok(Some(change.clone()));
    }
    if let Some(destination_id) = change.record.strip_prefix("destination:") {
        let removed = change.new.is_none();
        transaction
            .prepare_cached("UPDATE destinations SET revoked = ?3 WHERE account_id = ?1 AND destination_id = ?2")
            .and_then(|mut statement| statement.execute(params![id, destination_id, removed]))
            .map_err(unavailable)?;
        return Ok(Some(change.clone()));
    }
    Ok(None)
}

/// The directory's own calls, blocking (SQLite): `AccountDirectory` runs them on the blocking pool.
impl EmbeddedDirectory {
    pub fn snapshot(&self, account_id: &AccountId) -> Result<AccountSnapshot, DirectoryError> {
        read_snapshot(&self.lock(), account_id)
    }

    pub fn hold(&self, account_id: &AccountId, case_id: &str, now: UnixMs) -> Result<(), DirectoryError> {
        self.lock()
            .prepare_cached("INSERT OR IGNORE INTO holds (account_id, case_id, held_at) VALUES (?1, ?2, ?3)")
            .and_then(|mut statement| statement.execute(params![account_id.as_str(), case_id, now.0 as i64]))
            .map(|_| ())
            .map_err(unavailable)
    }

    pub fn release(&self, account_id: &AccountId, case_id: &str) -> Result<(), DirectoryError> {
        self.lock()
            .prepare_cached("DELETE FROM holds WHERE account_id = ?1 AND case_id = ?2")
            .and_then(|mut statement| statement.execute(params![account_id.as_str(), case_id]))
            .map(|_| ())
            .map_err(unavailable)
    }

    /// The owner set a new password (issue 18, item 5), once per `key`. The embedded directory authenticates nobody
    /// (it stands in for a company's identity provider), so it keeps no password, not even a hash: it records that
    /// one was set, as the next credential version.
    pub fn set_password(&self, key: &str, account_id: &AccountId, now: UnixMs) -> Result<Vec<Change>, DirectoryError> {
        let effect_id = EffectId::new(key);
        self.apply_once(&effect_id, account_id, now, |transaction| {
            let version: i64 = transaction
                .prepare_cached("SELECT credential_version FROM accounts WHERE account_id = ?1")
                .and_then(|mut statement| statement.query_row([account_id.as_str()], |row| row.get(0)))
                .optional()
                .map_err(unavailable)?
                .ok_or_else(|| DirectoryError::NoSuchAccount(account_id.clone()))?;
            transaction
                .prepare_cached(
                    "UPDATE accounts SET credential_version = ?2, last_credential_change = ?3 WHERE account_id = ?1",
                )
                .and_then(|mut statement| statement.execute(params![account_id.as_str(), version + 1, now.0 as i64]))
                .map_err(unavailable)?;
            Ok(vec![Change {
                record: "password".into(),
                old: Some(format!("v{version}")),
                new: Some(format!("v{} (set by the owner)", version + 1)),
            }])
        })
    }

    pub fn verify_totp(
        &self,
        account_id: &AccountId,
        typed: &str,
        now: UnixMs,
    ) -> Result<SecondFactorCheck, DirectoryError> {
        let mut connection = self.lock();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(unavailable)?;
        let row: Option<(Option<Vec<u8>>, Option<i64>)> = transaction
            .prepare_cached("SELECT totp_secret, totp_last_step FROM accounts WHERE account_id = ?1")
            .and_then(|mut statement| {
                statement.query_row([account_id.as_str()], |row| Ok((row.get(0)?, row.get(1)?))).optional()
            })
            .map_err(unavailable)?;
        let Some((Some(secret), last_step)) = row else { return Ok(SecondFactorCheck::Invalid) };
        let secret = crate::directory::totp::TotpSecret::from_bytes(secret).map_err(DirectoryError::Corrupt)?;
        let last_step = last_step.map(|step| step as u64);
        let Some(step) = crate::directory::totp::matching_step(&secret, typed, now, last_step) else {
            let right = crate::directory::totp::matching_step(&secret, typed, now, None).is_some();
            return Ok(if right { SecondFactorCheck::AlreadyUsed } else { SecondFactorCheck::Invalid });
        };
        transaction
            .prepare_cached("UPDATE accounts SET totp_last_step = ?2 WHERE account_id = ?1")
            .and_then(|mut statement| statement.execute(params![account_id.as_str(), step as i64]))
            .map_err(unavailable)?;
        transaction.commit().map_err(unavailable)?;
        Ok(SecondFactorCheck::Valid)
    }

    pub fn execute(
        &self,
        effect_id: &EffectId,
        account_id: &AccountId,
        action: &RecoveryAction,
        now: UnixMs,
    ) -> Result<Vec<Change>, DirectoryError> {
        self.apply_once(effect_id, account_id, now, |transaction| apply_action(transaction, account_id, action, now))
    }

    pub fn revert(
        &self,
        effect_id: &EffectId,
        account_id: &AccountId,
        reversal: &[Change],
        executed_at: UnixMs,
        now: UnixMs,
    ) -> Result<Vec<Change>, DirectoryError> {
        self.apply_once(effect_id, account_id, now, |transaction| {
            let mut changes = Vec::new();
            for change in reversal {
                changes.extend(apply_reversal(transaction, account_id, change)?);
            }
            changes.extend(revoke_sessions_since(transaction, account_id, executed_at, now)?);
            Ok(changes)
        })
    }
}

impl EmbeddedDirectory {
    /// Runs `effect` and records its changes under `effect_id`, in one transaction; if the effect id was applied
    /// before, returns the recorded changes and runs nothing.
    fn apply_once(
        &self,
        effect_id: &EffectId,
        account_id: &AccountId,
        now: UnixMs,
        effect: impl FnOnce(&Transaction) -> Result<Vec<Change>, DirectoryError>,
    ) -> Result<Vec<Change>, DirectoryError> {
        let mut connection = self.lock();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(unavailable)?;
        if let Some(changes) = applied(&transaction, effect_id)? {
            return Ok(changes);
        }
        if let Some(case) = holding_case(&transaction, account_id.as_str(), Some(effect_id))? {
            return Err(DirectoryError::Held { account: account_id.clone(), case });
        }
        let changes = effect(&transaction)?;
        record_effect(&transaction, effect_id, account_id, &changes, now)?;
        transaction.commit().map_err(unavailable)?;
        Ok(changes)
    }
}

/// The pending recovery that freezes the account, if any, other than the one `effect_id` belongs to.
fn holding_case(
    transaction: &Transaction,
    account_id: &str,
    effect_id: Option<&EffectId>,
) -> Result<Option<String>, DirectoryError> {
    let cases: Vec<String> = transaction
        .prepare_cached("SELECT case_id FROM holds WHERE account_id = ?1 ORDER BY held_at")
        .and_then(|mut statement| {
            statement.query_map([account_id], |row| row.get(0))?.collect::<Result<Vec<String>, _>>()
        })
        .map_err(unavailable)?;
    let own = |case: &String| effect_id.is_some_and(|effect| effect.as_str().starts_with(&format!("{case}/")));
    Ok(cases.into_iter().find(|case| !own(case)))
}

/// Runs `work` on a clone of the directory on tokio's blocking pool, so the SQLite file never stalls the runtime.
async fn off_the_runtime<T: Send + 'static>(
    directory: &EmbeddedDirectory,
    work: impl FnOnce(EmbeddedDirectory) -> Result<T, DirectoryError> + Send + 'static,
) -> Result<T, DirectoryError> {
    let directory = directory.clone();
    tokio::task::spawn_blocking(move || work(directory))
        .await
        .map_err(|error| DirectoryError::Unavailable(format!("the directory call stopped: {error}")))?
}

#[async_trait::async_trait]
impl AccountDirectory for EmbeddedDirectory {
    fn capabilities(&self) -> crate::directory::Capabilities {
        crate::directory::Capabilities::ALL
    }

    async fn snapshot(&self, account_id: &AccountId) -> Result<AccountSnapshot, DirectoryError> {
        let account_id = account_id.clone();
        off_the_runtime(self, move |directory| directory.snapshot(&account_id)).await
    }

    async fn verify_totp(
        &self,
        account_id: &AccountId,
        typed: &str,
        now: UnixMs,
    ) -> Result<SecondFactorCheck, DirectoryError> {
        let (account_id, typed) = (account_id.clone(), typed.to_string());
        off_the_runtime(self, move |directory| directory.verify_totp(&account_id, &typed, now)).await
    }

    async fn hold(&self, account_id: &AccountId, case_id: &str, now: UnixMs) -> Result<(), DirectoryError> {
        let (account_id, case_id) = (account_id.clone(), case_id.to_string());
        off_the_runtime(self, move |directory| directory.hold(&account_id, &case_id, now)).await
    }

    async fn release(&self, account_id: &AccountId, case_id: &str) -> Result<(), DirectoryError> {
        let (account_id, case_id) = (account_id.clone(), case_id.to_string());
        off_the_runtime(self, move |directory| directory.release(&account_id, &case_id)).await
    }

    async fn set_password(
        &self,
        key: &str,
        account_id: &AccountId,
        _password: &crate::directory::Password,
        now: UnixMs,
    ) -> Result<Vec<Change>, DirectoryError> {
        let (key, account_id) = (key.to_string(), account_id.clone());
        off_the_runtime(self, move |directory| directory.set_password(&key, &account_id, now)).await
    }

    async fn execute(
        &self,
        effect_id: &EffectId,
        account_id: &AccountId,
        action: &RecoveryAction,
        _seen: &AccountSnapshot,
        now: UnixMs,
    ) -> Result<Vec<Change>, DirectoryError> {
        let (effect_id, account_id, action) = (effect_id.clone(), account_id.clone(), action.clone());
        off_the_runtime(self, move |directory| directory.execute(&effect_id, &account_id, &action, now)).await
    }

    async fn revert(
        &self,
        effect_id: &EffectId,
        account_id: &AccountId,
        reversal: &[Change],
        executed_at: UnixMs,
        now: UnixMs,
    ) -> Result<Vec<Change>, DirectoryError> {
        let (effect_id, account_id, reversal) = (effect_id.clone(), account_id.clone(), reversal.to_vec());
        off_the_runtime(self, move |directory| directory.revert(&effect_id, &account_id, &reversal, executed_at, now))
            .await
    }
}
