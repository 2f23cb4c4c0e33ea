//! The campaign checks' rows (issue 20, ADR 25): every request (or wrong code) that showed an indicator, the request
//! summaries' signatures, and the alerts stream as tables. Written in the projection's transaction, from the log
//! alone, so that a rebuild gives the same rows; read by the service (`reconcile_alerts`, the open alerts a new
//! request matches) and by the alert queries.

use crate::core::campaign::{
    self, AlertEvent, AlertEventBody, CAMPAIGN_WINDOW_MS_MAX, Check, Hit, PHRASING_SIMILARITY_MIN, Signature,
};
use crate::core::event::Event;
use crate::core::event::EventBody;
use crate::core::ids::{CaseId, UnixMs};
use crate::projection::{Projection, ProjectionError};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::collections::HashMap;

/// How long hits, signatures and bands are kept behind the newest hit: twice the longest window, so that an alert's
/// cases can still be found while it grows.
pub const KEEP_MS: u64 = 2 * CAMPAIGN_WINDOW_MS_MAX;

fn exec(connection: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    connection.prepare_cached(sql)?.execute(params)
}

fn hit(
    transaction: &Transaction,
    indicator: &campaign::Indicator,
    case_id: &CaseId,
    account_id: &str,
    at: UnixMs,
    sequence: u64,
) -> rusqlite::Result<()> {
    exec(
        transaction,
        "INSERT OR IGNORE INTO campaign_hits (check_name, indicator, case_id, account_id, at, log_sequence, shown)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            indicator.check.name(),
            indicator.key,
            case_id.as_str(),
            account_id,
            at.0 as i64,
            sequence as i64,
            indicator.shown
        ],
    )?;
    Ok(())
}

/// An indicator whose value is shown as it is counted.
fn plain(check: Check, value: &str) -> campaign::Indicator {
    campaign::Indicator { check, key: value.to_string(), shown: value.to_string() }
}

/// Candidates compared with a new summary at most: those sharing the most bands with it, the earliest first among
/// equals. A flood of summaries that share one band with everything (half-similar decoys) cannot crowd out a copy,
/// which shares nearly all of them.
pub const PHRASING_CANDIDATES_MAX: usize = 32;

/// Summaries read for each band of a new summary at most: the newest of the window that share it. The work a new
/// summary costs is bounded by this, whatever the day holds: a desk writing every summary from one template (or a
/// campaign of copies) puts every case of the day in the same bands, and reading them all made each request cost as
/// much as the day had cases (issue 21). A copy of anything in a campaign under way finds the newest copies, which
/// carry the campaign's group; to hide a copy, a band's newest rows would have to be filled, between two copies, with
/// this many other summaries sharing that band, in every one of the sixteen bands.
pub const PHRASING_BAND_RECENT_MAX: usize = 32;

