//! Every limit in airlock, in one place, each with the reason for its value. Units come last in the name.
//! Relations between limits are asserted at compile time at the bottom of this file.

pub const SECOND_MS: u64 = 1_000;
pub const MINUTE_MS: u64 = 60 * SECOND_MS;
pub const HOUR_MS: u64 = 60 * MINUTE_MS;
pub const DAY_MS: u64 = 24 * HOUR_MS;

/// Eight decimal digits: 10^8 possibilities against at most `PROOF_ATTEMPTS_PER_ACCOUNT_MAX` guesses gives an
/// attacker a 1 in 20 million chance per window (NIST SP 800-63B asks for at least 20 bits; this is 26.5).
pub const CODE_DIGITS: usize = 8;

/// A code is useful for ten minutes: long enough to read an email, short enough that a leaked inbox later is useless.
pub const CODE_TTL_MS_DEFAULT: u64 = 10 * MINUTE_MS;

/// Wrong codes allowed per account, counted across all of its cases, inside `PROOF_ATTEMPT_WINDOW_MS`: the guessing
/// cap. Counting per account (not per case) stops an attacker from opening many cases to multiply guesses. Reaching
/// it stops codes being compared on the account, and sends its cases to people instead (ADR 14): never a switch that
/// keeps the owner out.
pub const PROOF_ATTEMPTS_PER_ACCOUNT_MAX: u32 = 5;

/// Wrong codes allowed on one case: its third wrong code denies that case alone, so an attacker guessing on their own
/// case ends it without touching the owner's (issue 15, item 7; ADR 14).
pub const PROOF_ATTEMPTS_PER_CASE_MAX: u32 = 3;

const _: () = assert!(PROOF_ATTEMPTS_PER_CASE_MAX <= PROOF_ATTEMPTS_PER_ACCOUNT_MAX);

/// The window over which failed proofs of one account are counted.
pub const PROOF_ATTEMPT_WINDOW_MS: u64 = DAY_MS;

/// A destination must have been trusted this long before a request to receive a code for it. A destination
/// added by an attacker shortly before asking for a reset is therefore never challenged (SPEC principle 2).
pub const DESTINATION_AGE_MS_MIN_DEFAULT: u64 = 7 * DAY_MS;

/// The floor under any cooling-off period, whatever a policy returns: an authorized change always waits at least
/// this long so the owner's old destinations have time to object.
pub const COOLING_OFF_MS_MIN: u64 = HOUR_MS;

/// A new destination is never usable before this cooling-off (SPEC principle 5; the default policy uses it).
pub const NEW_DESTINATION_COOLING_OFF_MS_MIN: u64 = 72 * HOUR_MS;

/// A policy may not ask for more than this; a longer hold is a denial in disguise and should be one.
pub const COOLING_OFF_MS_MAX: u64 = 30 * DAY_MS;

/// How long a case may stay `requested` (waiting for proof) before it expires.
pub const REQUESTED_TTL_MS: u64 = DAY_MS;

/// How long the set-password link of an applied reset can be used, from the reset (issue 18, item 5): long enough to
/// read a message, short enough that an old mailbox's archive is no standing key to the account.
pub const SET_PASSWORD_LINK_TTL_MS: u64 = 2 * 60 * MINUTE_MS;

/// How long a case may wait for reviewers before it expires.
pub const IN_REVIEW_TTL_MS: u64 = 7 * DAY_MS;

/// How long past its end a cooling-off may wait (for example while the kill switch is on) before the case expires
/// instead of executing a change nobody has looked at for a week.
pub const COOLING_OFF_GRACE_MS: u64 = 7 * DAY_MS;

/// High-value accounts need at least this many distinct reviewers, whatever a policy says (SPEC principle 6).
pub const HIGH_VALUE_REVIEWERS_MIN: u8 = 2;

/// How long one reviewer's approval counts towards a quorum: a second reviewer must agree within this time of the
/// first, or the first must approve again (issue 5: an approval expires).
pub const REVIEW_APPROVAL_TTL_MS: u64 = DAY_MS;

/// No policy may ask for more reviewers than this; more would make a case unapprovable in practice.
pub const REVIEWERS_MAX: u8 = 5;

/// Refused commands are recorded on the case up to this many times, so that a flood of refused attempts is visible
/// but cannot grow a case's history without bound. Later refusals are still answered, but no longer recorded.
pub const REFUSALS_RECORDED_PER_CASE_MAX: u32 = 64;

/// The requester's free-text summary: enough for a conversation summary, bounded so it cannot flood storage.
pub const SUMMARY_BYTES_MAX: usize = 4_096;

/// A reason given by a reviewer or operator.
pub const REASON_BYTES_MAX: usize = 1_024;

