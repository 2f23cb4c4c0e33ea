-- The embedded event log: append-only, one row per appended command (a "commit" holding that decision's events, so
-- a multi-event decision is atomic exactly as one JetStream message is), a global sequence, and the idempotency key
-- of the command.
CREATE TABLE commits (
    sequence   INTEGER PRIMARY KEY AUTOINCREMENT,
    stream     TEXT    NOT NULL,  -- 'case.<case id>' or 'control'
    command_id TEXT    NOT NULL UNIQUE,  -- a retried command appends nothing, however much later it comes
    envelopes  BLOB    NOT NULL   -- crate::log::encode_commit of postcard-encoded envelopes
);
CREATE INDEX commits_stream ON commits (stream, sequence);

-- The log is immutable: SQLite refuses to change or remove a commit, as JetStream's deny_delete/deny_purge do.
CREATE TRIGGER commits_no_update BEFORE UPDATE ON commits
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER commits_no_delete BEFORE DELETE ON commits
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
