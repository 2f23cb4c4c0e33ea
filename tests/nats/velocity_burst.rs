//! Velocity limits hold exactly under a burst (issue 4 item 4, THREATS 6), along every dimension SPEC principle 10
//! names: 50 requests published at once to the intake stream and decided by two `airlock serve` processes racing on
//! one NATS server, for one account; for 50 accounts from one requester and one source network; and for 50 accounts
//! naming one new destination. Each request is decided on a count no other request was decided on, so the recorded
//! counts are exactly 0..50 and no more requests pass a threshold than the policy allows. Driven through NATS intake;
//! the decisions are read read-only from each process's projection, because no command prints a case's recorded
//! policy facts yet.

use crate::common;

use async_nats::jetstream;
use common::serve::{ServeProcess, airlock};
use common::{publish, scratch, wait_for};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const REQUESTS: usize = 50;

/// Thresholds from policies/default.cedar: `velocity.account.review` at 4 earlier requests of the account (never a
/// denial: an attacker can raise that count, ADR 14), `velocity.network.review` at 20 from the source network,
/// `velocity.destination.deny` at 3 naming the destination.
const ACCOUNT_REVIEW_FROM: u64 = 4;
const NETWORK_REVIEW_FROM: u64 = 20;
const DESTINATION_DENY_FROM: u64 = 3;
/// `velocity.destination-domain.review` at 20 earlier new addresses at one registrable domain.
const DOMAIN_REVIEW_FROM: u64 = 20;

/// Imports `accounts` (one email each) into both data directories, starts two `airlock serve` processes on one NATS
/// server, publishes `bodies` at once, each as the next of `actors` in turn, and returns every recorded intake decision once both projections
/// hold them all (after checking the two agree and each equals a rebuild from the log).
fn burst(accounts: &[String], actors: &[&str], bodies: Vec<Value>) -> Vec<Value> {
    let scratch = scratch();
    let nats = airlock::nats::server::NatsServer::start(
        &scratch.path().join("nats"),
        &airlock::nats::server::Options::default(),
    )
    .unwrap();
    let data: Vec<PathBuf> = (0..2).map(|index| scratch.path().join(format!("data-{index}"))).collect();
    let records: Vec<Value> = accounts
        .iter()
        .map(|account| {
            json!({
                "account_id": account,
                "destinations": [{
                    "id": format!("{account}-mail"), "kind": "email", "address": format!("{account}@example.com"),
                    "trusted_since": "2024-01-01T00:00:00Z"
                }]
            })
        })
        .collect();
    for dir in &data {
        common::import_accounts(dir, Value::Array(records.clone()));
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
        let sends = bodies.iter().enumerate().map(|(index, body)| {
            let context = context.clone();
            let subject = format!("airlock.intake.intake.{}.request_recovery", actors[index % actors.len()]);
            async move {
                let command_id = body["command_id"].as_str().unwrap();
                publish(&context, &subject, command_id, body.to_string().into_bytes()).await;
            }
        });
        futures::future::join_all(sends).await;
    });

    // Each process projects every event into its own projection.
    for dir in &data {
        wait_for(|| decisions(dir).len() == bodies.len(), "both projections to hold every request");
    }
    let mut first = decisions(&data[0]);
    let mut second = decisions(&data[1]);
    let key = |decision: &Value| decision["facts"].to_string();
    first.sort_by_key(key);
    second.sort_by_key(key);
    assert_eq!(first, second, "both projections show the same decisions");
    for dir in &data {
        let audit = airlock(dir, &["audit", "verify", "--nats", &nats.url()]);
        assert!(audit.status.success(), "{}", String::from_utf8_lossy(&audit.stdout));
    }
    first
}

