//! The population a simulation runs: accounts by factor profile, the owners who ask for their accounts back and how
//! they behave, the attackers and their playbooks, and the reviewers. A versioned TOML file (`simulations/`); one
//! that does not validate is refused with the line and the field named, and impossible mixes (a rate above 100%,
//! shares that do not add up) are refused too.

use serde::{Deserialize, Deserializer};

/// The population shipped with airlock, the one `airlock simulate` runs without `--population`.
pub const DEFAULT_POPULATION: &str = include_str!("../../simulations/default.toml");

/// The only version of the file format so far.
const VERSION: u32 = 1;

/// The most accounts a population may hold: a simulation keeps every account's state in memory.
pub const ACCOUNTS_MAX: u32 = 1_000_000;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    pub version: u32,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub accounts: u32,
    /// The simulated time at which the first request may come (RFC 3339).
    pub start: String,
    /// How long the simulation runs after the last first request, in days: long enough for every cooling-off, review
    /// and retry to finish.
    pub horizon_days: u32,
    #[serde(rename = "scenario")]
    pub scenarios: Vec<Scenario>,
    #[serde(rename = "profile")]
    pub profiles: Vec<Profile>,
    pub owners: Owners,
    pub attackers: Attackers,
    pub reviewers: Reviewers,
}

/// One way the same requests arrive: all within a day through one desk, or spread over weeks.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// The owners' first requests arrive evenly at random over this many days.
    pub spread_days: Days,
}

/// A kind of account, by the factors it has and what its owner still holds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub share: Rate,
    pub destinations: Vec<ProfileDestination>,
    /// An authenticator app enrolled this many days before the start, which the owner still has.
    #[serde(default)]
    pub totp_age_days: Option<u32>,
    /// Why the account is high-value (`admin`, `creator`, `finance`, `government`, `vip`), if it is.
    #[serde(default)]
    pub high_value: Option<HighValue>,
    #[serde(default)]
    pub risk_flags: Vec<String>,
    /// The password was changed this many days before the start.
    #[serde(default)]
    pub credential_changed_days_ago: Option<u32>,
    /// Whether an owner of this profile is expected to need a person (no factor left, high value, a risk flag, a
    /// recent credential change). Owners of the other profiles with an eligible factor make the self-service figure.
    #[serde(default)]
    pub needs_person: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDestination {
    pub kind: Kind,
    /// Trusted since this many days before the start.
    pub age_days: u32,
    /// The owner lost it and reported it (the directory marks it revoked).
    #[serde(default)]
    pub lost: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owners {
    /// The share of accounts whose owner asks for a password reset.
    pub share: Rate,
    /// The support desk every owner asks through.
    pub desk: String,
    /// How long an owner takes to act on a message, in minutes (uniform between the two).
    pub react_minutes: Range,
    /// The share of messages an owner acts on hours later instead (a code has expired by then).
    pub late_rate: Rate,
    pub late_hours: Range,
    /// The share of owners who mistype the code once before typing it right.
    pub mistype_rate: Rate,
    /// The share of owners who never read a notice about a change they did not ask for.
    pub ignore_notices_rate: Rate,
    /// The share of owners who do not compare a message's reference with the one the desk gave them: while they wait
    /// for a reset, any reset code or scheduled reset is theirs as far as they can tell. 0 if not given.
    #[serde(default)]
    pub ignores_reference_rate: Rate,
    /// How often an owner whose request ended without their account back asks again, and after how long.
    pub retries: u32,
    pub retry_hours: Range,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attackers {
    /// The share of accounts attacked (independently of whether their owner asks).
    pub share: Rate,
    /// The desks attackers send requests through, in turn.
    pub desks: Vec<String>,
    /// Wrong codes an attacker types on each case it opened before giving up.
    pub guesses: u32,
    /// The domain attackers own mailboxes at.
    pub domain: String,
    /// How many accounts one domain campaign names addresses at its domain for.
    pub campaign_size: u32,
    /// How many cases the code-guessing playbook opens for its account.
    pub parallel_cases: u32,
    pub playbooks: Playbooks,
    /// The share of SIM swaps the carrier reports, so that the account carries `sim_swap_reported` when the attacker
    /// asks.
    pub carrier_flags_rate: Rate,
}

/// How attacks are split between the THREATS playbooks; the shares add up to 1.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbooks {
    /// THREATS 1: a support bot asked to link the attacker's email, from a proxy near the victim.
    pub support_bot_2026: Rate,
    /// THREATS 5: leaked personal data offered as proof of identity.
    pub leaked_data: Rate,
    /// THREATS 7: several cases for one account and guesses on each.
    pub code_guessing: Rate,
    /// THREATS 19: one attacker domain named for many accounts, in varied spellings, through every desk.
    pub domain_campaign: Rate,
    /// The victim's phone number ported to the attacker, who then reads the codes sent to it.
    pub sim_swap: Rate,
    /// THREATS 4 and 11: an urgent, authoritative story aimed at the reviewers.
    pub reviewer_pressure: Rate,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reviewers {
    /// Reviewers work the queue this often (simulated minutes), oldest case first.
    pub every_minutes: u32,
    /// Cases decided per pass at most.
    pub per_pass: u32,
    /// The share of attackers' cases a reviewer approves anyway, and of those told with pressure.
    pub fooled_rate: Rate,
    pub pressure_fooled_rate: Rate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Email,
    Phone,
}

impl From<Kind> for crate::core::account::DestinationKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Email => crate::core::account::DestinationKind::Email,
            Kind::Phone => crate::core::account::DestinationKind::Phone,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HighValue {
    Admin,
    Creator,
    Finance,
    Government,
    Vip,
}

impl From<HighValue> for crate::core::account::HighValueReason {
    fn from(reason: HighValue) -> Self {
        use crate::core::account::HighValueReason;
        match reason {
            HighValue::Admin => HighValueReason::Admin,
            HighValue::Creator => HighValueReason::Creator,
            HighValue::Finance => HighValueReason::Finance,
            HighValue::Government => HighValueReason::Government,
            HighValue::Vip => HighValueReason::Vip,
        }
    }
}

/// A share or a probability: a number from 0 to 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
pub struct Rate(pub f64);

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Rate, D::Error> {
        let value = f64::deserialize(deserializer)?;
        if !(0.0..=1.0).contains(&value) {
            return Err(serde::de::Error::custom(format!(
                "{value} is not a rate: it must be from 0 to 1 (0% to 100%)"
            )));
        }
        Ok(Rate(value))
    }
}

/// A number of days, at least one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Days(pub u32);

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Days, D::Error> {
        let value = u32::deserialize(deserializer)?;
        if value == 0 || value > 366 {
            return Err(serde::de::Error::custom(format!("{value} days: it must be from 1 to 366")));
        }
        Ok(Days(value))
    }
}