/// The group of near-identical summaries `signature` belongs to: among the summaries since a day before `at` read for
/// its bands (`PHRASING_BAND_RECENT_MAX` newest per band), the group of the most like it (by shared bands, then the
/// earliest) that is near-identical to it, or `None` (it begins its own).
pub fn phrasing_cluster(
    connection: &Connection,
    signature: &Signature,
    at: UnixMs,
) -> rusqlite::Result<Option<String>> {
    let since = at.0.saturating_sub(CAMPAIGN_WINDOW_MS_MAX) as i64;
    let mut newest = connection.prepare_cached(
        "SELECT case_id, at FROM summary_bands WHERE band_key = ?1 AND at >= ?2 ORDER BY at DESC, case_id DESC
         LIMIT ?3",
    )?;
    // Per candidate: the bands it shares, and when it was requested.
    let mut shared: HashMap<String, (usize, i64)> = HashMap::new();
    for key in campaign::band_keys(signature) {
        let rows = newest.query_map(params![key as i64, since, PHRASING_BAND_RECENT_MAX as i64], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (case_id, requested) = row?;
            shared.entry(case_id).or_insert((0, requested)).0 += 1;
        }
    }
    let mut candidates: Vec<(String, (usize, i64))> = shared.into_iter().collect();
    candidates.sort_unstable_by(|(a, (a_bands, a_at)), (b, (b_bands, b_at))| {
        b_bands.cmp(a_bands).then(a_at.cmp(b_at)).then_with(|| a.cmp(b))
    });
    candidates.truncate(PHRASING_CANDIDATES_MAX);
    let mut read = connection.prepare_cached("SELECT signature, cluster FROM summary_signatures WHERE case_id = ?1")?;
    for (case_id, _) in candidates {
        let found: Option<(Vec<u8>, String)> =
            read.query_row([&case_id], |row| Ok((row.get(0)?, row.get(1)?))).optional()?;
        let Some((bytes, cluster)) = found else { continue };
        let Some(other) = campaign::signature_from_bytes(&bytes) else { continue };
        if campaign::similarity(&other, signature) >= PHRASING_SIMILARITY_MIN {
            return Ok(Some(cluster));
        }
    }
    Ok(None)
}

/// The hits of a new request: one per indicator, and its summary's signature and group.
pub(super) fn request(
    transaction: &Transaction,
    sequence: u64,
    case_id: &CaseId,
    event: &Event,
) -> Result<(), ProjectionError> {
    let EventBody::RecoveryRequested { account_id, action, summary, signals, snapshot, .. } = &event.body else {
        return Ok(());
    };
    let account = account_id.as_str();
    for indicator in campaign::request_indicators(action, signals, snapshot.is_high_value()) {
        hit(transaction, &indicator, case_id, account, event.at, sequence)?;
    }
    if let Some(signature) = campaign::summary_signature(summary.as_untrusted_str()) {
        let cluster = remember_summary(transaction, case_id, event.at, &signature)?;
        let shown = campaign::Indicator {
            check: Check::Phrasing,
            key: cluster.clone(),
            shown: format!("summaries like case {cluster}'s"),
        };
        hit(transaction, &shown, case_id, account, event.at, sequence)?;
    }
    Ok(())
}

/// Places a new summary in its group (its own when it is like no other of the day) and keeps its signature and bands
/// for the summaries after it; returns the group.
fn remember_summary(
    connection: &Connection,
    case_id: &CaseId,
    at: UnixMs,
    signature: &Signature,
) -> rusqlite::Result<String> {
    let cluster = phrasing_cluster(connection, signature, at)?.unwrap_or_else(|| case_id.as_str().to_string());
    exec(
        connection,
        "INSERT OR IGNORE INTO summary_signatures (case_id, at, signature, cluster) VALUES (?1, ?2, ?3, ?4)",
        params![case_id.as_str(), at.0 as i64, campaign::signature_bytes(signature), cluster],
    )?;
    for key in campaign::band_keys(signature) {
        exec(
            connection,
            "INSERT OR IGNORE INTO summary_bands (band_key, case_id, at) VALUES (?1, ?2, ?3)",
            params![key as i64, case_id.as_str(), at.0 as i64],
        )?;
    }
    Ok(cluster)
}

/// A wrong code on `account_id`'s case.
pub(super) fn proof_failure(
    transaction: &Transaction,
    sequence: u64,
    case_id: &CaseId,
    account_id: &str,
    at: UnixMs,
) -> Result<(), ProjectionError> {
    hit(
        transaction,
        &plain(Check::ProofFailures, campaign::PROOF_FAILURES_INDICATOR),
        case_id,
        account_id,
        at,
        sequence,
    )?;
    Ok(())
}

