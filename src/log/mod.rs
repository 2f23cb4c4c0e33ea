//! The event log: an append-only store of encoded envelopes, one stream per case plus the control stream, with
//! optimistic concurrency per stream and idempotency per command. The interface deals in bytes so every backend
//! stores exactly what `envelope` encodes. One append is one *commit*: the envelopes one decision produced, stored
//! atomically under one global sequence (one SQLite row, one JetStream message). `sqlite` is the embedded backend,
//! `jetstream` the production one (subject per stream, `Nats-Expected-Last-Subject-Sequence`, `Nats-Msg-Id`);
//! `tests/store/log_conformance.rs` is the one suite both must pass.

pub mod envelope;
pub mod jetstream;
pub mod sqlite;
mod upcast;

use envelope::Stream;
use futures::{Stream as AsyncStream, StreamExt};
use std::future::Future;

/// Commits per read when `read_range` is built on `read_after`.
const RANGE_READ_BATCH_MAX: usize = 1_024;

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
    /// Another writer appended to the stream first: its last commit is at `actual`, not `expected`. Re-read the
    /// stream, decide again, and retry.
    #[error("stream {stream} ends at sequence {actual}, not {expected}: another writer got there first")]
    Conflict { stream: String, expected: u64, actual: u64 },
    /// The store cannot be reached or refused the write. Retry later with the same command id.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// The store holds something it should not. Stop and alert: this is tampering or a bug.
    #[error("event log corrupt: {0}")]
    Corrupt(String),
    /// The store exists with a configuration airlock refuses (for example a stream that allows deletes). Fix the
    /// configuration; retrying will not help.
    #[error("event log misconfigured: {0}")]
    Misconfigured(String),
}

/// One stored commit: the envelopes of one decision, and the commit's global position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub sequence: u64,
    pub envelopes: Vec<Vec<u8>>,
}

/// The most envelopes one commit may hold: a decision appends at most a handful of events.
pub const ENVELOPES_PER_COMMIT_MAX: usize = 8;

/// Encodes one commit's envelopes for storage (the SQLite blob, the JetStream message payload).
pub fn encode_commit(envelopes: &[Vec<u8>]) -> Vec<u8> {
    assert!(!envelopes.is_empty() && envelopes.len() <= ENVELOPES_PER_COMMIT_MAX, "a commit holds 1 to 8 events");
    // As runs of bytes (`serde_bytes`): the same stored format as a sequence of `u8`, encoded and decoded at once.
    let envelopes: Vec<&serde_bytes::Bytes> =
        envelopes.iter().map(|envelope| serde_bytes::Bytes::new(envelope)).collect();
    postcard::to_stdvec(&envelopes).expect("postcard encodes byte vectors without failing")
}

/// Decodes a stored commit, refusing anything larger than a commit can be.
pub fn decode_commit(bytes: &[u8]) -> Result<Vec<Vec<u8>>, LogError> {
    let bytes_max = ENVELOPES_PER_COMMIT_MAX * (crate::core::limits::EVENT_BYTES_MAX + 8);
    if bytes.len() > bytes_max {
        return Err(LogError::Corrupt(format!("a commit of {} bytes is over the {bytes_max} byte limit", bytes.len())));
    }
    let envelopes: Vec<serde_bytes::ByteBuf> =
        postcard::from_bytes(bytes).map_err(|error| LogError::Corrupt(format!("a commit does not decode: {error}")))?;
    if envelopes.is_empty() || envelopes.len() > ENVELOPES_PER_COMMIT_MAX {
        return Err(LogError::Corrupt(format!("a commit holds {} events", envelopes.len())));
    }
    Ok(envelopes.into_iter().map(serde_bytes::ByteBuf::into_vec).collect())
}

/// What a request ledger counts the requests of: each velocity dimension keeps one ledger per value (ADR 7 for the
/// account, ADR 8 for the others). Values are as the service normalised them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LedgerKey {
    Account(String),
    SourceNetwork(String),
    Requester(String),
    Destination(String),
    /// The registrable domain of a named email address (`evil.example` for `x@mail.evil.example`).
    DestinationDomain(String),
    /// The wrong codes submitted for an account's cases: one entry per refused proof (THREATS 7).
    ProofFailures(String),
    /// When airlock first saw each destination of an account whose directory keeps no age per destination (issue 18,
    /// item 4): one entry per destination, its `case_id` the destination's fingerprint, its `at_ms` the first sight.
    FirstSeen(String),
}

