-- Webhook delivery in the embedded store (issue 20, item 2): how far each endpoint has been delivered, and the
-- documents given up after their last attempt (bounded per endpoint).
CREATE TABLE webhook_cursors (
    endpoint TEXT PRIMARY KEY,
    -- The last document delivered (or given up): its commit's global sequence and its place in the commit.
    sequence INTEGER NOT NULL,
    place INTEGER NOT NULL,
    origin TEXT NOT NULL
);

CREATE TABLE webhook_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint TEXT NOT NULL,
    event_id TEXT NOT NULL,
    -- The dead letter as JSON (`outward::webhook::DeadLetter`): never the document, never a secret.
    record TEXT NOT NULL
);

CREATE INDEX webhook_dead_letters_by_endpoint ON webhook_dead_letters (endpoint, id);