/// Identifiers (accounts, actors, cases, destinations).
pub const ID_BYTES_MAX: usize = 128;

/// An email address or phone number (RFC 5321 caps a forward path at 256 octets including brackets).
pub const ADDRESS_BYTES_MAX: usize = 254;

/// A network signal value (a network name, a region, a device label).
pub const SIGNAL_BYTES_MAX: usize = 128;

/// Destinations in one account snapshot; a directory returning more is treated as corrupt.
pub const DESTINATIONS_PER_ACCOUNT_MAX: usize = 16;

/// One encoded event envelope. Events are small; anything larger is a bug or an attack.
pub const EVENT_BYTES_MAX: usize = 64 * 1024;

/// One JSON command from outside. Larger input is refused before parsing.
pub const COMMAND_BYTES_MAX: usize = 16 * 1024;

/// Velocity counts saturate here: a policy only needs to know whether a threshold was crossed, and a bounded count
/// keeps each request ledger (ADR 8) at most this many entries plus one, however busy a requester or network is.
pub const VELOCITY_COUNT_MAX: u32 = 256;

/// How many times a change may fail to apply before the case is denied. Each failure goes back to review.
pub const EXECUTION_ATTEMPTS_MAX: u32 = 3;

/// How long the executor keeps trying a directory that gives no usable answer (unreachable, or answers it cannot
/// read) before it ends the attempt as failed and sends the case to people, saying the change may or may not have
/// been applied. The timers try again on every tick until then.
pub const EXECUTION_UNCONFIRMED_MS: u64 = HOUR_MS;

/// Events in one case: every source of events is bounded (attempts, approvals, refusals), so a case longer than
/// this is corrupt.
pub const EVENTS_PER_CASE_MAX: usize = 256;

const _: () = assert!(COOLING_OFF_MS_MIN <= NEW_DESTINATION_COOLING_OFF_MS_MIN);
const _: () = assert!(NEW_DESTINATION_COOLING_OFF_MS_MIN <= COOLING_OFF_MS_MAX);
const _: () = assert!(CODE_TTL_MS_DEFAULT < REQUESTED_TTL_MS);
const _: () = assert!(HIGH_VALUE_REVIEWERS_MIN <= REVIEWERS_MAX);
const _: () = assert!(CODE_DIGITS >= 8);
const _: () = assert!(SUMMARY_BYTES_MAX + 4 * REASON_BYTES_MAX < COMMAND_BYTES_MAX);
// The longest history a case can have: a request, its challenge and failed proofs, then per execution attempt a
// review round (approvals plus cooling-off, start, outcome), then terminal events, plus the recorded refusals.
const _: () = assert!(
    (REFUSALS_RECORDED_PER_CASE_MAX as usize)
        + 4
        + (PROOF_ATTEMPTS_PER_ACCOUNT_MAX as usize)
        + (EXECUTION_ATTEMPTS_MAX as usize + 1) * (REVIEWERS_MAX as usize + 4)
        + 4
        < EVENTS_PER_CASE_MAX
);

/// An authenticator (TOTP, RFC 6238) code's time step: the RFC's and every authenticator app's default.
pub const TOTP_STEP_MS: u64 = 30_000;

/// Digits of an authenticator code, as authenticator apps show them.
pub const TOTP_DIGITS: usize = 6;

/// Steps either side of now an authenticator code is accepted from (RFC 6238 section 5.2 allows for clock drift and
/// typing time; one step is its recommendation).
pub const TOTP_SKEW_STEPS_MAX: u64 = 1;

/// Bytes of an authenticator secret: at least the RFC 4226 minimum of 128 bits, at most a SHA-512 block.
pub const TOTP_SECRET_BYTES_MIN: usize = 16;
pub const TOTP_SECRET_BYTES_MAX: usize = 64;

/// How long a notice stays with the process that owes it (to send and record) before another process's timers send it
/// again (ADR 10). Longer than one message's send may take (the SMTP timeout is at most a minute), so that a copy is
/// rare.
pub const NOTICE_RESEND_AFTER_MS: u64 = 2 * MINUTE_MS;

/// The first pause before a notice that failed is sent again; it doubles with each failure up to
/// `NOTICE_RETRY_MS_MAX`.
pub const NOTICE_RETRY_MS_MIN: u64 = 5 * SECOND_MS;
pub const NOTICE_RETRY_MS_MAX: u64 = HOUR_MS;

/// How long an owed notice is sent again before it is given up. It stays owed in its case's events, where the case
/// history shows it.
pub const NOTICE_REDELIVERY_WINDOW_MS: u64 = 7 * DAY_MS;

/// How many owed notices one tick of the timers sends again at most, so that a mail server timing out cannot hold
/// the timers for long.
pub const NOTICE_RESENDS_PER_TICK_MAX: usize = 64;
