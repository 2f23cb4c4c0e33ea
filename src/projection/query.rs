//! Reads from the projection: what the CLI shows, and the account-wide facts the service hands to `decide`.

use crate::core::action::RecoveryAction;
use crate::core::ids::{AccountId, CaseId, UnixMs};
use crate::core::limits::PROOF_ATTEMPT_WINDOW_MS;
use crate::core::state::Status;
use crate::core::verification::AccountVerificationFacts;
use crate::projection::receipts::{ChainBreak, Receipt, verify_chain};
use crate::projection::{Projection, ProjectionError};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

/// A case as the projection holds it, typed: what decides something (its state, its action) is a value here, and
/// becomes text only where it is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseRow {
    pub case_id: String,
    pub account_id: String,
    /// The action asked for.
    pub requested: RecoveryAction,
    /// The action as people read it (`RecoveryAction::describe`, addresses masked).
    pub action: String,
    pub action_hash: String,
    pub status: Status,
    pub requester: String,
    /// Untrusted text, verbatim; escape before printing.
    pub summary: String,
    pub signals: String,
    pub new_destination: Option<String>,
    pub high_value: bool,
    pub requested_at: UnixMs,
    pub updated_at: UnixMs,
    pub deadline: Option<UnixMs>,
    pub cooling_off_ends_at: Option<UnixMs>,
    pub decision: Option<String>,
    pub approvers: String,
    pub notified: String,
    pub changes: String,
    pub events: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineRow {
    pub case_sequence: u64,
    pub at: UnixMs,
    pub actor: String,
    pub event_type: String,
    pub status_after: Status,
    pub detail: String,
}

/// A stored state name read back as the state; a name no release wrote is a corrupt projection, never a guess.
fn stored_status(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Status> {
    let name: String = row.get(index)?;
    Status::from_name(&name).ok_or_else(|| corrupt_column(index, format!("unknown case state {name:?}")))
}

/// A stored action (its JSON) read back as the action.
fn stored_action(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<RecoveryAction> {
    let json: String = row.get(index)?;
    serde_json::from_str(&json).map_err(|error| corrupt_column(index, format!("unreadable action: {error}")))
}

fn corrupt_column(index: usize, reason: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, reason.into())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReviewRow {
    pub case_id: String,
    pub account_id: String,
    pub reason: String,
    pub entered_at: UnixMs,
    pub reviewers_required: u32,
    pub approvals: u32,
}

/// What `airlock case list` looks for; `None` matches anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CaseFilter {
    pub status: Option<String>,
    pub account_id: Option<String>,
    /// Requested at or after.
    pub since: Option<UnixMs>,
    /// The action's name (`RecoveryAction::name`).
    pub action: Option<String>,
    /// The most cases listed (50 when a query leaves it out).
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    50
}

/// A case as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRow {
    pub case_id: String,
    pub account_id: String,
    pub status: Status,
    pub action: RecoveryAction,
    pub requester: String,
    pub requested_at: UnixMs,
    pub updated_at: UnixMs,
}

/// What a bulk rollback matches on (SPEC principle 9: cleaning up an incident).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Indicator {
    /// The domain of the destination a request named (for example the attacker's mail domain).
    DestinationDomain(String),
    /// The source network the front door saw.
    SourceNetwork(String),
}

impl Indicator {
    /// Reads `destination-domain=DOMAIN` or `source-network=NETWORK`, as `airlock rollback --match` takes it.
    pub fn parse(text: &str) -> Result<Indicator, String> {
        match text.split_once('=') {
            Some(("destination-domain", domain)) if !domain.is_empty() => {
                Ok(Indicator::DestinationDomain(domain.into()))
            }
            Some(("source-network", network)) if !network.is_empty() => Ok(Indicator::SourceNetwork(network.into())),
            _ => Err(format!(
                "--match {:?}: use destination-domain=DOMAIN or source-network=NETWORK",
                crate::core::text::for_terminal(text)
            )),
        }
    }
}

fn ms(value: i64) -> UnixMs {
    UnixMs(value as u64)
}

