//! The wire: the JSON commands that outside systems (support desks, AI agents, the verification page, reviewer and
//! operator consoles) send to airlock, kept apart from the core's domain types (STYLE habit 4). `parse` turns bytes
//! into a versioned wire struct; each struct's `to_core` checks every field and turns it into core values. The JSON
//! Schemas in `schemas/` are generated from these types by `schemas`, and a test keeps the files in step.
//!
//! Architecture invariant: the actor is never read from the JSON. Who sent a command, and in which role, comes from
//! the authenticated channel it arrived on.

mod commands;
mod convert;
mod parse;
mod secret;

pub use commands::{
    AcknowledgeAlertV1, ActionV1, CancelV1, DecisionV1, DestinationKindV1, HaltV1, RequestRecoveryV1, ResumeV1,
    ReviewDecisionV1, RollBackV1, SignalsV1, SubmitProofV1,
};
pub use convert::{CaseCommand, SubmittedProof};
pub use parse::{WireError, parse};
pub use secret::{CODE_LIKE_DIGITS_MIN, looks_like_code};

/// The command version this build reads. A command must declare it in its `version` field; when version 2 exists,
/// version 1 is upcast to it in `parse`, and older schemas stay in `schemas/`.
pub const COMMAND_VERSION_CURRENT: u16 = 1;

/// One JSON Schema per command, with the file name it is published under in `schemas/`.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("request_recovery.v1.schema.json", schema::<RequestRecoveryV1>()),
        ("submit_proof.v1.schema.json", schema::<SubmitProofV1>()),
        ("review_decision.v1.schema.json", schema::<ReviewDecisionV1>()),
        ("cancel.v1.schema.json", schema::<CancelV1>()),
        ("roll_back.v1.schema.json", schema::<RollBackV1>()),
        ("halt.v1.schema.json", schema::<HaltV1>()),
        ("resume.v1.schema.json", schema::<ResumeV1>()),
        ("acknowledge_alert.v1.schema.json", schema::<AcknowledgeAlertV1>()),
        ("directory_import.v1.schema.json", schema::<crate::directory::import::DirectoryImportV1>()),
    ]
}

fn schema<T: schemars::JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T)).expect("a generated schema is plain JSON")
}