/// `[low, high]`, low at most high, neither negative.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    pub low: f64,
    pub high: f64,
}

impl<'de> Deserialize<'de> for Range {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Range, D::Error> {
        let [low, high] = <[f64; 2]>::deserialize(deserializer)?;
        if !(low >= 0.0 && low <= high && high.is_finite()) {
            return Err(serde::de::Error::custom(format!(
                "[{low}, {high}] is not a range: write [low, high], low <= high"
            )));
        }
        Ok(Range { low, high })
    }
}

impl Population {
    /// Parses and validates a population file; the error names the line and the field.
    pub fn parse(text: &str) -> Result<Population, String> {
        let population: Population = toml::from_str(text).map_err(|error| error.to_string())?;
        population.validate(text)?;
        Ok(population)
    }

    fn validate(&self, text: &str) -> Result<(), String> {
        let at = |key: &str, problem: String| match line_of(text, key) {
            Some(line) => format!("line {line}, {key}: {problem}"),
            None => format!("{key}: {problem}"),
        };
        if self.version != VERSION {
            return Err(at(
                "version",
                format!("version {} is not known; this airlock reads version {VERSION}", self.version),
            ));
        }
        if self.accounts == 0 || self.accounts > ACCOUNTS_MAX {
            return Err(at("accounts", format!("{} accounts: it must be from 1 to {ACCOUNTS_MAX}", self.accounts)));
        }
        humantime::parse_rfc3339_weak(&self.start)
            .map_err(|error| at("start", format!("{:?} is not an RFC 3339 time: {error}", self.start)))?;
        if self.horizon_days == 0 || self.horizon_days > 366 {
            return Err(at("horizon_days", format!("{} days: it must be from 1 to 366", self.horizon_days)));
        }
        if self.scenarios.is_empty() {
            return Err(at("[[scenario]]", "at least one scenario is needed".into()));
        }
        if self.profiles.is_empty() {
            return Err(at("[[profile]]", "at least one profile is needed".into()));
        }
        let shares: f64 = self.profiles.iter().map(|profile| profile.share.0).sum();
        if (shares - 1.0).abs() > 1e-9 {
            return Err(at("share", format!("the profiles' shares add up to {shares}, not 1")));
        }
        for profile in &self.profiles {
            if profile.destinations.is_empty() && profile.totp_age_days.is_none() {
                return Err(at(&profile.name, "a profile needs at least one destination or an authenticator".into()));
            }
        }
        let mut names: Vec<&str> = self.profiles.iter().map(|profile| profile.name.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(at(pair[0], "two profiles have this name".into()));
        }
        let playbooks = &self.attackers.playbooks;
        let shares = [
            playbooks.support_bot_2026,
            playbooks.leaked_data,
            playbooks.code_guessing,
            playbooks.domain_campaign,
            playbooks.sim_swap,
            playbooks.reviewer_pressure,
        ]
        .iter()
        .map(|rate| rate.0)
        .sum::<f64>();
        if (shares - 1.0).abs() > 1e-9 {
            return Err(at("[attackers.playbooks]", format!("the playbooks' shares add up to {shares}, not 1")));
        }
        if self.attackers.desks.is_empty() {
            return Err(at("desks", "attackers need at least one desk".into()));
        }
        let desks = self.attackers.desks.iter().map(|desk| ("desks", desk));
        for (key, desk) in desks.chain([("desk", &self.owners.desk)]) {
            crate::core::text::check_identifier("desk", desk).map_err(|error| at(key, format!("{desk:?}: {error}")))?;
        }
        if crate::core::address::canonical_domain(&self.attackers.domain).is_err() {
            return Err(at("domain", format!("{:?} is not a domain name", self.attackers.domain)));
        }
        let counts = [
            ("campaign_size", self.attackers.campaign_size, 1, 100_000),
            ("parallel_cases", self.attackers.parallel_cases, 1, 100),
            ("guesses", self.attackers.guesses, 0, 100),
            ("retries", self.owners.retries, 0, 100),
            ("every_minutes", self.reviewers.every_minutes, 1, 7 * 24 * 60),
            ("per_pass", self.reviewers.per_pass, 1, 1_000_000),
        ];
        for (key, value, least, most) in counts {
            if !(least..=most).contains(&value) {
                return Err(at(key, format!("{value}: it must be from {least} to {most}")));
            }
        }
        let mut scenarios: Vec<&str> = self.scenarios.iter().map(|scenario| scenario.name.as_str()).collect();
        scenarios.sort_unstable();
        if let Some(pair) = scenarios.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(at(pair[0], "two scenarios have this name".into()));
        }
        Ok(())
    }
}

