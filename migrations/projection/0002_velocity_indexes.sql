-- Velocity counts look requests up by requester, source network and named destination inside a time window; without
-- these indexes each count scans every request ever made, and deciding gets slower as history grows.
CREATE INDEX requests_requester ON requests (requester, at);
CREATE INDEX requests_source_network ON requests (source_network, at);
CREATE INDEX requests_new_destination ON requests (new_destination, at);
CREATE INDEX cases_due ON cases (status, deadline);
-- One outstanding code per account: looked up by account, never by status (every open case shares a status, so a
-- status-led plan would scan them all).
CREATE INDEX cases_account_challenge ON cases (account_id, challenge_expires_at);
