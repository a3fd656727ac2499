-- Re-wrapping the people's data keys under a new key-encryption key
-- (`saasapi users rewrap-keys`, docs/runbook.md).
--
-- kek_id names the key-encryption key a row is wrapped with (a truncated
-- SHA-256 over it, saasapi.DataKeyring.ID; NULL for rows written before
-- this migration, wrapped with the key of the check value). A rotation
-- re-wraps, batch by batch, every row whose kek_id is not the new key's.
ALTER TABLE person_keys ADD COLUMN kek_id text;

-- next_check_value is the check value of the key a rotation goes to,
-- recorded when it starts and moved into check_value when every person key
-- is re-wrapped: while it is set, a rotation is under way, and only a
-- keyring holding both keys is accepted.
ALTER TABLE data_key_check ADD COLUMN next_check_value bytea;
