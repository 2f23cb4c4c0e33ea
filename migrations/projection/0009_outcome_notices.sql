-- How many destinations a case's account had when the case was opened (not revoked, trusted by then): the ones word
-- of its change applied or rolled back goes to (`core::notices::owed_by`). A case with none owes no such word, and is
-- no longer listed in `notices_owed` for it (issue 21: the timers loaded every such case on every tick for the week of
-- the redelivery window, to send nothing). Rows written before this migration cannot be given the count, which is in
-- the request's snapshot in the log: a projection that applied entries at an older schema is set aside and rebuilt
-- from the log when it is opened (`Projection::open`).
ALTER TABLE cases ADD COLUMN pre_existing_destinations INTEGER NOT NULL DEFAULT 0;
