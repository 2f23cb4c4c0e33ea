-- Cases that owe their owner a notice not yet delivered (a cancel link, word of a change applied or rolled back), and
-- since when: where the timers look for notices to send again (ADR 10). The case's own events say which notices and to
-- whom; this table only finds the cases. A row is written by the event that owes a notice and removed by the delivery
-- that leaves none owed. Cases from before this migration have no row: their notices were sent at most once.
CREATE TABLE notices_owed (
    case_id     TEXT    PRIMARY KEY,
    owed_since  INTEGER NOT NULL  -- ms since the epoch: the latest event that owed a notice
);
CREATE INDEX notices_owed_since ON notices_owed (owed_since);