/// Removes what no check looks at any more: older than `KEEP_MS` before the newest hit. The newest hit only grows, so
/// the rows left after the last batch are the same whatever the batches were (a rebuild agrees with the live rows).
pub(super) fn prune(transaction: &Transaction) -> Result<(), ProjectionError> {
    let newest: Option<i64> =
        transaction.prepare_cached("SELECT MAX(at) FROM campaign_hits")?.query_row([], |row| row.get(0))?;
    let Some(newest) = newest else { return Ok(()) };
    let horizon = newest.saturating_sub(KEEP_MS as i64);
    for table in ["campaign_hits", "summary_signatures", "summary_bands"] {
        exec(transaction, &format!("DELETE FROM {table} WHERE at < ?1"), [horizon])?;
    }
    Ok(())
}

/// An event of the alerts stream.
pub(super) fn alert_event(transaction: &Transaction, event: &AlertEvent) -> Result<(), ProjectionError> {
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
            exec(
                transaction,
                "INSERT INTO alerts (alert_id, check_name, indicator, accounts_min, window_ms, accounts, cases,
                                     first_at, last_at, raised_at, shown)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    alert_id,
                    check.name(),
                    indicator,
                    threshold.accounts_min,
                    threshold.window_ms as i64,
                    accounts,
                    cases.len() as i64,
                    first_at.0 as i64,
                    last_at.0 as i64,
                    event.at.0 as i64,
                    shown
                ],
            )?;
            alert_cases(transaction, alert_id, cases)?;
        }
        AlertEventBody::AlertCasesAdded { alert_id, accounts, cases, last_at } => {
            exec(
                transaction,
                "UPDATE alerts SET accounts = ?2, cases = cases + ?3, last_at = MAX(last_at, ?4) WHERE alert_id = ?1",
                params![alert_id, accounts, cases.len() as i64, last_at.0 as i64],
            )?;
            alert_cases(transaction, alert_id, cases)?;
        }
        AlertEventBody::AlertAcknowledged { alert_id, reason, benign } => {
            exec(
                transaction,
                "UPDATE alerts SET acknowledged_by = ?2, acknowledged_at = ?3, acknowledged_reason = ?4, benign = ?5
                 WHERE alert_id = ?1",
                params![alert_id, event.actor.to_string(), event.at.0 as i64, reason.as_untrusted_str(), benign],
            )?;
        }
    }
    Ok(())
}

fn alert_cases(transaction: &Transaction, alert_id: &str, cases: &[String]) -> rusqlite::Result<()> {
    for case_id in cases {
        exec(
            transaction,
            "INSERT OR IGNORE INTO alert_cases (alert_id, case_id) VALUES (?1, ?2)",
            params![alert_id, case_id],
        )?;
    }
    Ok(())
}

/// One alert as the projection holds it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AlertRow {
    pub alert_id: String,
    pub check: String,
    pub what: String,
    pub indicator: String,
    /// The indicator as the campaign's first request wrote it.
    pub shown: String,
    pub accounts_min: u32,
    pub window_ms: u64,
    pub accounts: u32,
    pub cases: u32,
    pub first_at: u64,
    pub last_at: u64,
    pub raised_at: u64,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<u64>,
    pub acknowledged_reason: Option<String>,
    pub benign: bool,
    /// Whether it still covers now: a matching request within its window of the last one.
    pub active: bool,
    /// The bulk rollback that would undo what the campaign got applied, where one indicator selects it.
    pub rollback: Option<String>,
}

const ALERT_COLUMNS: &str = "alert_id, check_name, indicator, accounts_min, window_ms, accounts, cases, first_at, \
                             last_at, raised_at, acknowledged_by, acknowledged_at, acknowledged_reason, benign, shown";

