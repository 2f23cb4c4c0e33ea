//! Taking a recorded decision again (THREATS 15): the facts and the policy version are in the event, so the loaded
//! policies of that version must give exactly the recorded decision. `airlock case history` does it for one case,
//! `airlock replay --verify` for the whole log.

use crate::core::policy::PolicyDecision;
use crate::policy::Engine;
use std::sync::Arc;

/// What taking a recorded decision again gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Retaken {
    Same,
    /// The loaded policies of the recorded version decide otherwise on the recorded facts.
    Differs(PolicyDecision),
    /// No policies of the recorded version are loaded.
    NotLoaded,
}

/// The policies of every version loaded, to take decisions of any of them again.
#[derive(Clone)]
pub struct Engines(Vec<Arc<Engine>>);

impl Engines {
    /// The shipped policies and any others given (for decisions recorded under earlier versions).
    pub fn with(others: Vec<Arc<Engine>>) -> Engines {
        let mut engines = vec![Engine::shared()];
        for engine in others {
            if engines.iter().all(|loaded| loaded.version() != engine.version()) {
                engines.push(engine);
            }
        }
        Engines(engines)
    }

    pub fn versions(&self) -> Vec<&str> {
        self.0.iter().map(|engine| engine.version()).collect()
    }

    pub fn retake(&self, recorded: &PolicyDecision) -> Retaken {
        let Some(engine) = self.0.iter().find(|engine| engine.version() == recorded.policy_version) else {
            return Retaken::NotLoaded;
        };
        let again = engine.evaluate(&recorded.facts);
        if &again == recorded { Retaken::Same } else { Retaken::Differs(again) }
    }
}
