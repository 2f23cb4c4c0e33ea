//! Receipts for every executed or rolled-back change (SPEC principle 8), hash-chained: each receipt's hash covers
//! its body and the previous receipt's hash, so editing, inserting or removing a row breaks every hash after it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash the first receipt chains from.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Everything SPEC.md principle 8 lists. Serialized as JSON in field order, which is the canonical form hashed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    pub case_id: String,
    pub kind: String,
    pub account_id: String,
    pub requester: String,
    pub action: String,
    pub action_hash: String,
    /// `record: old -> new` for each change applied.
    pub changes: Vec<String>,
    pub verification: String,
    pub policy: String,
    /// The requester's summary of the conversation, verbatim and untrusted.
    pub conversation_summary: String,
    /// The call that asked for this: the front door's command and the action.
    pub tool_call: String,
    pub approvers: Vec<String>,
    pub requested_at: String,
    pub recorded_at: String,
    pub notifications: Vec<String>,
    pub rollback: String,
}

/// A stored receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub receipt_sequence: u64,
    pub body: ReceiptBody,
    pub previous_hash: String,
    pub hash: String,
}

pub fn canonical(body: &ReceiptBody) -> String {
    serde_json::to_string(body).expect("a receipt body serializes to JSON")
}

pub fn chain_hash(previous_hash: &str, canonical_body: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(previous_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical_body.as_bytes());
    hex::encode(hasher.finalize())
}

/// A place where the stored chain does not hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainBreak {
    pub receipt_sequence: u64,
    pub problem: String,
}

/// Re-derives the chain over stored `(sequence, body text, previous hash, hash)` rows and reports every break.
pub fn verify_chain(rows: &[(u64, String, String, String)]) -> Vec<ChainBreak> {
    let mut breaks = Vec::new();
    let mut expected_previous = GENESIS_HASH.to_string();
    for (sequence, body, previous_hash, hash) in rows {
        if previous_hash != &expected_previous {
            breaks.push(ChainBreak {
                receipt_sequence: *sequence,
                problem: "previous_hash does not match the hash of the receipt before it".to_string(),
            });
        }
        if &chain_hash(previous_hash, body) != hash {
            breaks
                .push(ChainBreak { receipt_sequence: *sequence, problem: "hash does not match the body".to_string() });
        }
        expected_previous = hash.clone();
    }
    breaks
}
