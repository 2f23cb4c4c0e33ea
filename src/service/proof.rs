//! The owner's proof: the one command whose facts come from what the owner typed. The code is hashed under the
//! case's challenge and goes no further; an authenticator code is checked by the directory, which holds the secret;
//! a sign-in at the company's identity provider arrives sealed by airlock's page. The core learns only the hash and
//! whether the second factor held.

use crate::core::actor::Actor;
use crate::core::command::{Command, CommandEnvelope, CommandKind, SecondFactorCheck};
use crate::core::ids::{CaseId, ChallengeId, CommandId, UnixMs};
use crate::core::rejection::Rejection;
use crate::core::state::{CaseState, Status};
use crate::core::verification::{CodeHash, VerificationCode};
use crate::log::EventLog;
use crate::oidc::StepUp;
use crate::service::{Handled, Service, ServiceError};

/// What an owner gave besides the code: an authenticator app's code, or a sign-in at the company's identity
/// provider sealed by airlock's page (`crate::oidc::StepUp`). Kept out of `Debug`.
#[derive(Clone, Copy, Default)]
pub struct Second<'a> {
    pub totp: Option<&'a str>,
    pub step_up: Option<&'a str>,
}

impl std::fmt::Debug for Second<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Second")
            .field("totp", &self.totp.map(|_| "<redacted>"))
            .field("step_up", &self.step_up.map(|_| "<redacted>"))
            .finish()
    }
}

fn invalid(field: &str, expected: String) -> ServiceError {
    ServiceError::Rejected(Rejection::InvalidValue { field: field.into(), expected })
}

impl<L: EventLog> Service<L> {
    /// The owner's code with, at most, an authenticator app's code: `submit_proof` without a sign-in.
    pub async fn submit_code(
        &self,
        case_id: &CaseId,
        command_id: CommandId,
        actor: Actor,
        typed: &str,
        typed_totp: Option<&str>,
    ) -> Result<Handled, ServiceError> {
        self.submit_proof(case_id, command_id, actor, typed, Second { totp: typed_totp, step_up: None }).await
    }

    /// The owner's code, as typed at the verification page. It is hashed here, under the challenge's id, and the
    /// plain digits go no further. An authenticator code typed with it is checked by the directory, which holds the
    /// secret; the core learns only whether it was valid. A sign-in at the company's identity provider (`step_up`,
    /// sealed by the page that received the provider's answer) counts instead of an authenticator code, when its
    /// subject is the case's account.
    pub async fn submit_proof(
        &self,
        case_id: &CaseId,
        command_id: CommandId,
        actor: Actor,
        typed: &str,
        second: Second<'_>,
    ) -> Result<Handled, ServiceError> {
        let (state, _) = self.load(case_id).await?;
        let step_up = self.open_step_up(case_id, second.step_up)?;
        let code = VerificationCode::parse(typed)
            .ok_or_else(|| invalid("code", format!("{} digits", crate::core::limits::CODE_DIGITS)))?;
        // Without an open challenge any hash will do: decide refuses the command before comparing.
        let challenge_id = state
            .challenge
            .as_ref()
            .map_or_else(|| ChallengeId::new("none"), |challenge| challenge.challenge_id.clone());
        let proof = self.keys.code.hash(&challenge_id, &code);
        let looked_at = self.looked_at(&state, &actor, &command_id, &proof);
        let second_factor = self.second_factor(&state, looked_at, second.totp, step_up).await?;
        let command = Command::SubmitProof { proof, second_factor };
        self.handle(case_id, CommandEnvelope { command_id, actor, command }).await
    }

    /// A step-up that airlock did not seal for this case, or that is too old, is refused before anything is compared:
    /// it proves nothing, and it is not a guess at a factor (nobody can make one without the key).
    fn open_step_up(&self, case_id: &CaseId, sealed: Option<&str>) -> Result<Option<StepUp>, ServiceError> {
        let Some(sealed) = sealed else { return Ok(None) };
        if !self.sign_in_step_up {
            return Err(invalid("step_up", "nothing: this airlock takes no sign-in at an identity provider".into()));
        }
        let opened = StepUp::open(&self.keys, sealed, case_id.as_str(), crate::oidc::wall_clock_ms());
        let minutes = crate::oidc::STEP_UP_TTL_MS / 60_000;
        opened.map(Some).ok_or_else(|| {
            invalid("step_up", format!("a sign-in for this case from the last {minutes} minutes: sign in again"))
        })
    }

    /// Whether `decide` will look at this proof's second factor, so that only such a proof spends an authenticator
    /// code: from a role allowed to prove, for a case waiting for proof, not seen before, with the message's right
    /// code. The message's code is compared first (in constant time, as `decide` compares it again): a mistyped code
    /// must not use up the authenticator code typed with it, or the owner who retypes both within the same 30-second
    /// step is refused for a code they typed right (issue 15, item 17).
    fn looked_at(&self, state: &CaseState, actor: &Actor, command_id: &CommandId, proof: &CodeHash) -> bool {
        let code_right = state.challenge.as_ref().is_some_and(|challenge| {
            !challenge.proven_destinations(proof).is_empty() && self.clock.now() < challenge.expires_at
        });
        CommandKind::SubmitProof.allowed_roles().contains(&actor.role)
            && state.status == Status::Requested
            && code_right
            && !state.has_seen(actor, command_id)
    }

    /// What the proof's second factor came to, for a proof `decide` looks at (`looked_at`); anything else is
    /// `NotGiven`, and no authenticator code is spent on it.
    async fn second_factor(
        &self,
        state: &CaseState,
        looked_at: bool,
        totp: Option<&str>,
        step_up: Option<StepUp>,
    ) -> Result<SecondFactorCheck, ServiceError> {
        let Some(facts) = state.facts.as_ref().filter(|_| looked_at) else { return Ok(SecondFactorCheck::NotGiven) };
        // A directory that cannot check an authenticator code is not asked: the code is no proof, and a change that
        // needs one goes to people (issue 18).
        let checked_by_code =
            self.directory.capabilities().verify_second_factor && facts.snapshot.totp_enrolled_since.is_some();
        match (totp, step_up) {
            // An authenticator the directory shows and checks itself is proven by its code: a sign-in at the provider
            // (of a factor airlock cannot date) does not stand in for it. Refused, not counted.
            (_, Some(_)) if checked_by_code => Err(invalid(
                "step_up",
                "the authenticator app's code instead: this account's is checked by its code".into(),
            )),
            // A sign-in as another account is a wrong second factor, counted like a wrong authenticator code.
            (_, Some(step_up)) => Ok(match step_up.subject == facts.account_id.as_str() {
                true => SecondFactorCheck::SignedIn { auth_time: UnixMs(step_up.auth_time) },
                false => SecondFactorCheck::SignedInAsAnother,
            }),
            (Some(typed), None) if checked_by_code => {
                Ok(self.directory.verify_totp(&facts.account_id, typed, self.clock.now()).await?)
            }
            (_, None) => Ok(SecondFactorCheck::NotGiven),
        }
    }
}
