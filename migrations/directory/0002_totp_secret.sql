-- The authenticator app's shared secret (TOTP, RFC 6238) and the last time step a code was accepted at, so that a
-- code is accepted once. The secret never leaves the directory: airlock's events record only that a code was valid.
ALTER TABLE accounts ADD COLUMN totp_secret BLOB;
ALTER TABLE accounts ADD COLUMN totp_last_step INTEGER;