impl LedgerKey {
    /// The key as both backends store it: the value in hex (values may hold characters a key-value key may not),
    /// after the dimension's name and a dot. An account's key has no prefix: account ledgers were stored that way
    /// before the other dimensions had ledgers. Hex has no dot, so no two keys of different dimensions are equal.
    pub fn storage_key(&self) -> String {
        match self {
            LedgerKey::Account(value) => hex::encode(value.as_bytes()),
            LedgerKey::SourceNetwork(value) => format!("network.{}", hex::encode(value.as_bytes())),
            LedgerKey::Requester(value) => format!("requester.{}", hex::encode(value.as_bytes())),
            LedgerKey::Destination(value) => format!("destination.{}", hex::encode(value.as_bytes())),
            LedgerKey::DestinationDomain(value) => format!("domain.{}", hex::encode(value.as_bytes())),
            LedgerKey::ProofFailures(value) => format!("failures.{}", hex::encode(value.as_bytes())),
            LedgerKey::FirstSeen(value) => format!("firstseen.{}", hex::encode(value.as_bytes())),
        }
    }
}

impl std::fmt::Display for LedgerKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerKey::Account(value) => write!(formatter, "account {value}"),
            LedgerKey::SourceNetwork(value) => write!(formatter, "source network {value}"),
            LedgerKey::Requester(value) => write!(formatter, "requester {value}"),
            LedgerKey::Destination(value) => write!(formatter, "destination {value}"),
            LedgerKey::DestinationDomain(value) => write!(formatter, "destination domain {value}"),
            LedgerKey::ProofFailures(value) => write!(formatter, "proof failures of account {value}"),
            LedgerKey::FirstSeen(value) => write!(formatter, "destinations first seen of account {value}"),
        }
    }
}

/// The recent requests of one account, source network, requester or destination: the ones its velocity limit counts
/// (ADR 7, ADR 8). It lives beside the log and changes only by compare-and-swap on its revision, so two decisions can
/// never be taken on the same count, whichever airlock process takes them. It only ever over-counts: a request is
/// written here before its case is appended.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ledger {
    pub requests: Vec<LedgerEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LedgerEntry {
    /// The request's case id; in a proof-failure ledger, `<case id>/<command id>` of the refused proof.
    pub case_id: String,
    pub at_ms: u64,
    /// When the code this request's case was sent expires, if it was sent one: the account's ledger makes "one
    /// outstanding code per account" exact too.
    pub code_until_ms: Option<u64>,
    /// The count this request was decided on: the requests before it in the ledger when it was admitted. A request
    /// decided again (its case append lost a race) keeps this count, whatever has left the ledger since.
    pub count: u32,
}

/// The first version of an entry, without its count.
#[derive(serde::Deserialize)]
struct LedgerEntryV1 {
    case_id: String,
    at_ms: u64,
    code_until_ms: Option<u64>,
}

/// What a ledger in the current format starts with. A first-format ledger starts with the varint of its length, at
/// most `VELOCITY_COUNT_MAX + 1`; these two bytes are the varint of 383, which no first-format ledger can start with.
const LEDGER_FORMAT_2: [u8; 2] = [0xFF, 0x02];
const _: () = assert!(crate::core::limits::VELOCITY_COUNT_MAX + 1 < 383);

impl Ledger {
    /// The ledger's bytes as stored: a format marker, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_extend(self, LEDGER_FORMAT_2.to_vec()).expect("postcard encodes plain data")
    }

    /// Reads either format. A first-format entry's count is taken to be its place in the ledger, which is what it was
    /// admitted at unless older entries were dropped since (then it is lower: only a request still being decided
    /// when the format changed could be affected).
    pub fn decode(bytes: &[u8]) -> Result<Ledger, LogError> {
        let corrupt = |error: postcard::Error| LogError::Corrupt(format!("a request ledger does not decode: {error}"));
        if let Some(body) = bytes.strip_prefix(&LEDGER_FORMAT_2) {
            return postcard::from_bytes(body).map_err(corrupt);
        }
        let entries: Vec<LedgerEntryV1> = postcard::from_bytes(bytes).map_err(corrupt)?;
        let requests = entries
            .into_iter()
            .enumerate()
            .map(|(place, entry)| LedgerEntry {
                case_id: entry.case_id,
                at_ms: entry.at_ms,
                code_until_ms: entry.code_until_ms,
                count: place as u32,
            })
            .collect();
        Ok(Ledger { requests })
    }
}

