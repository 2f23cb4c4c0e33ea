//! The account directory: where airlock reads an account's factors and, through the executor only, applies a
//! change. `embedded` is the SQLite implementation used by default and in the demo; a deployment implements
//! `AccountDirectory` against its identity store, and says through `Capabilities` what it can do.

pub mod embedded;
pub mod http;
pub mod import;
pub mod scim;
pub mod totp;

use crate::core::account::AccountSnapshot;
use crate::core::action::RecoveryAction;
use crate::core::command::Change;
use crate::core::ids::{AccountId, EffectId, UnixMs};

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The directory cannot be reached; retry with the same effect id.
    #[error("account directory unavailable: {0}")]
    Unavailable(String),
    /// The account the effect is for no longer exists; the case goes back to review.
    #[error("account {0} is not in the directory")]
    NoSuchAccount(AccountId),
    /// The account's settings are frozen by another pending recovery; nothing else may change them until it ends.
    #[error("account {account} is frozen while recovery {case} is pending")]
    Held { account: AccountId, case: String },
    /// The directory holds data airlock cannot read, or answered what the protocol does not allow.
    #[error("account directory corrupt: {0}")]
    Corrupt(String),
    /// The account's factors changed since the decision (named by id, never by address), or while the change was
    /// being applied; the case goes to people.
    #[error("the account changed since the decision: {0}")]
    Changed(String),
    /// The directory refused the change for a reason of its own (its answer, bounded); the case goes to people.
    #[error("the account directory refused the change: {0}")]
    Refused(String),
}

/// What a directory can do. The service adapts to each explicitly (issue 18): what a directory cannot do is done
/// another way or sent to people, never assumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Capabilities {
    /// It can freeze an account's security settings while a recovery is pending (`hold`, `release`). Without, the
    /// account is read again just before a change is applied, and any factor change since sends it to people.
    pub hold: bool,
    /// It checks an authenticator code itself (`verify_totp`), holding the secret. Without, an authenticator code is
    /// not taken as proof, so a change that needs it goes to people (THREATS 9).
    pub verify_second_factor: bool,
    /// It can end an account's sessions.
    pub revoke_sessions: bool,
    /// It gives each destination its own age (when it was added or verified), not the account's.
    pub per_factor_ages: bool,
}

impl Capabilities {
    /// Everything: the embedded directory.
    pub const ALL: Capabilities =
        Capabilities { hold: true, verify_second_factor: true, revoke_sessions: true, per_factor_ages: true };
}

/// A new password the owner chose at the set-password page. It goes to the directory and nowhere else: no event, log,
/// reply or `Debug` output holds it.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Password(***)")
    }
}

impl Password {
    /// The fewest characters a new password has (NIST SP 800-63B asks at least 8; 12 resists guessing for longer).
    pub const CHARS_MIN: usize = 12;
    /// The most characters a new password has (NIST asks to allow at least 64).
    pub const CHARS_MAX: usize = 128;

    /// A password as typed twice; the reason it is refused, which never quotes it.
    pub fn new(typed: &str, again: &str) -> Result<Password, &'static str> {
        let chars = typed.chars().count();
        if typed != again {
            return Err("the two passwords are not the same");
        }
        if chars < Password::CHARS_MIN {
            return Err("a password has at least 12 characters");
        }
        if chars > Password::CHARS_MAX {
            return Err("a password has at most 128 characters");
        }
        if typed.chars().any(char::is_control) {
            return Err("a password holds no control characters");
        }
        Ok(Password(typed.to_string()))
    }

    /// The password itself, for the directory's request only.
    pub fn reveal_to_directory(&self) -> &str {
        &self.0
    }
}

/// One page of a directory's accounts (`AccountDirectory::list`).
pub struct AccountPage {
    pub accounts: Vec<AccountSnapshot>,
    /// Where the next page starts; `None` after the last.
    pub next: Option<String>,
}

/// Where airlock reads accounts and applies changes. Every call may do I/O (a file, a network adapter): each is async,
/// and an implementation keeps blocking work off the runtime's threads.
#[async_trait::async_trait]
pub trait AccountDirectory: Send + Sync {
    /// What this directory can do.
    fn capabilities(&self) -> Capabilities;

    /// The account as it is now; an unknown account yields `AccountSnapshot::unknown`.
    async fn snapshot(&self, account_id: &AccountId) -> Result<AccountSnapshot, DirectoryError>;

    /// The accounts from `cursor` on (from the first when `None`), a page at a time, so that airlock dates every
    /// destination it has not seen yet (`directory sync`). Needed only of a directory without `per_factor_ages`.
    async fn list(&self, cursor: Option<&str>) -> Result<AccountPage, DirectoryError> {
        let _ = cursor;
        Err(DirectoryError::Refused("this directory cannot list its accounts".into()))
    }

    /// Sets the account's password to `password`, the owner's choice at the set-password page of an applied reset
    /// (issue 18, item 5). `key` names the link's use, the same on a retry. Returns what changed, never the password.
    async fn set_password(
        &self,
        key: &str,
        account_id: &AccountId,
        password: &Password,
        now: UnixMs,
    ) -> Result<Vec<Change>, DirectoryError> {
        let _ = (key, account_id, password, now);
        Err(DirectoryError::Refused("this directory cannot set a password".into()))
    }

    /// Checks an authenticator (TOTP) code the owner typed, at `now`, and uses it up: the same code, or one from an
    /// earlier time step, is refused afterwards (`AlreadyUsed` when it was a right code of a step used already).
    /// `Invalid` for a wrong code and for an account without an authenticator; the secret stays in the directory.
    /// Called only when `capabilities().verify_second_factor`.
    async fn verify_totp(
        &self,
        account_id: &AccountId,
        typed: &str,
        now: UnixMs,
    ) -> Result<crate::core::command::SecondFactorCheck, DirectoryError>;

    /// Freezes the account's security settings for `case_id`, a recovery that is now pending: until `release`, the
    /// directory refuses every change but that case's own effect (its effect ids start with `<case_id>/`), from
    /// airlock or from anywhere else. Holding twice is one hold. Called only when `capabilities().hold`.
    async fn hold(&self, account_id: &AccountId, case_id: &str, now: UnixMs) -> Result<(), DirectoryError>;

    /// Ends `case_id`'s hold, if it has one. Called only when `capabilities().hold`.
    async fn release(&self, account_id: &AccountId, case_id: &str) -> Result<(), DirectoryError>;

    /// Applies `action` once per `effect_id` and returns what changed. Applying an effect id again changes nothing
    /// and returns the changes recorded the first time, so a retry after a crash is safe. `seen` is the account as
    /// the decision saw it: a directory that cannot hold the account checks, in the same conditional write, that its
    /// factors are still those (`DirectoryError::Changed` otherwise).
    async fn execute(
        &self,
        effect_id: &EffectId,
        account_id: &AccountId,
        action: &RecoveryAction,
        seen: &AccountSnapshot,
        now: UnixMs,
    ) -> Result<Vec<Change>, DirectoryError>;

    /// Applies a rollback's `reversal` once per `effect_id`, and revokes sessions opened since `executed_at`.
    async fn revert(
        &self,
        effect_id: &EffectId,
        account_id: &AccountId,
        reversal: &[Change],
        executed_at: UnixMs,
        now: UnixMs,
    ) -> Result<Vec<Change>, DirectoryError>;
}

/// The text of a file that holds a secret (a signing secret, a bearer token), refused when others can read it; errors
/// name the file, never its content.
pub fn read_private_file(path: &std::path::Path) -> Result<String, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!("{} can be read by others: chmod 600 it", path.display()));
        }
    }
    std::fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()))
}
