-- Accounts whose security settings are frozen because a verified recovery is pending (cooling off, in review after
-- proof, or executing): nothing but that case's own effect may change them until it ends.
CREATE TABLE holds (
    account_id TEXT NOT NULL,
    case_id    TEXT NOT NULL,
    held_at    INTEGER NOT NULL,
    PRIMARY KEY (account_id, case_id)
);
