//! Factor ages airlock can vouch for (issue 18, item 4). A directory that keeps no age per destination (SCIM,
//! Keycloak, an adapter that says `per_factor_ages: false`) cannot say whether an email was added a year ago or an
//! hour ago, and codes go only to destinations old enough (SPEC principle 2). So airlock dates each destination itself:
//! the first time it sees it, in a ledger beside the log (JetStream's key-value bucket, or SQLite), exact across
//! processes by compare-and-swap. A destination that disappears and comes back, or whose address changes, is new
//! again. Until a destination has been seen for the minimum age it gets no code, so adopting airlock on such a
//! directory sends recoveries to people for that long.

use crate::core::account::{AccountSnapshot, Destination};
use crate::core::ids::UnixMs;
use crate::log::{EventLog, Ledger, LedgerEntry, LedgerKey, LogError};
use crate::service::repository::{LEDGER_RETRIES_MAX, ledger_backoff};
use crate::service::{Service, ServiceError};
use sha2::{Digest, Sha256};

/// A destination's identity in the ledger: its id, kind and address, hashed (the ledger holds no address).
fn fingerprint(destination: &Destination) -> String {
    let digest = Sha256::digest(format!(
        "{}\n{}\n{}",
        destination.id,
        destination.kind.name(),
        destination.address.trim().to_lowercase()
    ));
    hex::encode(&digest[..16])
}

/// The most pages one sync reads (a directory whose listing never ends is an error, not a loop).
const SYNC_PAGES_MAX: usize = 1_000_000;

/// What one sync read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    pub accounts: usize,
    pub destinations: usize,
    /// Destinations airlock saw for the first time (or again after they had gone).
    pub first_seen: usize,
}

impl<L: EventLog> Service<L> {
    /// Reads every account of the directory and dates each destination airlock has not seen yet (`directory sync`,
    /// and `serve` on its interval), so that an address added at the identity provider ages from when it appeared
    /// rather than from its first recovery. `None` for a directory that dates its destinations itself.
    pub async fn sync_directory(&self) -> Result<Option<Synced>, ServiceError> {
        self.read_whole_directory(None).await
    }

    /// An operator's attested baseline (`airlock directory sync --baseline --attest REASON`, issue 18, item 4):
    /// recorded in the control stream first, then every destination the directory holds now is dated no later than
    /// the baseline's `dated_to` (the minimum age before it), so that recoveries need not wait that long after adopting
    /// airlock. Refused for a directory that dates its own destinations (a baseline would change nothing). Asked again
    /// under the same command id, it dates to the baseline first recorded.
    pub async fn attest_baseline(
        &self,
        command_id: crate::core::ids::CommandId,
        actor: crate::core::actor::Actor,
        reason: crate::core::text::UntrustedText,
    ) -> Result<(crate::core::control::Baseline, Synced), ServiceError> {
        if self.directory.capabilities().per_factor_ages {
            return Err(ServiceError::Rejected(crate::core::rejection::Rejection::InvalidValue {
                field: "baseline".into(),
                expected: "a directory that keeps no age per destination: this one dates its own".into(),
            }));
        }
        let dated_to = UnixMs(self.clock.now().0.saturating_sub(self.settings.destination_age_ms_min));
        let command = crate::core::control::ControlCommand::AttestBaseline { reason, dated_to };
        self.control(command_id.clone(), actor.clone(), command).await?;
        let (state, _, _) = self.control_state().await?;
        let baseline = (state.baselines.into_iter().rev())
            .find(|baseline| baseline.by == actor && baseline.command_id == command_id)
            .ok_or_else(|| ServiceError::Corrupt("the attested baseline is not in the control stream".into()))?;
        let synced = self.read_whole_directory(Some(baseline.dated_to)).await?.unwrap_or_default();
        tracing::info!(
            by = %baseline.by,
            accounts = synced.accounts,
            destinations = synced.destinations,
            "directory baseline attested"
        );
        Ok((baseline, synced))
    }

    /// Reads every account and dates its destinations: from when airlock first saw them, or no later than `baseline`.
    async fn read_whole_directory(&self, baseline: Option<UnixMs>) -> Result<Option<Synced>, ServiceError> {
        if self.directory.capabilities().per_factor_ages {
            return Ok(None);
        }
        let mut synced = Synced::default();
        let mut cursor: Option<String> = None;
        for _ in 0..SYNC_PAGES_MAX {
            let page = self.directory.list(cursor.as_deref()).await?;
            for snapshot in page.accounts {
                let now = self.clock.now();
                let dated = self.date_destinations(snapshot, now, baseline).await?;
                synced.accounts += 1;
                synced.destinations += dated.destinations.len();
                synced.first_seen +=
                    dated.destinations.iter().filter(|destination| destination.trusted_since == now).count();
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(Some(synced)),
            }
        }
        Err(ServiceError::Directory(crate::directory::DirectoryError::Corrupt(format!(
            "the directory's listing did not end after {SYNC_PAGES_MAX} pages"
        ))))
    }

    /// `snapshot` with each destination dated by when airlock first saw it, when the directory gives no age per
    /// destination; unchanged otherwise. Records destinations seen for the first time, and forgets those gone.
    pub(super) async fn date_by_first_seen(
        &self,
        snapshot: AccountSnapshot,
        now: UnixMs,
    ) -> Result<AccountSnapshot, ServiceError> {
        self.date_destinations(snapshot, now, None).await
    }

    /// `date_by_first_seen`, with every destination dated no later than `baseline` when one is given.
    async fn date_destinations(
        &self,
        mut snapshot: AccountSnapshot,
        now: UnixMs,
        baseline: Option<UnixMs>,
    ) -> Result<AccountSnapshot, ServiceError> {
        if self.directory.capabilities().per_factor_ages || !snapshot.known {
            return Ok(snapshot);
        }
        let key = LedgerKey::FirstSeen(snapshot.account_id.to_string());
        for round in 1..=LEDGER_RETRIES_MAX {
            let (revision, read) = self.log.ledger(&key).await?;
            let mut seen = Ledger::default();
            for destination in &mut snapshot.destinations {
                let print = fingerprint(destination);
                let first =
                    read.requests.iter().find(|entry| entry.case_id == print).map_or(now.0, |entry| entry.at_ms);
                let at = baseline.map_or(first, |baseline| first.min(baseline.0));
                destination.trusted_since = UnixMs(at);
                seen.requests.push(LedgerEntry { case_id: print, at_ms: at, code_until_ms: None, count: 0 });
            }
            if seen == read {
                return Ok(snapshot);
            }
            match self.log.put_ledger(&key, revision, &seen).await {
                Ok(()) => return Ok(snapshot),
                Err(LogError::Conflict { .. }) => ledger_backoff(round).await,
                Err(error) => return Err(error.into()),
            }
        }
        Err(LogError::Unavailable(format!("the {key} kept changing under {LEDGER_RETRIES_MAX} attempts")).into())
    }
}
