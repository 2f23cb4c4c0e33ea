//! The event log: an append-only store of encoded envelopes, one stream per case plus the control stream, with
//! optimistic concurrency per stream and idempotency per command. The interface deals in bytes so every backend
//! stores exactly what `envelope` encodes; `sqlite` is the embedded backend, and JetStream implements the same trait
//! (subject per stream, `Nats-Expected-Last-Subject-Sequence`, `Nats-Msg-Id`). `tests/log_conformance.rs` is the
//! one suite every backend must pass.

pub mod envelope;
pub mod sqlite;

use envelope::Stream;
use std::future::Future;

/// What an append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// The events were appended; the first one got this global sequence.
    New { first_sequence: u64 },
    /// This command was appended before; nothing was appended now.
    Duplicate,
}

/// Infrastructure errors, each with how the caller should react.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// Another writer appended to the stream first. Re-read the stream, decide again, and retry.
    #[error("stream {stream} is at version {actual}, not {expected}: another writer got there first")]
    Conflict { stream: String, expected: u64, actual: u64 },
    /// The store cannot be reached or refused the write. Retry later with the same command id.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// The store holds something it should not. Stop and alert: this is tampering or a bug.
    #[error("event log corrupt: {0}")]
    Corrupt(String),
}

/// One stored envelope and its global position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub sequence: u64,
    pub bytes: Vec<u8>,
}

pub trait EventLog: Send + Sync {
    /// Appends `envelopes` to `stream` atomically if the stream is at `expected_version` (its number of events).
    /// If `command_id` was appended before, appends nothing and returns `Appended::Duplicate`.
    fn append(
        &self,
        stream: &Stream,
        expected_version: u64,
        command_id: &str,
        envelopes: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<Appended, LogError>> + Send;

    /// Every envelope of one stream, in order.
    fn read_stream(&self, stream: &Stream) -> impl Future<Output = Result<Vec<Entry>, LogError>> + Send;

    /// Up to `limit` envelopes of all streams with a global sequence above `after`, in order (projection, replay).
    fn read_after(&self, after: u64, limit: usize) -> impl Future<Output = Result<Vec<Entry>, LogError>> + Send;

    /// The highest global sequence written, 0 if none.
    fn last_sequence(&self) -> impl Future<Output = Result<u64, LogError>> + Send;
}
