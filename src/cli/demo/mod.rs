//! `airlock demo`: three stories, end to end through the real core, log, projection, directory and outbox, with a
//! simulated clock so days of cooling-off pass at once. It prints each case's timeline and exits non-zero if any
//! story ends differently than it should.

mod print;
mod stories;

use crate::cli::exit;
use crate::clock::ManualClock;
use crate::core::ids::UnixMs;
use crate::keys::Keys;
use crate::server::embedded;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where to keep the demo's databases. By default a temporary directory, removed at the end.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Keep the data directory (and print its path) so the databases can be inspected afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// 2026-06-01 09:00:00 UTC: the demo's simulated "now" at the start.
pub const DEMO_START: UnixMs = UnixMs(1_780_304_400_000);

/// One expectation of a story, checked after it ran.
pub struct Check {
    pub story: &'static str,
    pub what: String,
    pub held: bool,
}

pub fn run(args: DemoArgs) -> u8 {
    let temporary = match &args.data_dir {
        Some(_) => None,
        None => match tempfile::Builder::new().prefix("airlock-demo-").tempdir() {
            Ok(directory) => Some(directory),
            Err(error) => {
                eprintln!("error: cannot create a temporary directory: {error}");
                return exit::UNAVAILABLE;
            }
        },
    };
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temporary.as_ref().expect("created above").path().into());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
    let result = runtime.block_on(run_stories(&data_dir));
    if args.keep {
        let kept = temporary.map_or(data_dir.clone(), |directory| directory.keep());
        println!("\nData kept in {}", kept.display());
    }
    match result {
        Ok(checks) => report(&checks),
        Err(error) => {
            eprintln!("error: the demo could not run: {error:#}");
            exit::UNAVAILABLE
        }
    }
}

async fn run_stories(data_dir: &std::path::Path) -> anyhow::Result<Vec<Check>> {
    let clock = Arc::new(ManualClock::starting_at(DEMO_START));
    let embedded = embedded::open(data_dir, clock.clone(), Keys::generate())?;
    stories::seed_accounts(&embedded)?;
    let mut checks = Vec::new();
    checks.extend(stories::playbook_2026(&embedded).await?);
    checks.extend(stories::real_owner(&embedded, &clock).await?);
    checks.extend(stories::lost_every_factor(&embedded).await?);
    Ok(checks)
}

fn report(checks: &[Check]) -> u8 {
    println!("\n== What the demo checked ==");
    for check in checks {
        let mark = if check.held { "ok  " } else { "FAIL" };
        println!("  [{mark}] {}: {}", check.story, check.what);
    }
    let failed = checks.iter().filter(|check| !check.held).count();
    if failed == 0 {
        println!("\nAll {} checks held.", checks.len());
        exit::OK
    } else {
        println!("\n{failed} of {} checks FAILED.", checks.len());
        exit::FAILED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the demo's verdict can fail: one check that did not hold makes the exit code non-zero.
    #[test]
    fn a_failed_check_fails_the_demo() {
        let held = Check { story: "s", what: "held".into(), held: true };
        let failed = Check { story: "s", what: "did not hold".into(), held: false };
        assert_eq!(report(std::slice::from_ref(&held)), exit::OK);
        assert_eq!(report(&[held, failed]), exit::FAILED);
    }

    // Proves the demo masks exactly the shape of a one-time code and leaves phone numbers and dates alone.
    #[test]
    fn codes_are_masked_in_printed_messages() {
        let masked = crate::notify::mask_codes("code: 12345678\nphone +15550100123 on 2026-06-01");
        assert_eq!(masked, "code: [code]\nphone +15550100123 on 2026-06-01");
    }
}
