-- The embedded event log: append-only, one row per event, a global sequence, a per-stream version, and the
-- idempotency key of the command that appended it.
CREATE TABLE events (
    sequence       INTEGER PRIMARY KEY AUTOINCREMENT,
    stream         TEXT    NOT NULL,  -- 'case.<case id>' or 'control'
    stream_version INTEGER NOT NULL,  -- 1-based position in the stream: the optimistic-concurrency version
    command_id     TEXT    NOT NULL,
    envelope       BLOB    NOT NULL,  -- postcard-encoded crate::log::envelope::Envelope
    UNIQUE (stream, stream_version)
);

-- One row per appended command: a retried command appends nothing, however much later it comes.
CREATE TABLE commands (
    command_id TEXT    PRIMARY KEY,
    stream     TEXT    NOT NULL,
    sequence   INTEGER NOT NULL
);

-- The log is immutable: SQLite refuses to change or remove an event, as JetStream's deny_delete/deny_purge do.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
