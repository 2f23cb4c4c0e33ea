-- The embedded account directory: the records airlock protects and, through its executor alone, changes.
CREATE TABLE accounts (
    account_id             TEXT PRIMARY KEY,
    high_value_reason      TEXT,             -- NULL for a standard account; admin/creator/finance/government/vip
    totp_enrolled_since    INTEGER,          -- ms since the epoch, NULL without TOTP
    last_credential_change INTEGER,
    credential_version     INTEGER NOT NULL DEFAULT 1,
    risk_flags             TEXT    NOT NULL DEFAULT '[]'  -- JSON array of strings
);

CREATE TABLE destinations (
    destination_id TEXT    PRIMARY KEY,
    account_id     TEXT    NOT NULL REFERENCES accounts (account_id),
    kind           TEXT    NOT NULL CHECK (kind IN ('email', 'phone')),
    address        TEXT    NOT NULL,
    trusted_since  INTEGER NOT NULL,
    revoked        INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE sessions (
    session_id TEXT    PRIMARY KEY,
    account_id TEXT    NOT NULL REFERENCES accounts (account_id),
    opened_at  INTEGER NOT NULL,
    revoked_at INTEGER
);

-- Every effect applied, by its idempotency id: applying the same effect again returns the recorded changes.
CREATE TABLE applied_effects (
    effect_id  TEXT    PRIMARY KEY,
    account_id TEXT    NOT NULL,
    changes    TEXT    NOT NULL,  -- JSON array of crate::core::command::Change
    applied_at INTEGER NOT NULL
);

-- The embedded notifier's outbox: what a real deployment would hand to an email or SMS provider.
CREATE TABLE outbox (
    message_id TEXT    PRIMARY KEY,  -- idempotency: '<log sequence>/<destination id>'
    case_id    TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    address    TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    sent_at    INTEGER NOT NULL
);