pub trait EventLog: Send + Sync {
    /// Appends `envelopes` to `stream` as one atomic commit if the stream's last commit is at global sequence
    /// `expected_last` (0: the stream is empty). If `command_id` was appended before, appends nothing and returns
    /// `Appended::Duplicate`.
    fn append(
        &self,
        stream: &Stream,
        expected_last: u64,
        command_id: &str,
        envelopes: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<Appended, LogError>> + Send;

    /// Every commit of one stream, in order, as the authority (the stream leader) has it.
    fn read_stream(&self, stream: &Stream) -> impl Future<Output = Result<Vec<Entry>, LogError>> + Send;

    /// `read_stream`, from whichever copy answers fastest; it may lag the authority by a moment. Safe for a writer's
    /// first attempt: an append decided on a stale read fails its expected-position check, and the writer then
    /// re-reads with `read_stream`.
    fn read_stream_fast(&self, stream: &Stream) -> impl Future<Output = Result<Vec<Entry>, LogError>> + Send {
        self.read_stream(stream)
    }

    /// Up to `limit` commits of all streams with a global sequence above `after`, in order (projection, replay); fewer
    /// only when the read reached the log's end as it was during the call.
    fn read_after(&self, after: u64, limit: usize) -> impl Future<Output = Result<Vec<Entry>, LogError>> + Send;

    /// Every commit with a global sequence above `after` and at most `until`, in order, as they arrive: one continuous
    /// read, so that a consumer (a replay) can work on the first commits while the rest are on their way. Ends after
    /// `until` or at the end of the log, whichever comes first. Built on `read_after` unless a backend has better.
    fn read_range(&self, after: u64, until: u64) -> impl AsyncStream<Item = Result<Entry, LogError>> + Send + '_
    where
        Self: Sized,
    {
        futures::stream::unfold(Some(after), move |position| async move {
            let after = position.filter(|after| *after < until)?;
            match self.read_after(after, RANGE_READ_BATCH_MAX).await {
                Ok(mut batch) => {
                    batch.retain(|entry| entry.sequence <= until);
                    let next = batch.last().map(|entry| entry.sequence);
                    (!batch.is_empty()).then(|| (batch.into_iter().map(Ok).collect::<Vec<_>>(), next))
                }
                Err(error) => Some((vec![Err(error)], None)),
            }
        })
        .flat_map(futures::stream::iter)
    }

    /// The highest global sequence written, 0 if none.
    fn last_sequence(&self) -> impl Future<Output = Result<u64, LogError>> + Send;

    /// A request ledger and its revision (0 when it has none yet).
    fn ledger(&self, key: &LedgerKey) -> impl Future<Output = Result<(u64, Ledger), LogError>> + Send;

    /// Replaces a ledger if it is still at `revision` and returns its new revision (what `ledger` reads next, until
    /// another writer changes it); `LogError::Conflict` if another writer changed it.
    fn put_ledger(
        &self,
        key: &LedgerKey,
        revision: u64,
        ledger: &Ledger,
    ) -> impl Future<Output = Result<u64, LogError>> + Send;
}

/// A case's state folded from its events in `log`, for readers outside the service (the evidence packet of a
/// command reading an embedded store).
pub async fn case_state<L: EventLog>(
    log: &L,
    case_id: &crate::core::ids::CaseId,
) -> Result<crate::core::state::CaseState, String> {
    let entries = log.read_stream(&Stream::Case(case_id.clone())).await.map_err(|error| error.to_string())?;
    let mut events = Vec::new();
    for bytes in entries.iter().flat_map(|entry| &entry.envelopes) {
        match envelope::decode(bytes).map_err(|error| error.to_string())? {
            envelope::Decoded::Case { event, .. } => events.push(event),
            envelope::Decoded::Control { .. } | envelope::Decoded::Alert { .. } => {
                return Err("a control or alert event in a case stream".to_string());
            }
        }
    }
    crate::core::state::fold(&events).map_err(|error| error.to_string())
}

/// The control stream folded (the kill switch and the attested baselines), its number of events, and the sequence of
/// its last commit: for the service and for readers outside it (a case's history).
pub async fn control_state<L: EventLog>(log: &L) -> Result<(crate::core::control::ControlState, u64, u64), LogError> {
    let (events, last_sequence) = read_control(log).await?;
    let count = events.len() as u64;
    let state = events.iter().fold(crate::core::control::ControlState::default(), crate::core::control::evolve_control);
    Ok((state, count, last_sequence))
}

/// The control stream's events, oldest first (who pulled the kill switch, when and why; the baselines).
pub async fn control_events<L: EventLog>(log: &L) -> Result<Vec<crate::core::control::ControlEvent>, LogError> {
    Ok(read_control(log).await?.0)
}

async fn read_control<L: EventLog>(log: &L) -> Result<(Vec<crate::core::control::ControlEvent>, u64), LogError> {
    let entries = log.read_stream(&Stream::Control).await?;
    let mut events = Vec::new();
    for bytes in entries.iter().flat_map(|entry| &entry.envelopes) {
        match envelope::decode(bytes).map_err(|error| LogError::Corrupt(error.to_string()))? {
            envelope::Decoded::Control { event, .. } => events.push(event),
            envelope::Decoded::Case { .. } | envelope::Decoded::Alert { .. } => {
                return Err(LogError::Corrupt("a case or alert event in the control stream".into()));
            }
        }
    }
    Ok((events, entries.last().map_or(0, |entry| entry.sequence)))
}

/// The alerts stream folded, its number of events, and the sequence of its last commit (the expected position of
/// the next append).
pub async fn alerts_state<L: EventLog>(log: &L) -> Result<(crate::core::campaign::AlertsState, u64, u64), LogError> {
    let entries = log.read_stream(&Stream::Alerts).await?;
    let mut state = crate::core::campaign::AlertsState::default();
    let mut count = 0;
    for bytes in entries.iter().flat_map(|entry| &entry.envelopes) {
        match envelope::decode(bytes).map_err(|error| LogError::Corrupt(error.to_string()))? {
            envelope::Decoded::Alert { event, .. } => state = state.evolve(&event),
            envelope::Decoded::Case { .. } | envelope::Decoded::Control { .. } => {
                return Err(LogError::Corrupt("a case or control event in the alerts stream".into()));
            }
        }
        count += 1;
    }
    Ok((state, count, entries.last().map_or(0, |entry| entry.sequence)))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves commits and envelopes read and write byte runs (serde_bytes) in exactly the stored format of the byte
    // sequences written before: a commit encoded either way is the same bytes, and decodes to the same envelopes.
    #[test]
    fn byte_runs_keep_the_stored_format() {
        let envelopes = vec![vec![0u8, 1, 2, 255], (0..=255).collect::<Vec<u8>>(), vec![7; 300]];
        let as_sequences = postcard::to_stdvec(&envelopes).unwrap();
        assert_eq!(encode_commit(&envelopes), as_sequences);
        assert_eq!(decode_commit(&as_sequences).unwrap(), envelopes);

        #[derive(serde::Serialize)]
        struct OldEnvelope {
            event_type: String,
            version: u16,
            stream: envelope::Stream,
            stream_version: u64,
            at: crate::core::ids::UnixMs,
            actor: crate::core::actor::Actor,
            command_id: crate::core::ids::CommandId,
            payload: Vec<u8>,
        }
        let old = OldEnvelope {
            event_type: "recovery_requested".into(),
            version: 3,
            stream: envelope::Stream::Control,
            stream_version: 9,
            at: crate::core::ids::UnixMs(1_700_000_000_000),
            actor: crate::core::actor::Actor::system(),
            command_id: crate::core::ids::CommandId::new("c-1"),
            payload: (0..200).map(|byte| byte as u8).collect(),
        };
        let new = envelope::Envelope {
            event_type: old.event_type.clone(),
            version: old.version,
            stream: envelope::Stream::Control,
            stream_version: old.stream_version,
            at: old.at,
            actor: old.actor.clone(),
            command_id: old.command_id.clone(),
            payload: old.payload.clone(),
        };
        let old_bytes = postcard::to_stdvec(&old).unwrap();
        assert_eq!(postcard::to_stdvec(&new).unwrap(), old_bytes);
        assert_eq!(postcard::from_bytes::<envelope::Envelope>(&old_bytes).unwrap(), new);
    }
}
