-- The projection: derived from the event log, never the source of truth. `airlock replay` rebuilds it.

-- The last log sequence applied, written in the same transaction as the rows it produced (exactly-once).
CREATE TABLE checkpoint (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    last_sequence INTEGER NOT NULL
);
INSERT INTO checkpoint (id, last_sequence) VALUES (1, 0);

CREATE TABLE cases (
    case_id             TEXT    PRIMARY KEY,
    account_id          TEXT    NOT NULL,
    action              TEXT    NOT NULL,  -- JSON of the RecoveryAction
    action_description  TEXT    NOT NULL,
    action_hash         TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    requester           TEXT    NOT NULL,  -- role:id
    summary             TEXT    NOT NULL,  -- untrusted text, verbatim
    signals             TEXT    NOT NULL,  -- JSON
    source_network      TEXT,
    new_destination     TEXT,              -- the address named in an add_destination request
    high_value          INTEGER NOT NULL,
    destinations        TEXT    NOT NULL,  -- JSON map: destination id -> masked address, from the snapshot
    requested_at        INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    deadline            INTEGER,
    cooling_off_ends_at INTEGER,
    challenge_expires_at INTEGER,
    verified_by         TEXT    NOT NULL DEFAULT '[]',  -- JSON destination ids whose code was proven
    decision            TEXT,              -- JSON of the latest PolicyDecision
    approvers           TEXT    NOT NULL DEFAULT '[]',  -- JSON reviewer ids
    notified            TEXT    NOT NULL DEFAULT '[]',  -- JSON destination ids given a cancel link
    authorization       TEXT,              -- 'policy' or 'quorum'
    effect_id           TEXT,
    changes             TEXT    NOT NULL DEFAULT '[]',  -- JSON Change list executed
    executed_at         INTEGER,
    events              INTEGER NOT NULL
);
CREATE INDEX cases_account ON cases (account_id);
CREATE INDEX cases_status ON cases (status);

CREATE TABLE timeline (
    case_id       TEXT    NOT NULL,
    case_sequence INTEGER NOT NULL,
    log_sequence  INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    actor         TEXT    NOT NULL,
    event_type    TEXT    NOT NULL,
    status_after  TEXT    NOT NULL,
    detail        TEXT    NOT NULL,
    PRIMARY KEY (case_id, case_sequence)
);

CREATE TABLE review_queue (
    case_id            TEXT    PRIMARY KEY,
    account_id         TEXT    NOT NULL,
    reason             TEXT    NOT NULL,
    entered_at         INTEGER NOT NULL,
    reviewers_required INTEGER NOT NULL,
    approvals          INTEGER NOT NULL
);

-- Hash-chained receipts: each row carries the hash of the previous one.
CREATE TABLE receipts (
    receipt_sequence INTEGER PRIMARY KEY,
    case_id          TEXT    NOT NULL,
    kind             TEXT    NOT NULL,  -- 'executed' or 'rolled_back'
    body             TEXT    NOT NULL,  -- canonical JSON
    previous_hash    TEXT    NOT NULL,
    hash             TEXT    NOT NULL
);

-- Account-wide facts for the decider: wrong codes, open codes, and request velocity.
CREATE TABLE proof_failures (
    account_id TEXT    NOT NULL,
    case_id    TEXT    NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX proof_failures_account ON proof_failures (account_id, at);

CREATE TABLE requests (
    case_id         TEXT    PRIMARY KEY,
    account_id      TEXT    NOT NULL,
    source_network  TEXT,
    requester       TEXT    NOT NULL,
    new_destination TEXT,
    at              INTEGER NOT NULL
);
CREATE INDEX requests_account ON requests (account_id, at);

CREATE TABLE control (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    halted     INTEGER NOT NULL,
    reason     TEXT,
    changed_at INTEGER,
    version    INTEGER NOT NULL
);
INSERT INTO control (id, halted, version) VALUES (1, 0, 0);
