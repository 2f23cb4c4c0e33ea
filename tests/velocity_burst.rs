//! Velocity limits hold exactly under a burst (issue 4 item 4, THREATS 6): 50 requests for one account, published at
//! once to the intake stream and decided by two `airlock serve` processes racing on one NATS server. Each request is
//! decided on a count no other request was decided on, so the recorded counts are exactly 0..50 and no more requests
//! pass a threshold than the policy allows. Driven through NATS intake; the decisions are read read-only from each
//! process's projection, because no command prints a case's recorded policy facts yet.

mod common;

use async_nats::jetstream;
use common::serve::{ServeProcess, airlock};
use common::{publish, scratch, wait_for};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const REQUESTS: usize = 50;

/// From policies/default.cedar: `velocity.account.review` at 4 earlier requests, `velocity.account.deny` at 10.
const REVIEW_FROM: u64 = 4;
const DENY_FROM: u64 = 10;

fn import(data: &Path) {
    common::import_accounts(
        data,
        json!([{
            "account_id": "vera",
            "destinations": [
                { "id": "vera-mail", "kind": "email", "address": "vera@example.com", "trusted_since": "2024-01-01T00:00:00Z" }
            ]
        }]),
    );
}

/// Every case's recorded intake decision in a projection: (account count it was decided on, outcome).
fn decisions(data: &Path) -> Vec<(u64, String)> {
    let connection =
        rusqlite::Connection::open_with_flags(data.join("projection.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut statement = connection.prepare("SELECT decision FROM cases WHERE account_id = 'vera'").unwrap();
    let rows: Vec<String> = statement.query_map([], |row| row.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
    rows.iter()
        .map(|text| {
            let decision: Value = serde_json::from_str(text).unwrap();
            let count = decision["facts"]["velocity"]["account_requests_24h"].as_u64().expect("a recorded count");
            (count, decision["outcome"].as_str().unwrap().to_string())
        })
        .collect()
}

// Proves the account's velocity count is exact under a burst across two processes: 50 requests, each decided on a
// distinct count 0..49 (a projection-based count would decide many of them on the same stale number), so exactly
// REVIEW_FROM requests are let through without people and every request from the DENY_FROM-th on is denied.
#[test]
fn fifty_parallel_requests_for_one_account_cannot_exceed_the_limit() {
    let scratch = scratch();
    let nats = airlock::nats::server::NatsServer::start(
        &scratch.path().join("nats"),
        &airlock::nats::server::Options::default(),
    )
    .unwrap();
    let data: Vec<PathBuf> = (0..2).map(|index| scratch.path().join(format!("data-{index}"))).collect();
    for dir in &data {
        import(dir);
    }
    let _serves: Vec<ServeProcess> = (0..2)
        .map(|index| {
            let log = scratch.path().join(format!("serve-{index}.log"));
            ServeProcess::start(&nats.url(), &data[index], &log, &[], &[])
        })
        .collect();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = airlock::nats::connect(&nats.url(), "test").await.unwrap();
        let context = jetstream::new(client);
        let sends = (0..REQUESTS).map(|index| {
            let context = context.clone();
            async move {
                let body = json!({
                    "version": 1, "command_id": format!("burst-{index}"), "account_id": "vera",
                    "action": { "type": "reset_password" }, "summary": "please hurry", "signals": {}
                });
                let subject = "airlock.intake.intake.desk.request_recovery";
                publish(&context, subject, &format!("burst-{index}"), body.to_string().into_bytes()).await;
            }
        });
        futures::future::join_all(sends).await;
    });

    // Each process projects every event into its own projection.
    for dir in &data {
        wait_for(|| decisions(dir).len() == REQUESTS, "both projections to hold every request");
    }
    let mut recorded = decisions(&data[0]);
    assert_eq!(
        recorded.iter().map(|(count, _)| *count).collect::<std::collections::BTreeSet<_>>(),
        decisions(&data[1]).iter().map(|(count, _)| *count).collect(),
        "both projections show the same decisions"
    );
    recorded.sort();
    let counts: Vec<u64> = recorded.iter().map(|(count, _)| *count).collect();
    assert_eq!(counts, (0..REQUESTS as u64).collect::<Vec<_>>(), "every request decided on its own count");
    for (count, outcome) in &recorded {
        let expected = match *count {
            count if count >= DENY_FROM => "Deny",
            count if count >= REVIEW_FROM => "Review",
            _ => "Auto",
        };
        assert_eq!(outcome, expected, "the request decided on {count} earlier requests");
    }
    let automated = recorded.iter().filter(|(_, outcome)| outcome == "Auto").count();
    assert_eq!(automated as u64, REVIEW_FROM, "no more requests pass without people than the limit allows");
    // Each projection equals a rebuild from the log.
    for dir in &data {
        let audit = airlock(dir, &["audit", "verify", "--nats", &nats.url()]);
        assert!(audit.status.success(), "{}", String::from_utf8_lossy(&audit.stdout));
    }
}
