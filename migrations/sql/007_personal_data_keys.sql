-- Personal data keys (docs/adr/0011-personal-data-encrypted-per-person.md).
-- One data key per person, wrapped by the key-encryption key that only the
-- process holds (SAAS_API_DATA_KEY). Unlike events, this table is mutable:
-- erasing a person deletes their row, which makes their sealed event fields
-- unreadable. Rebuilds never touch it.
CREATE TABLE person_keys (
    user_id     text COLLATE "C" PRIMARY KEY,
    wrapped_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The key check value: a constant sealed with the key-encryption key the
-- first time the service starts, so that a later start with another key is
-- refused instead of failing to open data. One row.
CREATE TABLE data_key_check (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    check_value bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- An erased user's row is a tombstone: the ID stays for references, the
-- email and display name go.
ALTER TABLE users ALTER COLUMN email DROP NOT NULL;
ALTER TABLE users ALTER COLUMN display_name DROP NOT NULL;

GRANT SELECT, INSERT, DELETE ON person_keys TO saas_api_app;
GRANT SELECT, INSERT ON data_key_check TO saas_api_app;
-- Erasure deletes the person's credentials.
GRANT DELETE ON user_credentials TO saas_api_app;
