-- Each account's recent requests, counted by the velocity limit and changed only by compare-and-swap on `revision`
-- (ADR 7). Not part of the append-only log: the counts a decision used are recorded in its event.
CREATE TABLE ledgers (
    account_id TEXT    PRIMARY KEY,
    revision   INTEGER NOT NULL,
    body       BLOB    NOT NULL  -- postcard of crate::log::Ledger
);