/// What one tick of the timers finds to do (`Projection::timer_work`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TimerWork {
    /// Cases whose deadline passed or whose cooling-off ended, oldest first.
    pub due: Vec<CaseId>,
    /// Cases executing, newest first.
    pub executing: Vec<CaseId>,
    /// Cases owing notices, longest owed first.
    pub owed: Vec<CaseId>,
}

fn case_ids(
    statement: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<CaseId>, ProjectionError> {
    let rows = statement.query_map(params, |row| row.get::<_, String>(0))?;
    Ok(rows.map(|row| row.map(CaseId::new)).collect::<Result<_, _>>()?)
}

/// Cases whose timer is due: a deadline passed, or a cooling-off ended.
fn due_cases(connection: &rusqlite::Connection, now: UnixMs) -> Result<Vec<CaseId>, ProjectionError> {
    let mut statement = connection.prepare_cached(
        "SELECT case_id FROM cases
         WHERE (status IN ('requested', 'in_review', 'cooling_off') AND deadline IS NOT NULL AND deadline <= ?1)
            OR (status = 'cooling_off' AND cooling_off_ends_at <= ?1)
         ORDER BY requested_at, case_id",
    )?;
    case_ids(&mut statement, [now.0 as i64])
}

fn notices_owed(
    connection: &rusqlite::Connection,
    oldest: UnixMs,
    newest: UnixMs,
) -> Result<Vec<CaseId>, ProjectionError> {
    let mut statement = connection.prepare_cached(
        "SELECT case_id FROM notices_owed WHERE owed_since BETWEEN ?1 AND ?2 ORDER BY owed_since, case_id",
    )?;
    case_ids(&mut statement, [oldest.0 as i64, newest.0 as i64])
}

/// The ids of the cases in `status`, newest first: a search of an index by status (the timers ask for the cases
/// executing on every tick, which must not cost a scan of every case there ever was).
fn case_ids_in(connection: &rusqlite::Connection, status: Status) -> Result<Vec<CaseId>, ProjectionError> {
    let mut statement =
        connection.prepare_cached("SELECT case_id FROM cases WHERE status = ?1 ORDER BY requested_at DESC, case_id")?;
    case_ids(&mut statement, [status.name()])
}

impl Projection {
    pub fn case(&self, case_id: &CaseId) -> Result<Option<CaseRow>, ProjectionError> {
        let row = self
            .lock()
            .prepare_cached(
                "SELECT case_id, account_id, action_description, action_hash, status, requester, summary, signals,
                        new_destination, high_value, requested_at, updated_at, deadline, cooling_off_ends_at, decision,
                        approvers, notified, changes, events, action
                 FROM cases WHERE case_id = ?1",
            )
            .and_then(|mut statement| {
                statement.query_row([case_id.as_str()], |row| {
                    Ok(CaseRow {
                        case_id: row.get(0)?,
                        account_id: row.get(1)?,
                        requested: stored_action(row, 19)?,
                        action: row.get(2)?,
                        action_hash: row.get(3)?,
                        status: stored_status(row, 4)?,
                        requester: row.get(5)?,
                        summary: row.get(6)?,
                        signals: row.get(7)?,
                        new_destination: row.get(8)?,
                        high_value: row.get(9)?,
                        requested_at: ms(row.get(10)?),
                        updated_at: ms(row.get(11)?),
                        deadline: row.get::<_, Option<i64>>(12)?.map(ms),
                        cooling_off_ends_at: row.get::<_, Option<i64>>(13)?.map(ms),
                        decision: row.get(14)?,
                        approvers: row.get(15)?,
                        notified: row.get(16)?,
                        changes: row.get(17)?,
                        events: row.get::<_, i64>(18)? as u64,
                    })
                })
            })
            .optional()?;
        Ok(row)
    }

    pub fn timeline(&self, case_id: &CaseId) -> Result<Vec<TimelineRow>, ProjectionError> {
        let connection = self.read();
        let mut statement = connection.prepare_cached(
            "SELECT case_sequence, at, actor, event_type, status_after, detail FROM timeline
             WHERE case_id = ?1 ORDER BY case_sequence",
        )?;
        let rows = statement.query_map([case_id.as_str()], |row| {
            Ok(TimelineRow {
                case_sequence: row.get::<_, i64>(0)? as u64,
                at: ms(row.get(1)?),
                actor: row.get(2)?,
                event_type: row.get(3)?,
                status_after: stored_status(row, 4)?,
                detail: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The review queue, oldest first.
    pub fn review_queue(&self) -> Result<Vec<ReviewRow>, ProjectionError> {
        self.review_queue_first(i64::MAX as usize)
    }

    /// The oldest `limit` cases of the review queue: a flood of requests must not make every reader read them all.
    pub fn review_queue_first(&self, limit: usize) -> Result<Vec<ReviewRow>, ProjectionError> {
        let connection = self.read();
        let mut statement = connection.prepare_cached(
            "SELECT case_id, account_id, reason, entered_at, reviewers_required, approvals FROM review_queue
             ORDER BY entered_at, case_id LIMIT ?1",
        )?;
        let rows = statement.query_map([limit.min(i64::MAX as usize) as i64], |row| {
            Ok(ReviewRow {
                case_id: row.get(0)?,
                account_id: row.get(1)?,
                reason: row.get(2)?,
                entered_at: ms(row.get(3)?),
                reviewers_required: row.get(4)?,
                approvals: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn receipt_rows(&self) -> Result<Vec<(u64, String, String, String)>, ProjectionError> {
        let connection = self.read();
        let mut statement = connection
            .prepare("SELECT receipt_sequence, body, previous_hash, hash FROM receipts ORDER BY receipt_sequence")?;
        let rows =
            statement.query_map([], |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?, row.get(2)?, row.get(3)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Receipts, oldest first, optionally of one case.
    pub fn receipts(&self, case_id: Option<&CaseId>) -> Result<Vec<Receipt>, ProjectionError> {
        let mut receipts = Vec::new();
        for (receipt_sequence, body, previous_hash, hash) in self.receipt_rows()? {
            let body: crate::projection::receipts::ReceiptBody = serde_json::from_str(&body)
                .map_err(|error| ProjectionError::Corrupt { sequence: receipt_sequence, reason: error.to_string() })?;
            if case_id.is_none_or(|wanted| wanted.as_str() == body.case_id) {
                receipts.push(Receipt { receipt_sequence, body, previous_hash, hash });
            }
        }
        Ok(receipts)
    }

    /// Every place the stored receipt chain does not hold.
    pub fn verify_receipts(&self) -> Result<Vec<ChainBreak>, ProjectionError> {
        Ok(verify_chain(&self.receipt_rows()?))
    }

    /// Wrong codes for the account inside the window, and whether another case holds an open code.
    pub fn account_facts(
        &self,
        account_id: &AccountId,
        except_case: &CaseId,
        now: UnixMs,
    ) -> Result<AccountVerificationFacts, ProjectionError> {
        let connection = self.read();
        let since = now.0.saturating_sub(PROOF_ATTEMPT_WINDOW_MS) as i64;
        let failed: u32 = connection
            .prepare_cached("SELECT COUNT(*) FROM proof_failures WHERE account_id = ?1 AND at > ?2")
            .and_then(|mut statement| statement.query_row(params![account_id.as_str(), since], |row| row.get(0)))?;
        let outstanding: u32 = connection
            .prepare_cached(
                "SELECT COUNT(*) FROM cases INDEXED BY cases_account_challenge
             WHERE account_id = ?1 AND challenge_expires_at > ?3 AND case_id != ?2 AND status = 'requested'",
            )
            .and_then(|mut statement| {
                statement.query_row(params![account_id.as_str(), except_case.as_str(), now.0 as i64], |row| row.get(0))
            })?;
        Ok(AccountVerificationFacts {
            failed_attempts_in_window: failed,
            outstanding_challenge_elsewhere: outstanding > 0,
        })
    }

    /// Cases that have owed their owner a notice since a moment between `oldest` and `newest`, longest owed first:
    /// the timers send those notices again (ADR 10).
    pub fn notices_owed(&self, oldest: UnixMs, newest: UnixMs) -> Result<Vec<CaseId>, ProjectionError> {
        notices_owed(&self.read(), oldest, newest)
    }

    /// What a tick of the timers has to do, read at one moment in one read transaction (one hop to the blocking pool
    /// and one read lock for the three, where a tick with nothing due used to take three): the cases due, the cases
    /// executing, and the cases owing notices since a moment between `owed_from` and `now`.
    pub fn timer_work(&self, now: UnixMs, owed_from: UnixMs) -> Result<TimerWork, ProjectionError> {
        let mut connection = self.read();
        let transaction = connection.transaction()?;
        let work = TimerWork {
            due: due_cases(&transaction, now)?,
            executing: case_ids_in(&transaction, Status::Executing)?,
            owed: notices_owed(&transaction, owed_from, now)?,
        };
        transaction.finish()?;
        Ok(work)
    }

    /// Executed cases matching a rollback indicator, executed at or after `since`, oldest first: the scope of a bulk
    /// rollback after an incident.
    pub fn executed_matching(
        &self,
        indicator: &Indicator,
        since: UnixMs,
    ) -> Result<Vec<(CaseId, String)>, ProjectionError> {
        let connection = self.read();
        let mut statement = connection.prepare_cached(
            "SELECT case_id, changes, new_destination, source_network FROM cases
             WHERE status = 'executed' AND executed_at >= ?1 ORDER BY executed_at, case_id",
        )?;
        let rows = statement.query_map(params![since.0 as i64], |row| {
            Ok((
                CaseId::new(row.get::<_, String>(0)?),
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, Option<String>>(3)?,
            ))
        })?;
        let mut matching = Vec::new();
        for row in rows {
            let (case_id, changes, destination, network) = row?;
            let matches = match indicator {
                // Every spelling of the domain and every subdomain of it (issue 15, item 10).
                Indicator::DestinationDomain(domain) => {
                    destination.is_some_and(|address| crate::core::address::within_domain(&address, domain))
                }
                // However the requests spelled it (case, spaces), as the velocity ledgers and the alerts count it.
                Indicator::SourceNetwork(wanted) => {
                    network.is_some_and(|network| network.trim().to_lowercase() == wanted.trim().to_lowercase())
                }
            };
            if matches {
                matching.push((case_id, changes));
            }
        }
        Ok(matching)
    }

    /// How many cases are in each state, by the state's name.
    pub fn count_by_status(&self) -> Result<Vec<(String, u64)>, ProjectionError> {
        let connection = self.read();
        let mut statement = connection.prepare_cached("SELECT status, count(*) FROM cases GROUP BY status")?;
        let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether the kill switch was on, as of the last applied log entry.
    pub fn halted(&self) -> Result<bool, ProjectionError> {
        Ok(self
            .read()
            .prepare_cached("SELECT halted FROM control WHERE id = 1")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))?)
    }

    /// Cases matching the filter, newest first, at most `filter.limit`; and whether more match.
    pub fn cases(&self, filter: &CaseFilter) -> Result<(Vec<ListRow>, bool), ProjectionError> {
        let connection = self.read();
        let mut statement = connection.prepare(
            "SELECT case_id, account_id, status, action, requester, requested_at, updated_at FROM cases
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR account_id = ?2) AND requested_at >= ?3
             ORDER BY requested_at DESC, case_id",
        )?;
        let since = filter.since.map_or(0, |since| since.0 as i64);
        let rows = statement.query_map(params![filter.status, filter.account_id, since], |row| {
            Ok(ListRow {
                case_id: row.get(0)?,
                account_id: row.get(1)?,
                status: stored_status(row, 2)?,
                action: stored_action(row, 3)?,
                requester: row.get(4)?,
                requested_at: ms(row.get(5)?),
                updated_at: ms(row.get(6)?),
            })
        })?;
        let mut found = Vec::new();
        for row in rows {
            let row = row?;
            // The action is stored as its JSON; its name is matched here rather than by parsing JSON in SQL.
            if filter.action.as_deref().is_some_and(|wanted| wanted != row.action.name()) {
                continue;
            }
            if found.len() == filter.limit {
                return Ok((found, true));
            }
            found.push(row);
        }
        Ok((found, false))
    }

    /// Since when the case has owed a notice not yet delivered (ADR 10), if it does.
    pub fn notices_owed_since(&self, case_id: &CaseId) -> Result<Option<UnixMs>, ProjectionError> {
        Ok(self
            .read()
            .prepare_cached("SELECT owed_since FROM notices_owed WHERE case_id = ?1")
            .and_then(|mut statement| statement.query_row([case_id.as_str()], |row| row.get::<_, i64>(0)).optional())?
            .map(ms))
    }

    /// How many cases are in each state.
    pub fn status_counts(&self) -> Result<std::collections::BTreeMap<String, u64>, ProjectionError> {
        let connection = self.read();
        let mut statement = connection.prepare("SELECT status, COUNT(*) FROM cases GROUP BY status")?;
        let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::limits::{DAY_MS, HOUR_MS};

    const NOW: UnixMs = UnixMs(1_780_000_000_000);

    /// A case row in `status`, requested an hour before `NOW`, with its deadline and the end of its cooling-off.
    fn put_case(projection: &Projection, case_id: &str, status: Status, deadline: Option<u64>, ends: Option<u64>) {
        projection
            .lock()
            .execute(
                "INSERT INTO cases (case_id, account_id, action, action_description, action_hash, status, requester,
                     summary, signals, high_value, destinations, requested_at, updated_at, deadline,
                     cooling_off_ends_at, events)
                 VALUES (?1, 'account', '\"ResetPassword\"', 'reset', 'hash', ?2, 'intake:desk', 'summary', '{}', 0,
                     '{}', ?3, ?3, ?4, ?5, 3)",
                params![
                    case_id,
                    status.name(),
                    (NOW.0 - HOUR_MS) as i64,
                    deadline.map(|at| at as i64),
                    ends.map(|at| at as i64)
                ],
            )
            .unwrap();
    }

    /// The SQLite steps of one tick's queries (the cases due, the cases executing, the cases owing notices), with
    /// `others` cases that ended long ago or are not due yet beside one case of each kind the timers look for.
    fn steps_of_a_tick_beside(others: usize) -> u64 {
        let directory = tempfile::tempdir().unwrap();
        let projection = Projection::open(&directory.path().join("projection.db")).unwrap();
        for index in 0..others {
            let name = format!("other-{index:05}");
            match index % 6 {
                0 => put_case(&projection, &name, Status::CoolingOff, Some(NOW.0 + DAY_MS), Some(NOW.0 + HOUR_MS)),
                1 => put_case(&projection, &name, Status::InReview, Some(NOW.0 + DAY_MS), None),
                ended => {
                    let status = [Status::Executed, Status::Denied, Status::Expired, Status::Cancelled][ended - 2];
                    put_case(&projection, &name, status, None, None);
                }
            }
        }
        put_case(&projection, "executing", Status::Executing, None, None);
        put_case(&projection, "cooled", Status::CoolingOff, Some(NOW.0 + DAY_MS), Some(NOW.0 - 1));
        put_case(&projection, "lapsed", Status::Requested, Some(NOW.0 - 1), None);
        put_case(&projection, "waiting", Status::Requested, Some(NOW.0 + 1), None);
        let owed = "INSERT INTO notices_owed (case_id, owed_since) VALUES ('cooled', ?1)";
        projection.lock().execute(owed, [(NOW.0 - HOUR_MS) as i64]).unwrap();

        crate::projection::vm_steps::start(&projection.read());
        let work = projection.timer_work(NOW, UnixMs(NOW.0 - DAY_MS)).unwrap();
        let steps = crate::projection::vm_steps::stop(&projection.read());
        assert_eq!(work.executing, [CaseId::new("executing")]);
        assert_eq!(work.due, [CaseId::new("cooled"), CaseId::new("lapsed")]);
        assert_eq!(work.owed, [CaseId::new("cooled")]);
        steps
    }

    // Proves a tick of the timers costs the same however many cases ended before it or are not due yet: its queries
    // search indexes for the cases that are due. The cases executing were found by reading every case there ever
    // was, and the cooling-offs that ended by reading every case cooling off, on every tick of every process (issue
    // 21: a tenth of the simulator's time).
    #[test]
    fn a_tick_costs_the_same_however_many_cases_ended_or_wait() {
        let (few, many) = (steps_of_a_tick_beside(120), steps_of_a_tick_beside(2_400));
        assert!(few > 0, "no step was counted");
        assert!(many <= few + few / 10, "beside 120 other cases: {few} steps; 2,400: {many} steps");
    }
}
