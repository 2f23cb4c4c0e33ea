//! The API keys of the HTTP intake: one or more per requester (a support desk), each shown once when made and kept
//! only as the SHA-256 of its secret part in `access.db` in the data directory. A key reads
//! `ak_<key id>_<secret>`: the key id (12 hex digits) names it in listings and revocations, the secret (64 hex
//! digits, 256 random bits) is compared in constant time.

use crate::sqlite::{self, Migration, OpenError};
use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

pub(crate) const MIGRATIONS: &[Migration] =
    crate::migrations!("access": 1 => "0001_api_keys", 2 => "0002_console_sessions");

/// The file in the data directory.
pub const FILE: &str = "access.db";

/// A key as made: the whole key is shown once, then only its hash is kept. Not `Debug`, not `Serialize`.
pub struct NewKey {
    pub key_id: String,
    key: String,
}

impl NewKey {
    /// The key to hand to the requester, once.
    pub fn reveal(&self) -> &str {
        &self.key
    }
}

/// A key as listed: never its secret.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KeyInfo {
    pub key_id: String,
    pub requester: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

pub struct ApiKeys {
    connection: Mutex<Connection>,
}

fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Splits `ak_<key id>_<secret>`; anything else is not a key.
fn parse(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix("ak_")?;
    let (key_id, secret) = rest.split_once('_')?;
    let hex = |text: &str, len: usize| text.len() == len && text.bytes().all(|byte| byte.is_ascii_hexdigit());
    (hex(key_id, 12) && hex(secret, 64)).then_some((key_id, secret))
}

impl ApiKeys {
    pub fn open(path: &Path) -> Result<ApiKeys, OpenError> {
        Ok(ApiKeys { connection: Mutex::new(sqlite::open(path, MIGRATIONS)?) })
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes a key for `requester` (an intake actor id, checked by the caller).
    pub fn create(&self, requester: &str, now_ms: i64) -> rusqlite::Result<NewKey> {
        let key_id = hex::encode(rand::random::<[u8; 6]>());
        let secret = hex::encode(rand::random::<[u8; 32]>());
        self.connection().execute(
            "INSERT INTO api_keys (key_id, requester, secret_sha256, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![key_id, requester, secret_hash(&secret), now_ms],
        )?;
        Ok(NewKey { key: format!("ak_{key_id}_{secret}"), key_id })
    }

    /// Whether `presented` has the shape of a key at all: what the HTTP intake checks before it asks the store.
    pub fn well_formed(presented: &str) -> bool {
        parse(presented.trim()).is_some()
    }

    /// The requester a presented key belongs to, if it is a live key. A malformed, unknown, revoked or wrong key
    /// is `None`, all alike.
    pub fn authenticate(&self, presented: &str) -> rusqlite::Result<Option<String>> {
        let Some((key_id, secret)) = parse(presented.trim()) else { return Ok(None) };
        let row: Option<(String, Vec<u8>)> = self
            .connection()
            .query_row(
                "SELECT requester, secret_sha256 FROM api_keys WHERE key_id = ?1 AND revoked_at_ms IS NULL",
                [key_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let hash = secret_hash(secret);
        Ok(row.and_then(|(requester, stored)| bool::from(stored.ct_eq(&hash)).then_some(requester)))
    }

    pub fn list(&self) -> rusqlite::Result<Vec<KeyInfo>> {
        let connection = self.connection();
        let mut statement = connection.prepare(
            "SELECT key_id, requester, created_at_ms, revoked_at_ms FROM api_keys ORDER BY created_at_ms, key_id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(KeyInfo {
                key_id: row.get(0)?,
                requester: row.get(1)?,
                created_at_ms: row.get(2)?,
                revoked_at_ms: row.get(3)?,
            })
        })?;
        rows.collect()
    }

    /// Revokes a key; false when there is no such live key.
    pub fn revoke(&self, key_id: &str, now_ms: i64) -> rusqlite::Result<bool> {
        let changed = self.connection().execute(
            "UPDATE api_keys SET revoked_at_ms = ?2 WHERE key_id = ?1 AND revoked_at_ms IS NULL",
            rusqlite::params![key_id, now_ms],
        )?;
        Ok(changed == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves a made key authenticates as its requester, and a changed, truncated, malformed or revoked one does not;
    // and that the file keeps no key.
    #[test]
    fn keys_authenticate_only_whole_and_live() {
        let directory = tempfile::tempdir().unwrap();
        let keys = ApiKeys::open(&directory.path().join(FILE)).unwrap();
        let made = keys.create("helpdesk", 1).unwrap();
        let key = made.reveal().to_string();
        assert_eq!(keys.authenticate(&key).unwrap().as_deref(), Some("helpdesk"));
        let mut changed = key.clone();
        let last = changed.pop().unwrap();
        changed.push(if last == '0' { '1' } else { '0' });
        for wrong in [changed.as_str(), &key[..key.len() - 1], "", "Bearer", "ak__", &key.replace("ak_", "AK_")] {
            assert_eq!(keys.authenticate(wrong).unwrap(), None, "{wrong:?}");
        }
        assert!(keys.revoke(&made.key_id, 2).unwrap());
        assert!(!keys.revoke(&made.key_id, 3).unwrap(), "revoked once");
        assert_eq!(keys.authenticate(&key).unwrap(), None);
        drop(keys);
        let bytes = std::fs::read(directory.path().join(FILE)).unwrap();
        let secret = key.rsplit('_').next().unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(secret));
    }
}
