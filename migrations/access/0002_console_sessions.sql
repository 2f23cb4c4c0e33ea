-- Sessions of the reviewers' and operators' console (issue 19). Only the SHA-256 of each session's token is kept (the
-- token is 256 random bits, so a copy of this file opens no session); a session ends when its person signs out, after
-- `IDLE_MS` without a request, or `ABSOLUTE_MS` after sign-in, whichever comes first.
CREATE TABLE console_sessions (
    token_sha256 BLOB PRIMARY KEY,
    person TEXT NOT NULL,
    roles TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    ended_at_ms INTEGER
);
