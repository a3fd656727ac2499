-- Sealing the personal data that earlier versions stored in plain text
-- (docs/adr/0011-personal-data-encrypted-per-person.md, "Events written
-- before sealing"; `saasapi users seal-legacy`).
--
-- The append-only rule stays; it gains one narrow exception. An UPDATE of
-- events or ledger_tree_hashes passes the trigger only when all of these hold:
--   * the transaction set saasapi.resealing to 'on' locally
--     (set_config('saasapi.resealing', 'on', true), gone at its end);
--   * the current role is the table's owner or a member of it (the role that
--     migrates; the application role is not, and it lacks the UPDATE
--     privilege anyway, which is checked before any trigger);
--   * on events, only payload, prev_hash and hash change; on
--     ledger_tree_hashes, only hash.
-- DELETE and TRUNCATE are refused as before, whoever asks. ALTER TABLE ...
-- DISABLE TRIGGER was not used because it takes an exclusive lock on the
-- table and stops every writer for as long as the command runs.
CREATE OR REPLACE FUNCTION events_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
        AND current_setting('saasapi.resealing', true) = 'on'
        AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE')
    THEN
        -- Nested: PL/pgSQL prepares a condition as a whole, and NEW of
        -- one table has no fields of the other.
        IF TG_TABLE_NAME = 'events' THEN
            IF (NEW.position, NEW.event_id, NEW.ledger_id, NEW.ledger_type, NEW.sequence, NEW.stream_type,
                NEW.stream_id, NEW.stream_version, NEW.event_type, NEW.schema_version, NEW.actor_type,
                NEW.actor_user_id, NEW.actor_api_key_id, NEW.request_id, NEW.occurred_at)
               IS NOT DISTINCT FROM
               (OLD.position, OLD.event_id, OLD.ledger_id, OLD.ledger_type, OLD.sequence, OLD.stream_type,
                OLD.stream_id, OLD.stream_version, OLD.event_type, OLD.schema_version, OLD.actor_type,
                OLD.actor_user_id, OLD.actor_api_key_id, OLD.request_id, OLD.occurred_at)
            THEN
                RETURN NEW;
            END IF;
        ELSIF TG_TABLE_NAME = 'ledger_tree_hashes' THEN
            IF (NEW.ledger_id, NEW.hash_index) IS NOT DISTINCT FROM (OLD.ledger_id, OLD.hash_index) THEN
                RETURN NEW;
            END IF;
        END IF;
    END IF;
    RAISE EXCEPTION 'events are append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- The operator log of every ledger whose events were resealed: the old and
-- the new head and Merkle root, and the last signed checkpoint, which no
-- longer matches the rewritten tree and is dropped from ledger_checkpoints
-- (the next one is signed afresh). Anyone holding a checkpoint or a head
-- hash from before the reseal finds here why it no longer verifies. Only
-- the owner writes it; it is append-only, as the events are.
CREATE TABLE ledger_reseals (
    id                 bigint GENERATED ALWAYS AS IDENTITY,
    ledger_id          text COLLATE "C" NOT NULL,
    resealed_at        timestamptz NOT NULL DEFAULT now(),
    resealed_by        text NOT NULL DEFAULT session_user,
    first_sequence     bigint NOT NULL CHECK (first_sequence >= 1),
    events_changed     integer NOT NULL CHECK (events_changed >= 1),
    tree_size          bigint NOT NULL CHECK (tree_size >= first_sequence),
    old_head_hash      bytea NOT NULL CHECK (length(old_head_hash) = 32),
    new_head_hash      bytea NOT NULL CHECK (length(new_head_hash) = 32),
    old_root_hash      bytea NOT NULL CHECK (length(old_root_hash) = 32),
    new_root_hash      bytea NOT NULL CHECK (length(new_root_hash) = 32),
    dropped_checkpoint text,
    PRIMARY KEY (ledger_id, id)
);

CREATE TRIGGER ledger_reseals_append_only
    BEFORE UPDATE OR DELETE ON ledger_reseals
    FOR EACH ROW EXECUTE FUNCTION events_reject_change();
CREATE TRIGGER ledger_reseals_no_truncate
    BEFORE TRUNCATE ON ledger_reseals
    FOR EACH STATEMENT EXECUTE FUNCTION events_reject_change();

-- The service reads it (never writes it): a checkpoint it signed of a tree
-- that a recorded reseal replaced is not a sign of tampering.
GRANT SELECT ON ledger_reseals TO saas_api_app;
