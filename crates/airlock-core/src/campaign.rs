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
