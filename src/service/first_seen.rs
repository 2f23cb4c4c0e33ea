//! Factor ages airlock can vouch for (issue 18, item 4). A directory that keeps no age per destination (SCIM,
//! Keycloak, an adapter that says `per_factor_ages: false`) cannot say whether an email was added a year ago or an
//! hour ago, and codes go only to destinations old enough (SPEC principle 2). So airlock dates each destination itself:
//! the first time it sees it, in a ledger beside the log (JetStream's key-value bucket, or SQLite), exact across
//! processes by compare-and-swap. A destination that disappears and comes back, or whose address changes, is new
//! again. Until a destination has been seen for the minimum age it gets no code, so adopting airlock on such a
//! directory sends recoveries to people for that long.

use crate::core::account::{AccountSnapshot, Destination};
use crate::core::ids::UnixMs;
use crate::log::{EventLog, Ledger, LedgerEntry, LedgerKey};
use crate::service::repository::swap_ledger;
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
    /// Destinations a baseline dated back (to its `dated_to`); none without one.
    pub dated_by_baseline: usize,
}

/// What dating one account's destinations did.
#[derive(Default)]
struct Dated {
    first_seen: usize,
    dated_by_baseline: usize,
}

/// How long after it was recorded a baseline asked again under its command id still dates (a retry after a failed
/// or cut-off listing); later, the same id dates nothing more (a replay must not vouch for what appeared since).
const BASELINE_RETRY_MS_MAX: u64 = 60 * 60 * 1_000;

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
        // Asked again under its id: within the hour it finishes dating (a listing that failed or was cut off);
        // later it dates nothing, so that replaying an old id cannot vouch for what appeared since.
        if self.clock.now().0 > baseline.at.0.saturating_add(BASELINE_RETRY_MS_MAX) {
            return Ok((baseline, Synced::default()));
        }
        let synced = self.read_whole_directory(Some(baseline.dated_to)).await.map_err(|error| {
            ServiceError::Directory(crate::directory::DirectoryError::Unavailable(format!(
                "the baseline is recorded (by {}), but dating stopped: {error}; ask again with --command-id {} within \
                 the hour to finish",
                baseline.by, baseline.command_id
            )))
        })?;
        let synced = synced.unwrap_or_default();
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
                let (dated, counts) = self.date_destinations(snapshot, now, baseline).await?;
                synced.accounts += 1;
                synced.destinations += dated.destinations.len();
                synced.first_seen += counts.first_seen;
                synced.dated_by_baseline += counts.dated_by_baseline;
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
        Ok(self.date_destinations(snapshot, now, None).await?.0)
    }

    /// `date_by_first_seen`, and with a `baseline`, the destinations airlock found when it first read the account
    /// (those sharing the account's earliest first sight, or all when it had never read it) dated no later than the
    /// baseline. A destination airlock saw appear after its first read keeps its own date: that is airlock's own
    /// evidence that it is young, which no attestation overrides.
    async fn date_destinations(
        &self,
        mut snapshot: AccountSnapshot,
        now: UnixMs,
        baseline: Option<UnixMs>,
    ) -> Result<(AccountSnapshot, Dated), ServiceError> {
        if self.directory.capabilities().per_factor_ages || !snapshot.known {
            return Ok((snapshot, Dated::default()));
        }
        let key = LedgerKey::FirstSeen(snapshot.account_id.to_string());
        let dated = swap_ledger(&self.log, &key, |read| {
            let earliest = read.requests.iter().map(|entry| entry.at_ms).min();
            let mut seen = Ledger::default();
            let mut counts = Dated::default();
            let mut destinations = snapshot.destinations.clone();
            for destination in &mut destinations {
                let print = fingerprint(destination);
                let known = read.requests.iter().find(|entry| entry.case_id == print).map(|entry| entry.at_ms);
                let first = known.unwrap_or(now.0);
                let found_at_first_read = earliest.is_none_or(|earliest| first <= earliest);
                let at = match baseline {
                    Some(baseline) if found_at_first_read && baseline.0 < first => {
                        counts.dated_by_baseline += 1;
                        baseline.0
                    }
                    Some(_) | None => first,
                };
                counts.first_seen += usize::from(known.is_none());
                destination.trusted_since = UnixMs(at);
                seen.requests.push(LedgerEntry { case_id: print, at_ms: at, code_until_ms: None, count: 0 });
            }
            (seen, (destinations, counts))
        })
        .await?;
        let (destinations, counts) = dated;
        snapshot.destinations = destinations;
        Ok((snapshot, counts))
    }
}
