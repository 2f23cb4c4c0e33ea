-- Velocity counts come from the request ledgers beside the log, every dimension of them (ADR 8); nothing reads the
-- projection's cases by requester, source network, named destination or account and time any more.
DROP INDEX cases_account_requested;
DROP INDEX cases_requester;
DROP INDEX cases_source_network;
DROP INDEX cases_new_destination;
