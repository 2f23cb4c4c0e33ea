//! Identifiers and time values shared by the whole core. They are plain newtypes: the core never makes an id or
//! reads a clock, so every one of these values is handed in by the shell around it.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub String);

        impl $name {
            /// Wraps a string that the edge has already validated (see `core::text`).
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// One recovery case: the unit of consistency, one event subject per case.
    CaseId
);
string_id!(
    /// The account a case is about, as the account directory names it.
    AccountId
);
string_id!(
    /// Who acted: a support desk, an AI agent, a reviewer, an operator, or airlock itself.
    ActorId
);
string_id!(
    /// One contact destination (an email address or phone number) of an account.
    DestinationId
);
string_id!(
    /// One verification challenge (one code sent to one destination).
    ChallengeId
);
string_id!(
    /// The idempotency key of a command: a retried command with the same id appends nothing.
    CommandId
);
string_id!(
    /// The idempotency key of one effect on the account directory: applying it twice changes nothing.
    EffectId
);

/// A moment, in milliseconds since the Unix epoch. The shell reads the clock; the core only compares these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UnixMs(pub u64);

impl UnixMs {
    /// The moment `duration_ms` after this one, saturating instead of wrapping so a huge policy value cannot
    /// wrap around into the past.
    pub fn plus(self, duration_ms: u64) -> UnixMs {
        UnixMs(self.0.saturating_add(duration_ms))
    }

    /// How long before `later` this moment is, or zero if it is not before it.
    pub fn until(self, later: UnixMs) -> u64 {
        later.0.saturating_sub(self.0)
    }
}

impl fmt::Display for UnixMs {
    /// RFC 3339 in UTC, to the second. Computed by hand (Howard Hinnant's civil-from-days) so that the core does
    /// not touch `std::time` at all.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0 / 1_000;
        let days = (seconds / 86_400) as i64;
        let second_of_day = seconds % 86_400;
        let shifted = days + 719_468;
        let era = shifted.div_euclid(146_097);
        let day_of_era = shifted.rem_euclid(146_097);
        let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_index = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_index + 2) / 5 + 1;
        let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        write!(
            formatter,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            second_of_day / 3_600,
            (second_of_day / 60) % 60,
            second_of_day % 60
        )
    }
}
