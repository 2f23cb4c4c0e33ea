//! THREATS.md, end to end, as one suite run against both backends through one driver (issue 21, as
//! tests/store/log_conformance.rs runs one event-log contract against both logs). Each scenario is written once, as an
//! async function generic over `driver::Driver`, and runs as one test per backend: `<file>::embedded::<scenario>` on
//! the embedded store (`embedded.rs`: `airlock submit` and the other commands of the `airlock` binary on one data
//! directory) and `<file>::nats::<scenario>` over NATS (`nats.rs`: a real nats-server on loopback and `airlock serve
//! --nats`, driven on its intake, result and query subjects). The attacker, the support desk, the owner, reviewers and
//! operators act only through public interfaces; accounts are loaded with `airlock directory import`; time moves
//! forward by running `airlock serve` with the debug-only `AIRLOCK_CLOCK_AHEAD`. Nothing here calls airlock's
//! internals; `airlock::directory::totp` only computes what an authenticator app would show.
//!
//! Where no public interface shows what a test must observe, the test reads airlock's SQLite files read-only, as a
//! mail provider or an auditor's query would: the outbox table of directory.db for what the owner receives (the code
//! itself: `airlock outbox` masks it, as it should) and its destinations table for what a change did to the account;
//! the cases, timeline and control tables of projection.db for decisions, action hashes, cooling-off ends, events and
//! the kill switch (the NATS query answers with a status only, `airlock case show` does not show a decision's facts,
//! and `airlock case history` shows the log, not the projection). What only one backend shows (a desk's status query
//! and the dead-letter stream, on NATS) is checked where the backend has it.
//!
//! Every test ends by searching everything airlock published, printed or wrote outside the owner's outbox (answers,
//! dead letters, the event stream or log, serve's log, `airlock outbox`, the projection file) for every code an owner
//! received, and THREATS 9's test for the authenticator code too: a code reaches the owner's outbox and nothing else.
//!
//! Here: THREATS 1, 8 and 18 in `desks.rs`; 2, with 13 and 14 where they follow from it, in `new_destination.rs`; 3,
//! 4 and 5 in `claims.rs`; 6, 7 and 17 in `counting.rs`; 9 in `factors.rs`; 10 and 11 in `reviewers.rs`; 12 in
//! `roles.rs`. Every scenario runs on both backends but one: wrong codes counted exactly while the projection lags runs
//! on NATS only, where the projector is a consumer of its own that can be held back (on the embedded store each
//! `airlock submit` writes the projection itself).
//!
//! Elsewhere: 8's answers not waiting for the mail server, and 12's role check by the broker, are in
//! tests/nats/nats_serve.rs and tests/nats/nats_permissions.rs; 9's links in tests/integrations/http_verify.rs; 13 and
//! 14 in tests/cli/rollback_cli.rs and tests/store/audit_cli.rs; 15 in tests/cli/case_history.rs (both modes). Of the
//! classes the outside campaign added: 16 (floods, payload limits, dead letters, ids of other desks) is in
//! tests/nats/nats_serve.rs; 18's proof page and timing are in tests/integrations/http_intake.rs; 19's counting by
//! address and by registrable domain across desks is in tests/nats/velocity_burst.rs (on NATS) and
//! tests/cli/untrusted_text.rs, and its bulk rollback in tests/cli/rollback_cli.rs; 20's links in
//! tests/integrations/http_verify.rs and its masked addresses in tests/cli/untrusted_text.rs.

#[path = "../common/mod.rs"]
mod common;
mod driver;
mod embedded;
mod nats;

/// One test per backend for each scenario of a file: those under `both` on the embedded store and over NATS (in
/// `mod embedded` and `mod nats`), those under `nats` over NATS only.
macro_rules! on_backends {
    (both: [$($both:ident),* $(,)?] $(, nats: [$($nats:ident),* $(,)?])? $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $both() {
                    super::$both::<crate::embedded::Store>().await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $both() {
                    super::$both::<crate::nats::Airlock>().await;
                }
            )*
            $($(
                #[tokio::test(flavor = "multi_thread")]
                async fn $nats() {
                    super::$nats::<crate::nats::Airlock>().await;
                }
            )*)?
        }
    };
}

mod claims;
mod counting;
mod desks;
mod factors;
mod new_destination;
mod reviewers;
mod roles;
