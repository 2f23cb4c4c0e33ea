-- Campaign alerts (issue 20, ADR 25). What the checks count, derived from the log like every other table: each
-- request (or wrong code) that showed an indicator, the request summaries' MinHash signatures and their bands (the
-- phrasing check's candidates), and the alerts stream's alerts with their cases. Hits, signatures and bands older than
-- two days before the newest hit are removed: no check looks back further than a day.
CREATE TABLE campaign_hits (
    check_name   TEXT    NOT NULL,
    indicator    TEXT    NOT NULL,
    case_id      TEXT    NOT NULL,
    account_id   TEXT    NOT NULL,
    at           INTEGER NOT NULL,
    log_sequence INTEGER NOT NULL,
    shown        TEXT    NOT NULL,  -- the indicator as this request wrote it (the key folds look-alike letters)
    PRIMARY KEY (check_name, indicator, case_id)
) WITHOUT ROWID;
CREATE INDEX campaign_hits_by_sequence ON campaign_hits (log_sequence);
CREATE INDEX campaign_hits_by_time ON campaign_hits (at);

CREATE TABLE summary_signatures (
    case_id   TEXT    PRIMARY KEY,
    at        INTEGER NOT NULL,
    signature BLOB    NOT NULL,
    cluster   TEXT    NOT NULL  -- the case whose summary began the group of near-identical ones
) WITHOUT ROWID;
CREATE INDEX summary_signatures_by_time ON summary_signatures (at);

CREATE TABLE summary_bands (
    band_key INTEGER NOT NULL,
    case_id  TEXT    NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (band_key, case_id)
) WITHOUT ROWID;
CREATE INDEX summary_bands_by_time ON summary_bands (at);

CREATE TABLE alerts (
    alert_id            TEXT    PRIMARY KEY,
    check_name          TEXT    NOT NULL,
    indicator           TEXT    NOT NULL,
    shown               TEXT    NOT NULL,
    accounts_min        INTEGER NOT NULL,
    window_ms           INTEGER NOT NULL,
    accounts            INTEGER NOT NULL,
    cases               INTEGER NOT NULL,
    first_at            INTEGER NOT NULL,
    last_at             INTEGER NOT NULL,
    raised_at           INTEGER NOT NULL,
    acknowledged_by     TEXT,
    acknowledged_at     INTEGER,
    acknowledged_reason TEXT,
    benign              INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX alerts_by_indicator ON alerts (check_name, indicator);
CREATE INDEX alerts_by_last ON alerts (last_at);

CREATE TABLE alert_cases (
    alert_id TEXT NOT NULL,
    case_id  TEXT NOT NULL,
    PRIMARY KEY (alert_id, case_id)
) WITHOUT ROWID;
CREATE INDEX alert_cases_by_case ON alert_cases (case_id);
