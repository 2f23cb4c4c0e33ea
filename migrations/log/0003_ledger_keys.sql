-- Request ledgers count source networks, requesters and destinations too (ADR 8): the key names what a ledger counts
-- (`crate::log::LedgerKey::storage_key`). An account's key is its id in hex, as the key-value bucket has always had it.
ALTER TABLE ledgers RENAME COLUMN account_id TO key;
UPDATE ledgers SET key = lower(hex(key));