fn alert_row(row: &rusqlite::Row<'_>, now: UnixMs) -> rusqlite::Result<AlertRow> {
    let check: String = row.get(1)?;
    let parsed = Check::parse(&check);
    let (window_ms, last_at): (i64, i64) = (row.get(4)?, row.get(8)?);
    let (first_at, indicator, shown): (i64, String, String) = (row.get(7)?, row.get(2)?, row.get(14)?);
    let rollback = parsed.and_then(|check| {
        let alert = campaign::Alert {
            alert_id: String::new(),
            check,
            indicator: indicator.clone(),
            shown: shown.clone(),
            threshold: campaign::Threshold { accounts_min: 0, window_ms: window_ms as u64 },
            accounts: 0,
            cases: Vec::new(),
            first_at: UnixMs(first_at as u64),
            last_at: UnixMs(last_at as u64),
            raised_at: UnixMs(0),
            acknowledged: None,
        };
        alert.rollback_suggestion(now)
    });
    Ok(AlertRow {
        alert_id: row.get(0)?,
        what: parsed.map_or("", Check::describe).to_string(),
        check,
        indicator,
        shown,
        accounts_min: row.get(3)?,
        window_ms: window_ms as u64,
        accounts: row.get(5)?,
        cases: row.get(6)?,
        first_at: first_at as u64,
        last_at: last_at as u64,
        raised_at: row.get::<_, i64>(9)? as u64,
        acknowledged_by: row.get(10)?,
        acknowledged_at: row.get::<_, Option<i64>>(11)?.map(|at| at as u64),
        acknowledged_reason: row.get(12)?,
        benign: row.get(13)?,
        active: now.0 < (last_at + window_ms) as u64,
        rollback,
    })
}

