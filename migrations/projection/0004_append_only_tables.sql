-- Faster rebuilds and lighter writes, same facts.
--
-- `cases_account` and `cases_status` are the leading columns of `cases_account_challenge` and `cases_due`, which serve
-- every lookup they did; keeping them only cost a write per change and a sort per rebuild.
DROP INDEX cases_account;
DROP INDEX cases_status;

-- The timeline is only ever appended to. As an ordinary table with a unique index (instead of a primary key, which
-- SQLite keeps as an index a rebuild cannot drop) each insert is an append, and a rebuild builds the index once,
-- sorted, at the end. Uniqueness is enforced exactly as before.
CREATE TABLE timeline_v4 (
    case_id       TEXT    NOT NULL,
    case_sequence INTEGER NOT NULL,
    log_sequence  INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    actor         TEXT    NOT NULL,
    event_type    TEXT    NOT NULL,
    status_after  TEXT    NOT NULL,
    detail        TEXT    NOT NULL
);
INSERT INTO timeline_v4 (case_id, case_sequence, log_sequence, at, actor, event_type, status_after, detail)
    SELECT case_id, case_sequence, log_sequence, at, actor, event_type, status_after, detail
    FROM timeline ORDER BY log_sequence, case_sequence;
DROP TABLE timeline;
ALTER TABLE timeline_v4 RENAME TO timeline;
CREATE UNIQUE INDEX timeline_case ON timeline (case_id, case_sequence);

-- `requests` held one row per case, copying five of the case's own columns, so that velocity counts had indexes to
-- use. The indexes now live on `cases` itself and the copy is gone: one row less to write per request. A request
-- names a source network or a new destination only sometimes, and is only ever counted by one it names, so those two
-- indexes hold only the requests that name one.
DROP TABLE requests;
CREATE INDEX cases_account_requested ON cases (account_id, requested_at);
CREATE INDEX cases_requester ON cases (requester, requested_at);
CREATE INDEX cases_source_network ON cases (source_network, requested_at) WHERE source_network IS NOT NULL;
CREATE INDEX cases_new_destination ON cases (new_destination, requested_at) WHERE new_destination IS NOT NULL;
