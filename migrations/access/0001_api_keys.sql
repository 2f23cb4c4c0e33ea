-- Per-requester API keys of the HTTP intake (`airlock api-key`). Only the SHA-256 of each key's secret part is kept:
-- the secret is 256 random bits, so a fast hash is enough (no password-stretching needed), and a copy of this file
-- lets nobody send a request. A key is revoked, never deleted, so the file says who could send what, and when.
CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    secret_sha256 BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
CREATE INDEX api_keys_by_requester ON api_keys (requester);