impl Projection {
    /// The indicators that got a hit after log position `after`, and the last position seen: what
    /// `reconcile_alerts` looks at next.
    pub fn campaign_indicators_after(&self, after: u64) -> Result<(Vec<(Check, String)>, u64), ProjectionError> {
        let connection = self.read();
        let mut statement = connection.prepare_cached(
            "SELECT check_name, indicator, MAX(log_sequence) FROM campaign_hits WHERE log_sequence > ?1
             GROUP BY check_name, indicator ORDER BY check_name, indicator",
        )?;
        let rows = statement.query_map([after as i64], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?))
        })?;
        let mut indicators = Vec::new();
        let mut last = after;
        for row in rows {
            let (check, indicator, sequence) = row?;
            last = last.max(sequence as u64);
            if let Some(check) = Check::parse(&check) {
                indicators.push((check, indicator));
            }
        }
        Ok((indicators, last))
    }

    /// Every hit of one indicator the projection keeps, oldest first.
    pub fn campaign_hits(&self, check: Check, indicator: &str) -> Result<Vec<Hit>, ProjectionError> {
        let connection = self.read();
        let mut statement = connection.prepare_cached(
            "SELECT account_id, case_id, at, shown FROM campaign_hits WHERE check_name = ?1 AND indicator = ?2
             ORDER BY at, log_sequence, case_id",
        )?;
        let rows = statement.query_map(params![check.name(), indicator], |row| {
            Ok(Hit {
                account_id: row.get(0)?,
                case_id: row.get(1)?,
                at: UnixMs(row.get::<_, i64>(2)? as u64),
                shown: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The checks of the alerts open at `now` (active, not acknowledged as benign) that a new request showing
    /// `indicators` (and, for its summary, `signature`) matches: the policy's `open_alerts` fact.
    pub fn open_alerts_matching(
        &self,
        indicators: &[campaign::Indicator],
        signature: Option<&Signature>,
        now: UnixMs,
    ) -> Result<Vec<String>, ProjectionError> {
        let connection = self.read();
        let mut wanted: Vec<(Check, String)> =
            indicators.iter().map(|indicator| (indicator.check, indicator.key.clone())).collect();
        if let Some(signature) = signature
            && let Some(cluster) = phrasing_cluster(&connection, signature, now)?
        {
            wanted.push((Check::Phrasing, cluster));
        }
        let mut statement = connection.prepare_cached(
            "SELECT 1 FROM alerts WHERE check_name = ?1 AND indicator = ?2 AND benign = 0 AND last_at + window_ms > ?3
             LIMIT 1",
        )?;
        let mut open = Vec::new();
        for (check, indicator) in wanted {
            if statement.exists(params![check.name(), indicator, now.0 as i64])? {
                open.push(check.name().to_string());
            }
        }
        open.sort_unstable();
        open.dedup();
        Ok(open)
    }

    /// Alerts, newest first: the active ones only unless `all`; at most `limit`.
    pub fn alerts(&self, all: bool, now: UnixMs, limit: usize) -> Result<Vec<AlertRow>, ProjectionError> {
        let connection = self.read();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE ?1 OR last_at + window_ms > ?2
             ORDER BY raised_at DESC, alert_id LIMIT ?3"
        ))?;
        let rows = statement.query_map(params![all, now.0 as i64, limit as i64], |row| alert_row(row, now))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One alert and its first `limit` cases (oldest first), if there is one by that id.
    pub fn alert(
        &self,
        alert_id: &str,
        now: UnixMs,
        limit: usize,
    ) -> Result<Option<(AlertRow, Vec<String>)>, ProjectionError> {
        let connection = self.read();
        let found = connection
            .prepare_cached(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE alert_id = ?1"))?
            .query_row([alert_id], |row| alert_row(row, now))
            .optional()?;
        let Some(alert) = found else { return Ok(None) };
        let mut statement = connection.prepare_cached(
            "SELECT alert_cases.case_id FROM alert_cases LEFT JOIN cases ON cases.case_id = alert_cases.case_id
             WHERE alert_id = ?1 ORDER BY cases.requested_at, alert_cases.case_id LIMIT ?2",
        )?;
        let cases =
            statement.query_map(params![alert_id, limit as i64], |row| row.get(0))?.collect::<Result<_, _>>()?;
        Ok(Some((alert, cases)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::CaseId;
    use rusqlite::Transaction;
    use std::collections::BTreeSet;

    const START: UnixMs = UnixMs(1_780_000_000_000);
    const TEMPLATE: &str =
        "Customer says they lost their phone on a train and cannot receive the code, wants a password reset";

    fn projection_connection() -> (tempfile::TempDir, Connection) {
        let directory = tempfile::tempdir().unwrap();
        let connection =
            crate::sqlite::open(&directory.path().join("projection.db"), super::super::MIGRATIONS).unwrap();
        (directory, connection)
    }

    fn signature(text: &str) -> Signature {
        campaign::summary_signature(text).expect("long enough for a signature")
    }

    /// Remembers `count` copies of `text`, one a second from `from`, as cases `<prefix>-0000`...; returns the groups.
    fn remember_copies(transaction: &Transaction, prefix: &str, text: &str, from: UnixMs, count: usize) -> Vec<String> {
        let signature = signature(text);
        (0..count)
            .map(|index| {
                let case_id = CaseId::new(format!("{prefix}-{index:04}"));
                remember_summary(transaction, &case_id, UnixMs(from.0 + 1_000 * index as u64), &signature).unwrap()
            })
            .collect()
    }

    /// The steps SQLite runs to place one more copy of `TEMPLATE` in its group, after `earlier` copies in the day.
    fn steps_to_place_a_copy_after(earlier: usize) -> u64 {
        let (_directory, mut connection) = projection_connection();
        let transaction = connection.transaction().unwrap();
        let groups = remember_copies(&transaction, "case", TEMPLATE, START, earlier);
        assert!(groups.iter().all(|group| group == "case-0000"), "the copies formed more than one group");
        super::super::vm_steps::start(&transaction);
        let at = UnixMs(START.0 + 1_000 * earlier as u64);
        let group = phrasing_cluster(&transaction, &signature(TEMPLATE), at).unwrap();
        assert_eq!(group.as_deref(), Some("case-0000"));
        super::super::vm_steps::stop(&transaction)
    }

    // Proves the work of placing a summary does not grow with the day: with every case of the day sharing its bands
    // (one template, or a campaign of copies), the thousandth copy costs SQLite what the hundredth did. Reading every
    // sharer made each request cost as much as the day had cases (issue 21: a third of `airlock simulate`'s time).
    #[test]
    fn placing_a_summary_costs_the_same_however_many_share_its_bands() {
        let (few, many) = (steps_to_place_a_copy_after(100), steps_to_place_a_copy_after(1_000));
        assert!(few > 0, "no step was counted");
        assert!(many <= few + few / 10, "100 earlier copies: {few} steps; 1,000: {many} steps");
    }

    // Proves copies find their group however many there are, a rewording joins it too, and another text begins its
    // own; summaries older than the window are not looked at.
    #[test]
    fn copies_join_the_first_ones_group_and_other_texts_their_own() {
        let (_directory, mut connection) = projection_connection();
        let transaction = connection.transaction().unwrap();
        let groups = remember_copies(&transaction, "case", TEMPLATE, START, 200);
        assert!(groups.iter().all(|group| group == "case-0000"), "{:?}", groups.iter().collect::<BTreeSet<_>>());
        let later = UnixMs(START.0 + 1_000_000);
        let reworded =
            "Customer says they lost their phone on a bus and cannot receive the code, wants a password reset";
        let similarity = campaign::similarity(&signature(reworded), &signature(TEMPLATE));
        assert!(similarity >= PHRASING_SIMILARITY_MIN, "not near-identical: {similarity}");
        let placed = remember_summary(&transaction, &CaseId::new("reworded"), later, &signature(reworded)).unwrap();
        assert_eq!(placed, "case-0000");
        let other = "Owner writes that the authenticator app was removed when the laptop was reinstalled last week";
        let placed = remember_summary(&transaction, &CaseId::new("other"), later, &signature(other)).unwrap();
        assert_eq!(placed, "other");
        let next_day = UnixMs(later.0 + CAMPAIGN_WINDOW_MS_MAX + 1_000);
        assert_eq!(phrasing_cluster(&transaction, &signature(TEMPLATE), next_day).unwrap(), None);
    }

    // Proves a flood of decoys sharing some bands with everything, newer than a copy's original, does not hide the
    // original: they fill those bands' newest rows, and the original is still read through the others. Up to the
    // documented bound, even decoys sharing every band do not hide it.
    #[test]
    fn decoys_newer_than_the_original_do_not_hide_it() {
        let (_directory, mut connection) = projection_connection();
        let transaction = connection.transaction().unwrap();
        remember_copies(&transaction, "original", TEMPLATE, START, 1);
        let keys = campaign::band_keys(&signature(TEMPLATE));
        let unlike = signature("Owner writes that the authenticator app was removed when the laptop was reinstalled");
        let decoy = |name: &str, at: u64, bands: &[u64]| {
            exec(
                &transaction,
                "INSERT INTO summary_signatures (case_id, at, signature, cluster) VALUES (?1, ?2, ?3, ?1)",
                params![name, at as i64, campaign::signature_bytes(&unlike)],
            )
            .unwrap();
            for key in bands {
                exec(
                    &transaction,
                    "INSERT INTO summary_bands (band_key, case_id, at) VALUES (?1, ?2, ?3)",
                    params![*key as i64, name, at as i64],
                )
                .unwrap();
            }
        };
        for index in 0..500 {
            decoy(&format!("half-{index:03}"), START.0 + 1_000 + index, &keys[..8]);
        }
        for index in 0..PHRASING_BAND_RECENT_MAX as u64 - 1 {
            decoy(&format!("whole-{index:03}"), START.0 + 2_000 + index, &keys);
        }
        let at = UnixMs(START.0 + 10_000);
        assert_eq!(phrasing_cluster(&transaction, &signature(TEMPLATE), at).unwrap().as_deref(), Some("original-0000"));
    }
}
