//! `airlock simulate`: a seeded population of owners, attackers and reviewers run through the real service on the
//! embedded store, with a simulated clock, so that whoever writes a policy sees its trade-off before shipping it:
//! how many owners get their account back without a person, how many attacks succeed and what stopped the others,
//! and how much work reaches the reviewers.
//!
//! The world around airlock is simulated, airlock is not: every request, proof, review decision, cancel link and
//! timer goes through `Service` exactly as the front doors send it, and every message reaches the world through the
//! `Notifier` trait. Owners know only what an owner would (the messages at the destinations they hold); attackers only
//! what an attacker would (the messages at their own mailboxes and at a phone number they took over). Everything is
//! drawn from one seeded generator in a fixed order, and the report holds nothing that depends on the codes airlock
//! draws, so the same seed gives the same report, byte for byte.

mod agents;
pub mod population;
pub mod report;

use crate::core::ids::UnixMs;
use crate::policy::Engine;
use population::Population;
use report::Run;
use std::path::Path;
use std::sync::Arc;

/// One run: `population` in `scenario` under `engine`, with `seed`, in a fresh embedded store under `dir`.
pub async fn run(
    population: &Population,
    scenario: usize,
    engine: Arc<Engine>,
    policies_label: &str,
    seed: u64,
    dir: &Path,
) -> anyhow::Result<Run> {
    let start = humantime::parse_rfc3339_weak(&population.start)?
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| anyhow::anyhow!("the population starts before 1970"))?;
    let start = UnixMs(start.as_millis() as u64);
    let mut world = agents::World::new(population, scenario, engine, seed, dir, start)?;
    world.run().await?;
    world.report(policies_label).await
}