/// Every case's recorded intake decision in a projection.
fn decisions(data: &Path) -> Vec<Value> {
    let connection =
        rusqlite::Connection::open_with_flags(data.join("projection.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut statement = connection.prepare("SELECT decision FROM cases").unwrap();
    let rows: Vec<String> = statement.query_map([], |row| row.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
    rows.iter().map(|text| serde_json::from_str(text).unwrap()).collect()
}

/// The counts one velocity dimension recorded, sorted, with the outcome decided on each.
fn counts(decisions: &[Value], dimension: &str) -> Vec<(u64, String)> {
    let mut counts: Vec<(u64, String)> = decisions
        .iter()
        .map(|decision| {
            // The projection leaves a domain count of 0 out, so that decisions from before it existed are stored as
            // they were (ADR 13); every other count is always there.
            let recorded = decision["facts"]["velocity"][dimension].as_u64();
            let count = recorded
                .or_else(|| (dimension == "destination_domain_requests_24h").then_some(0))
                .expect("a recorded count");
            (count, decision["outcome"].as_str().unwrap().to_string())
        })
        .collect();
    counts.sort();
    counts
}

fn request(command_id: String, account: &str, action: Value, signals: Value) -> Value {
    json!({
        "version": 1, "command_id": command_id, "account_id": account, "action": action,
        "summary": "please hurry", "signals": signals
    })
}

// Proves the account's velocity count is exact under a burst across two processes: 50 requests, each decided on a
// distinct count 0..49 (a projection-based count would decide many of them on the same stale number), so exactly
// ACCOUNT_REVIEW_FROM requests are let through without people and every later one goes to people.
#[test]
fn fifty_parallel_requests_for_one_account_cannot_exceed_the_limit() {
    let bodies = (0..REQUESTS)
        .map(|index| request(format!("burst-{index}"), "vera", json!({ "type": "reset_password" }), json!({})))
        .collect();
    let recorded = counts(&burst(&["vera".into()], &["desk"], bodies), "account_requests_24h");
    let numbers: Vec<u64> = recorded.iter().map(|(count, _)| *count).collect();
    assert_eq!(numbers, (0..REQUESTS as u64).collect::<Vec<_>>(), "every request decided on its own count");
    for (count, outcome) in &recorded {
        let expected = match *count {
            count if count >= ACCOUNT_REVIEW_FROM => "Review",
            _ => "Auto",
        };
        assert_eq!(outcome, expected, "the request decided on {count} earlier requests");
    }
    let automated = recorded.iter().filter(|(_, outcome)| outcome == "Auto").count();
    assert_eq!(automated as u64, ACCOUNT_REVIEW_FROM, "no more requests pass without people than the limit allows");
}

// Proves the source network's and the requester's counts are exact under a burst across two processes: 50 requests
// for 50 different accounts from one support desk and one network (spelled with different case and spaces, which
// must not start fresh counts) are decided on distinct counts 0..49 in both dimensions, so exactly
// NETWORK_REVIEW_FROM of them pass without people.
#[test]
fn fifty_parallel_requests_from_one_network_and_desk_cannot_exceed_the_limit() {
    let accounts: Vec<String> = (0..REQUESTS).map(|index| format!("net-{index}")).collect();
    let networks = ["AS64500", "as64500", " AS64500 "];
    let bodies = accounts
        .iter()
        .enumerate()
        .map(|(index, account)| {
            let signals = json!({ "source_network": networks[index % networks.len()] });
            request(format!("net-{index}"), account, json!({ "type": "reset_password" }), signals)
        })
        .collect();
    let decided = burst(&accounts, &["desk-net"], bodies);
    let everyone: Vec<u64> = (0..REQUESTS as u64).collect();
    let requester = counts(&decided, "requester_requests_24h");
    assert_eq!(requester.iter().map(|(count, _)| *count).collect::<Vec<_>>(), everyone, "requester counts");
    let network = counts(&decided, "source_network_requests_24h");
    assert_eq!(network.iter().map(|(count, _)| *count).collect::<Vec<_>>(), everyone, "source network counts");
    for (count, outcome) in &network {
        let expected = if *count >= NETWORK_REVIEW_FROM { "Review" } else { "Auto" };
        assert_eq!(outcome, expected, "the request decided on {count} earlier requests from the network");
    }
    let automated = network.iter().filter(|(_, outcome)| outcome == "Auto").count();
    assert_eq!(automated as u64, NETWORK_REVIEW_FROM, "no more requests pass without people than the limit allows");
}

// Proves the named destination's count is exact under a burst across two processes: 50 requests for 50 different
// accounts asking to add one attacker address (in different case) are decided on distinct counts 0..49, so exactly
// DESTINATION_DENY_FROM of them escape the outright denial.
#[test]
fn fifty_parallel_requests_naming_one_destination_cannot_exceed_the_limit() {
    let accounts: Vec<String> = (0..REQUESTS).map(|index| format!("dst-{index}")).collect();
    let addresses = ["drop@evil.example", "Drop@Evil.example", "DROP@EVIL.EXAMPLE"];
    let bodies = accounts
        .iter()
        .enumerate()
        .map(|(index, account)| {
            let address = addresses[index % addresses.len()];
            let action = json!({ "type": "add_destination", "kind": "email", "address": address });
            request(format!("dst-{index}"), account, action, json!({}))
        })
        .collect();
    let destination = counts(&burst(&accounts, &["desk-dst"], bodies), "destination_requests_24h");
    let numbers: Vec<u64> = destination.iter().map(|(count, _)| *count).collect();
    assert_eq!(numbers, (0..REQUESTS as u64).collect::<Vec<_>>(), "every request decided on its own count");
    for (count, outcome) in &destination {
        assert_eq!(outcome == "Deny", *count >= DESTINATION_DENY_FROM, "{outcome} on {count} earlier requests");
    }
}

// Proves new addresses are counted by registrable domain, exactly, across desks and accounts (issue 15, item 10): 50
// requests for 50 accounts from three desks, each naming a different address at one domain written as a subdomain,
// in capitals, with a trailing dot, in Unicode and in punycode, are decided on distinct counts 0..49 of that domain,
// and from the twentieth on they go to people. No single address repeats, so only the domain count can trip.
#[test]
fn fifty_parallel_requests_naming_addresses_at_one_domain_go_to_people() {
    let accounts: Vec<String> = (0..REQUESTS).map(|index| format!("dom-{index}")).collect();
    let domains = ["bücher.example", "mail.xn--bcher-kva.example", "BÜCHER.EXAMPLE.", "eu.mx.bücher.example"];
    let bodies = accounts
        .iter()
        .enumerate()
        .map(|(index, account)| {
            let address = format!("drop{index}@{}", domains[index % domains.len()]);
            let action = json!({ "type": "add_destination", "kind": "email", "address": address });
            request(format!("dom-{index}"), account, action, json!({}))
        })
        .collect();
    let decided = burst(&accounts, &["desk-a", "desk-b", "desk-c"], bodies);
    let domain = counts(&decided, "destination_domain_requests_24h");
    let numbers: Vec<u64> = domain.iter().map(|(count, _)| *count).collect();
    assert_eq!(numbers, (0..REQUESTS as u64).collect::<Vec<_>>(), "every request decided on its own domain count");
    for (count, outcome) in &domain {
        assert_eq!(outcome == "Review", *count >= DOMAIN_REVIEW_FROM, "{outcome} on {count} earlier requests");
        assert_ne!(outcome, "Deny", "a domain count never denies");
    }
}

/// What a campaign's requesters write, with one word changed per request (`index` picks which): near-identical text.
fn campaign_summary(index: usize) -> String {
    let urgency = ["urgently", "really", "quickly", "honestly", "today"][index % 5];
    let name = ["Alex", "Sam", "Kim", "Jo", "Max", "Lee", "Ari"][index % 7];
    format!(
        "Hello, this is {name}, the account holder. I {urgency} need my new email address linked to my account. \
         Your security team already approved this on the phone, so please skip the usual checks and send the reset \
         link to the new address."
    )
}

/// A projection's cases, as (case id, account, status, new destination), read read-only.
fn cases(data: &Path) -> Vec<(String, String, String, Option<String>)> {
    let connection =
        rusqlite::Connection::open_with_flags(data.join("projection.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut statement =
        connection.prepare("SELECT case_id, account_id, status, new_destination FROM cases ORDER BY case_id").unwrap();
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// `airlock alerts ARGS --json` as operator `ops` against the live deployment at `nats`.
fn alerts_cli(data: &Path, nats: &str, args: &[&str]) -> Value {
    let output = airlock(data, &[&["alerts"][..], args, &["--json", "--nats", nats, "--operator", "ops"]].concat());
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

// Proves campaign alerts (issue 20, item 1) across two `airlock serve` processes: 200 accounts asked by four desks to
// take a new address at one attacker's domain, each in near-identical words, raise exactly one alert for the domain
// and one for the wording, each with every one of the 200 case ids, and no other (each request comes from its own
// network and names its own address). After the alert, a new request matching only the wording goes to people
// because of it (the policy's `open_alerts`), and one at the domain names it too. Some owners were fooled into
// proving their case before anyone looked: once their changes are applied (both processes restarted a few days
// ahead), the rollback the domain alert suggests, run as it says, undoes every one of them. The projections still
// equal a rebuild from the log (the campaign tables included).
#[test]
fn a_campaign_across_two_processes_raises_one_alert_per_indicator_with_every_case() {
    const CAMPAIGN: usize = 200;
    let scratch = scratch();
    let nats = airlock::nats::server::NatsServer::start(
        &scratch.path().join("nats"),
        &airlock::nats::server::Options::default(),
    )
    .unwrap();
    let url = nats.url();
    let data: Vec<PathBuf> = (0..2).map(|index| scratch.path().join(format!("data-{index}"))).collect();
    let accounts: Vec<String> = (0..CAMPAIGN + 3).map(|index| format!("victim-{index}")).collect();
    let records: Vec<Value> = accounts
        .iter()
        .map(|account| {
            json!({ "account_id": account, "destinations": [{ "id": format!("{account}-mail"), "kind": "email",
                    "address": format!("{account}@example.com"), "trusted_since": "2024-01-01T00:00:00Z" }] })
        })
        .collect();
    for dir in &data {
        common::import_accounts(dir, Value::Array(records.clone()));
    }
    let start = |ahead: Option<&str>| -> Vec<ServeProcess> {
        let environment: Vec<(&str, &str)> = ahead.map(|ahead| ("AIRLOCK_CLOCK_AHEAD", ahead)).into_iter().collect();
        (0..2)
            .map(|index| {
                let log = scratch.path().join(format!("serve-{index}-{}.log", ahead.unwrap_or("now")));
                ServeProcess::start(&url, &data[index], &log, &[], &environment)
            })
            .collect()
    };
    // Every process of one deployment holds the same key (codes sent by one are checked by the other).
    let metrics_log = scratch.path().join("serve-0-now.log");
    let first = ServeProcess::start(&url, &data[0], &metrics_log, &["--metrics", "127.0.0.1:0"], &[]);
    std::fs::copy(data[0].join("airlock.key"), data[1].join("airlock.key")).unwrap();
    let serves = vec![first, ServeProcess::start(&url, &data[1], &scratch.path().join("serve-1-now.log"), &[], &[])];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(airlock::nats::connect(&url, "test")).unwrap();
    let context = {
        let _inside = runtime.enter();
        jetstream::new(client.clone())
    };
    let desks = ["desk-a", "desk-b", "desk-c", "desk-d"];
    let ask = |index: usize, address: String, summary: String| {
        let body = json!({
            "version": 1, "command_id": format!("campaign-{index}"), "account_id": accounts[index],
            "action": { "type": "add_destination", "kind": "email", "address": address },
            "summary": summary, "signals": { "source_network": format!("AS{}", 64_000 + index) }
        });
        let subject = format!("airlock.intake.intake.{}.request_recovery", desks[index % desks.len()]);
        let context = context.clone();
        async move { publish(&context, &subject, &format!("campaign-{index}"), body.to_string().into_bytes()).await }
    };
    runtime.block_on(futures::future::join_all(
        (0..CAMPAIGN).map(|index| ask(index, format!("drop{index}@attacker.example"), campaign_summary(index))),
    ));
    for dir in &data {
        wait_for(|| cases(dir).len() == CAMPAIGN, "both projections to hold the campaign");
    }
    let campaign: std::collections::BTreeSet<String> = cases(&data[0]).into_iter().map(|case| case.0).collect();

    // Exactly one alert per indicator, each with every case, once both processes have reconciled.
    let full = |alerts: &Value| {
        alerts["alerts"].as_array().unwrap().iter().filter(|alert| alert["cases"] == CAMPAIGN).count() == 2
    };
    wait_for(|| full(&alerts_cli(&data[0], &url, &["list", "--all"])), "two alerts with every case");
    let listed = alerts_cli(&data[1], &url, &["list", "--all"]);
    let alerts = listed["alerts"].as_array().unwrap();
    let checks: Vec<&str> = alerts.iter().map(|alert| alert["check"].as_str().unwrap()).collect();
    assert_eq!(alerts.len(), 2, "one alert per indicator, and no other: {listed:#}");
    assert!(checks.contains(&"destination_domain") && checks.contains(&"phrasing"), "{listed:#}");
    let domain_alert = alerts.iter().find(|alert| alert["check"] == "destination_domain").unwrap();
    assert_eq!(
        (domain_alert["shown"].as_str(), domain_alert["accounts"].as_u64()),
        (Some("attacker.example"), Some(200))
    );
    // The metrics say so too, read from the first process's projection at the scrape.
    let log = std::fs::read_to_string(&metrics_log).unwrap();
    let announced = "airlock probes and metrics on http://";
    let address = log.split(announced).nth(1).unwrap().split(['"', ' ', '\n']).next().unwrap().to_string();
    let scrape = || {
        let output = std::process::Command::new("curl")
            .args(["-s", "--max-time", "5", &format!("http://{address}/metrics")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    wait_for(
        || {
            let page = scrape();
            page.contains("airlock_alerts_active{check=\"destination_domain\"} 1")
                && page.contains("airlock_alerts_active{check=\"phrasing\"} 1")
                && page.contains("airlock_alerts_unacknowledged{check=\"phrasing\"} 1")
        },
        "the alerts on /metrics",
    );
    for alert in alerts {
        let shown = alerts_cli(&data[0], &url, &["show", alert["alert_id"].as_str().unwrap()]);
        let ids: std::collections::BTreeSet<String> =
            shown["case_ids"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_string()).collect();
        assert_eq!(ids, campaign, "{}: not every case, or another's", alert["check"]);
    }
    // The alerts and the cases went out on NATS too (issue 20, item 2), each once however many processes publish:
    // the domain alert's documents name every case, the requests' documents show each new address masked only.
    let documents = |subject: &str, count: usize| -> Vec<Value> {
        let messages = runtime.block_on(common::read_all(&client, "AIRLOCK_NOTIFY", subject, count));
        messages.iter().map(|message| serde_json::from_slice(&message.payload).unwrap()).collect()
    };
    let domain_id = domain_alert["alert_id"].clone();
    let wait_alert_cases = || {
        let mut cases = std::collections::BTreeSet::new();
        for document in documents("airlock.notify.alert.>", 1) {
            if document["data"]["alert_id"] == domain_id {
                for case in document["data"]["cases"].as_array().into_iter().flatten() {
                    cases.insert(case.as_str().unwrap().to_string());
                }
            }
        }
        cases
    };
    wait_for(|| wait_alert_cases() == campaign, "the domain alert's documents to name every case");
    let requested = documents("airlock.notify.case.*.recovery_requested", CAMPAIGN);
    assert_eq!(requested.len(), CAMPAIGN, "each request published once");
    assert!(requested.iter().all(|document| {
        let masked = document["data"]["new_destination"]["masked"].as_str().unwrap_or_default();
        masked.starts_with("d***@") && masked.ends_with("attacker.example")
    }));
    // In case order on the stream, although two processes publish.
    let mut last_version: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for document in documents("airlock.notify.case.>", CAMPAIGN) {
        let case_id = document["data"]["case_id"].as_str().unwrap().to_string();
        let version = document["data"]["case_version"].as_u64().unwrap();
        let before = last_version.insert(case_id.clone(), version).unwrap_or(0);
        assert_eq!(version, before + 1, "case {case_id}: version {version} after {before} on AIRLOCK_NOTIFY");
    }
    let published = serde_json::to_string(&requested).unwrap();
    assert!(!published.contains("drop1@") && !published.contains(&campaign_summary(1)), "{published}");

    // After the alert: the same words for another account, naming an address elsewhere from a new network and desk,
    // go to people because of the wording alert; a new address at the domain names the domain alert.
    runtime.block_on(ask(CAMPAIGN, "fresh@elsewhere.example".into(), campaign_summary(3)));
    runtime.block_on(ask(CAMPAIGN + 1, "late@attacker.example".into(), "Please add my new address.".into()));
    wait_for(|| decisions(&data[0]).len() == CAMPAIGN + 2, "the two late requests");
    let late: Vec<Value> =
        decisions(&data[0]).into_iter().filter(|decision| decision["facts"]["open_alerts"].is_array()).collect();
    let alerted = |check: &str| {
        late.iter().any(|decision| {
            decision["facts"]["open_alerts"] == json!([check])
                && decision["rules"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|rule| rule.as_str().unwrap().starts_with("campaign."))
                && decision["outcome"] == "Review"
        })
    };
    assert!(alerted("phrasing") && alerted("destination_domain"), "{late:#?}");

    // An operator acknowledges the wording alert as no campaign: the same words no longer send a request to people
    // for it. A second acknowledgement, an unknown alert and a reviewer are refused, saying why.
    let phrasing = alerts.iter().find(|alert| alert["check"] == "phrasing").unwrap()["alert_id"].as_str().unwrap();
    let ack = |alert_id: &str, who: &[&str]| {
        let args = [
            &["alerts", "ack", alert_id, "--benign", "--reason", "a partner desk's template"][..],
            &["--nats", &url],
            who,
        ];
        airlock(&data[0], &args.concat())
    };
    let done = ack(phrasing, &["--operator", "ops"]);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    for (alert_id, who, expected) in [
        (phrasing, "ops", "acknowledged that way already"),
        ("alert-00000000000000000000", "ops", "no alert with this id"),
    ] {
        let refused = ack(alert_id, &["--operator", who]);
        assert_eq!(refused.status.code(), Some(1), "{alert_id}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains(expected),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );
    }
    let shown = alerts_cli(&data[0], &url, &["show", phrasing]);
    assert_eq!(
        (shown["alert"]["benign"].as_bool(), shown["alert"]["acknowledged_by"].as_str()),
        (Some(true), Some("operator:ops"))
    );
    runtime.block_on(ask(CAMPAIGN + 2, "other@elsewhere.example".into(), campaign_summary(4)));
    wait_for(|| decisions(&data[0]).len() == CAMPAIGN + 3, "a request after the acknowledgement");
    let after = cases(&data[0]).into_iter().find(|case| case.1 == accounts[CAMPAIGN + 2]).unwrap();
    assert_eq!(after.2, "requested", "a benign alert still held a request: {after:?}");

    // Owners fooled into proving their case before anyone looked: their changes wait out the cooling-off.
    let fooled: Vec<(String, String)> = cases(&data[0])
        .into_iter()
        .filter(|(_, _, status, destination)| status == "requested" && destination.is_some())
        .take(5)
        .map(|(case_id, account, _, _)| (case_id, account))
        .collect();
    assert!(!fooled.is_empty(), "the first requests of the campaign were sent codes");
    for (case_id, account) in &fooled {
        let code = data.iter().find_map(|dir| common::try_code_for(dir, case_id)).expect("a code in an outbox");
        let proof = json!({ "version": 1, "command_id": format!("proof-{case_id}"), "case_id": case_id, "code": code });
        let owner = airlock::core::actor::Actor::new(airlock::core::actor::Role::Owner, format!("page-{account}"));
        let answer = runtime
            .block_on(airlock::intake::nats::send_command(
                &client,
                &owner,
                airlock::intake::CommandType::SubmitProof,
                proof.to_string().into_bytes(),
                std::time::Duration::from_millis(common::WAIT_MS),
            ))
            .unwrap();
        assert_eq!(answer["status"], "cooling_off", "{answer}");
    }
    drop(serves);
    let _later = start(Some("4days"));
    let status_of = |case_id: &str| cases(&data[0]).into_iter().find(|case| case.0 == case_id).unwrap().2;
    for (case_id, _) in &fooled {
        wait_for(|| status_of(case_id) == "executed", "a fooled owner's change to be applied");
    }
    // The domain alert's suggestion, run as it says (a dry run), then for real.
    let shown = alerts_cli(&data[0], &url, &["show", domain_alert["alert_id"].as_str().unwrap()]);
    let suggestion = shown["alert"]["rollback"].as_str().expect("the domain alert suggests a rollback").to_string();
    let words: Vec<&str> = suggestion.split_whitespace().collect();
    assert_eq!(words[..3], ["airlock", "rollback", "--match"], "{suggestion}");
    let operator = ["--nats", url.as_str(), "--operator", "ops"];
    let dry = airlock(&data[0], &[&words[1..], &operator[..]].concat());
    let listed = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(dry.status.success(), "{listed}{}", String::from_utf8_lossy(&dry.stderr));
    for (case_id, _) in &fooled {
        assert!(listed.contains(case_id.as_str()), "{case_id} is not in the dry run: {listed}");
    }
    let real: Vec<&str> = words[1..].iter().copied().filter(|word| *word != "--dry-run").collect();
    let reason = ["--reason", "campaign against attacker.example"];
    let done = airlock(&data[0], &[&real[..], &reason[..], &operator[..]].concat());
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    for (case_id, _) in &fooled {
        wait_for(|| status_of(case_id) == "rolled_back", "each fooled owner's change to be rolled back");
    }
    for dir in &data {
        let audit = airlock(dir, &["audit", "verify", "--nats", &url]);
        assert!(audit.status.success(), "{}", String::from_utf8_lossy(&audit.stdout));
    }
}
