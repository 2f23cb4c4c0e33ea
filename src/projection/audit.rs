//! The audit check (THREATS 14): the projection is derived, so anything in it that a rebuild from the log does not
//! reproduce was altered, added or removed by hand; and the receipts' hash chain must hold on its own.

use crate::projection::ProjectionError;
use crate::projection::receipts::{ChainBreak, verify_chain};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Every table of the projection, compared row by row.
const TABLES: [&str; 13] = [
    "cases",
    "timeline",
    "review_queue",
    "receipts",
    "proof_failures",
    "notices_owed",
    "control",
    "checkpoint",
    "campaign_hits",
    "summary_signatures",
    "summary_bands",
    "alerts",
    "alert_cases",
];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowDifference {
    pub table: String,
    /// The row's key: its primary key, else its unique index (or the whole row for a table with neither).
    pub key: String,
    /// `altered`, `added` (in the live projection, not in the rebuild) or `removed` (the other way round).
    pub kind: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    pub differences: Vec<RowDifference>,
    pub chain_breaks: Vec<ChainBreak>,
}

impl AuditReport {
    pub fn clean(&self) -> bool {
        self.differences.is_empty() && self.chain_breaks.is_empty()
    }
}

/// A value as a person reads it in a report: text as text (quoted), numbers as numbers, blobs as hex.
fn show(value: rusqlite::Result<rusqlite::types::ValueRef<'_>>) -> String {
    use rusqlite::types::ValueRef;
    match value {
        Ok(ValueRef::Null) => "NULL".to_string(),
        Ok(ValueRef::Integer(number)) => number.to_string(),
        Ok(ValueRef::Real(number)) => number.to_string(),
        Ok(ValueRef::Text(bytes)) => format!("{:?}", String::from_utf8_lossy(bytes)),
        Ok(ValueRef::Blob(bytes)) => format!("x'{}'", hex::encode(bytes)),
        Err(error) => format!("<unreadable: {error}>"),
    }
}

/// key -> rendered row, for one table.
fn rows(connection: &Connection, table: &str) -> Result<BTreeMap<String, String>, ProjectionError> {
    let mut info = connection.prepare(&format!("PRAGMA table_info({table})"))?;
    let columns: Vec<(String, i64)> =
        info.query_map([], |row| Ok((row.get(1)?, row.get(5)?)))?.collect::<Result<_, _>>()?;
    let mut keys: Vec<(i64, usize)> =
        columns.iter().enumerate().filter(|(_, (_, pk))| *pk > 0).map(|(index, (_, pk))| (*pk, index)).collect();
    keys.sort_unstable();
    if keys.is_empty() {
        keys = unique_key(connection, table, &columns)?;
    }
    let mut statement = connection.prepare(&format!("SELECT * FROM {table}"))?;
    let width = statement.column_count();
    let mut query = statement.query([])?;
    let mut found = BTreeMap::new();
    while let Some(row) = query.next()? {
        let values: Vec<String> = (0..width).map(|index| show(row.get_ref(index))).collect::<Vec<_>>();
        let rendered = values.join(" | ");
        let key = if keys.is_empty() {
            rendered.clone()
        } else {
            keys.iter().map(|(_, index)| values[*index].clone()).collect::<Vec<_>>().join(" | ")
        };
        // Rows of a key-less table may repeat; count them so that a removed duplicate is noticed.
        let mut unique = key.clone();
        let mut copy = 1;
        while found.contains_key(&unique) {
            copy += 1;
            unique = format!("{key} #{copy}");
        }
        found.insert(unique, rendered);
    }
    Ok(found)
}

/// The columns of the table's first unique index, as (position in the index, column index), for a table whose rows
/// are keyed that way rather than by a primary key.
fn unique_key(
    connection: &Connection,
    table: &str,
    columns: &[(String, i64)],
) -> Result<Vec<(i64, usize)>, ProjectionError> {
    let mut list = connection.prepare(&format!("PRAGMA index_list({table})"))?;
    let unique: Vec<String> = list
        .query_map([], |row| Ok((row.get::<_, String>(1)?, row.get::<_, bool>(2)?)))?
        .filter_map(|row| row.map(|(name, unique)| unique.then_some(name)).transpose())
        .collect::<Result<_, _>>()?;
    let Some(index) = unique.into_iter().min() else { return Ok(Vec::new()) };
    let mut info = connection.prepare(&format!("PRAGMA index_info(\"{index}\")"))?;
    let named: Vec<(i64, String)> =
        info.query_map([], |row| Ok((row.get(0)?, row.get(2)?)))?.collect::<Result<_, _>>()?;
    Ok(named
        .into_iter()
        .filter_map(|(rank, name)| columns.iter().position(|(column, _)| *column == name).map(|index| (rank, index)))
        .collect())
}

/// Compares the live projection at `live` with a rebuild at `rebuilt`, table by table, and checks the chain.
pub fn compare(live: &Path, rebuilt: &Path) -> Result<AuditReport, ProjectionError> {
    // Read-only: the audit must never change what it audits.
    let read_only = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let live_connection = Connection::open_with_flags(live, read_only)?;
    let rebuilt_connection = Connection::open_with_flags(rebuilt, read_only)?;
    let mut report = AuditReport::default();
    for table in TABLES {
        let (expected, found) = (rows(&rebuilt_connection, table)?, rows(&live_connection, table)?);
        for (key, row) in &found {
            let kind = match expected.get(key) {
                None => "added",
                Some(expected_row) if expected_row != row => "altered",
                Some(_) => continue,
            };
            report.differences.push(RowDifference { table: table.into(), key: key.clone(), kind: kind.into() });
        }
        for key in expected.keys().filter(|key| !found.contains_key(*key)) {
            report.differences.push(RowDifference { table: table.into(), key: key.clone(), kind: "removed".into() });
        }
    }
    let mut statement = live_connection
        .prepare("SELECT receipt_sequence, body, previous_hash, hash FROM receipts ORDER BY receipt_sequence")?;
    let receipts: Vec<(u64, String, String, String)> = statement
        .query_map([], |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?, row.get(2)?, row.get(3)?)))?
        .collect::<Result<_, _>>()?;
    report.chain_breaks = verify_chain(&receipts);
    Ok(report)
}
