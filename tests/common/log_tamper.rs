//! Rewriting the embedded log in place, as an attacker with write access to log.db would (the append-only trigger is
//! dropped first), or as an older airlock would have written it: what the replay and history tests must catch.

use airlock::core::event::EventBody;
use airlock::log::envelope::{Decoded, Envelope, decode, encode_case_event};
use airlock::log::{decode_commit, encode_commit};
use std::path::Path;

/// Rewrites the first log commit of `case_id` holding an event of `event_type`, each such envelope changed with
/// `change`.
pub fn rewrite_envelopes(data: &Path, case_id: &str, event_type: &str, change: impl Fn(&mut Envelope)) {
    let connection = rusqlite::Connection::open(data.join("log.db")).unwrap();
    connection.execute_batch("DROP TRIGGER IF EXISTS commits_no_update").unwrap();
    let mut statement =
        connection.prepare("SELECT sequence, envelopes FROM commits WHERE stream = ?1 ORDER BY sequence").unwrap();
    let commits: Vec<(i64, Vec<u8>)> = statement
        .query_map([format!("case.{case_id}")], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (sequence, blob) in commits {
        let mut envelopes: Vec<Envelope> =
            decode_commit(&blob).unwrap().iter().map(|bytes| postcard::from_bytes(bytes).unwrap()).collect();
        if !envelopes.iter().any(|envelope| envelope.event_type == event_type) {
            continue;
        }
        envelopes.iter_mut().filter(|envelope| envelope.event_type == event_type).for_each(&change);
        let bytes: Vec<Vec<u8>> = envelopes.iter().map(|envelope| postcard::to_stdvec(envelope).unwrap()).collect();
        let params = rusqlite::params![encode_commit(&bytes), sequence];
        connection.execute("UPDATE commits SET envelopes = ?1 WHERE sequence = ?2", params).unwrap();
        return;
    }
    panic!("no {event_type} in case {case_id}");
}

/// Changes the body of the first `event_type` event of `case_id`, stored again at today's version.
pub fn rewrite_event(data: &Path, case_id: &str, event_type: &str, change: impl Fn(&mut EventBody)) {
    rewrite_envelopes(data, case_id, event_type, |envelope| {
        let Ok(Decoded::Case { case_id, stream_version, mut event }) =
            decode(&postcard::to_stdvec(&*envelope).unwrap())
        else {
            panic!("a case event")
        };
        change(&mut event.body);
        *envelope = postcard::from_bytes(&encode_case_event(&case_id, stream_version, &event)).unwrap();
    });
}