/// The first line (from 1) that sets `key`, opens it as a table, or names it in quotes (a profile's name), for a
/// problem found after parsing.
fn line_of(text: &str, key: &str) -> Option<usize> {
    let sets = |line: &str| line.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='));
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            sets(line) || line.starts_with(key) && key.starts_with('[') || line.contains(&format!("\"{key}\""))
        })
        .map(|index| index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the shipped population parses and validates.
    #[test]
    fn the_default_population_is_valid() {
        let population = Population::parse(DEFAULT_POPULATION).unwrap();
        assert!(population.accounts >= 10_000, "the default population has at least 10,000 accounts");
    }

    // Proves a population that does not validate is refused with the line and the field named, and that impossible
    // mixes are refused: a rate above 100%, shares that do not add up, an unknown field, a bad range.
    #[test]
    fn bad_populations_name_the_line_and_the_field() {
        let refused = |from: &str, to: &str| {
            assert!(DEFAULT_POPULATION.contains(from), "{from}");
            Population::parse(&DEFAULT_POPULATION.replacen(from, to, 1)).unwrap_err()
        };
        let line = |needle: &str| DEFAULT_POPULATION.lines().position(|line| line.starts_with(needle)).unwrap() + 1;

        let error = refused("mistype_rate = ", "mistype_rate = 1.5 #");
        assert!(
            error.contains("1.5 is not a rate") && error.contains(&format!("line {}", line("mistype_rate"))),
            "{error}"
        );
        assert!(error.contains("mistype_rate"), "{error}");

        let error = refused("share = 0.38", "share = 0.5");
        assert!(error.contains("add up to") && error.contains("line "), "{error}");

        let error = refused("sim_swap = ", "sim_swap = 0.9 #");
        assert!(error.contains("playbooks' shares add up to"), "{error}");

        let error = refused("late_rate = ", "late_rate_typo = ");
        assert!(error.contains("late_rate_typo") && error.contains(&format!("line {}", line("late_rate"))), "{error}");

        let error = refused("react_minutes = [", "react_minutes = [90, 1] #");
        assert!(error.contains("not a range") && error.contains("react_minutes"), "{error}");

        let error = refused("parallel_cases = 3", "parallel_cases = 0");
        assert!(
            error.contains("parallel_cases: 0") && error.contains(&format!("line {}", line("parallel_cases"))),
            "{error}"
        );

        let error = refused("name = \"over three weeks\"", "name = \"busy desk\"");
        assert!(error.contains("two scenarios have this name"), "{error}");

        let error = refused("version = 1", "version = 7");
        assert!(error.contains("line 1") || error.contains("version 7"), "{error}");
    }
}
