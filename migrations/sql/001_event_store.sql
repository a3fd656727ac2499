-- The event store: ledgers and the append-only events table.

-- The application's role. The service connects as any login role that is a
-- member of it and switches to it with SET ROLE, so that even a service
-- started with the owner's credentials can only INSERT and SELECT events.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'saas_api_app') THEN
        CREATE ROLE saas_api_app NOLOGIN;
    END IF;
    -- The migrating role may SET ROLE to it (superusers always may).
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT saas_api_app TO %I', current_user);
    END IF;
END
$$;

-- One row per ledger: an organisation, or a user for account events. Writers
-- lock the row (SELECT ... FOR UPDATE) before appending, which serializes the
-- writes of one tenant and makes the sequence gapless in commit order.
CREATE TABLE ledgers (
    ledger_id     text COLLATE "C" PRIMARY KEY,
    ledger_type   text NOT NULL CHECK (ledger_type IN ('organisation', 'user')),
    last_sequence bigint NOT NULL DEFAULT 0 CHECK (last_sequence >= 0),
    last_hash     bytea NOT NULL DEFAULT decode(repeat('00', 32), 'hex') CHECK (length(last_hash) = 32),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- payload is json, not jsonb: json keeps the exact bytes the service hashed,
-- so the hash chain can be recomputed from the stored rows alone.
CREATE TABLE events (
    position         bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    event_id         text COLLATE "C" NOT NULL UNIQUE,
    ledger_id        text COLLATE "C" NOT NULL,
    ledger_type      text NOT NULL CHECK (ledger_type IN ('organisation', 'user')),
    sequence         bigint NOT NULL CHECK (sequence >= 1),
    stream_type      text NOT NULL,
    stream_id        text COLLATE "C" NOT NULL,
    stream_version   bigint NOT NULL CHECK (stream_version >= 1),
    event_type       text NOT NULL,
    schema_version   integer NOT NULL DEFAULT 1,
    actor_type       text NOT NULL CHECK (actor_type IN ('user', 'api_key', 'anonymous', 'system')),
    actor_user_id    text COLLATE "C",
    actor_api_key_id text COLLATE "C",
    request_id       text,
    occurred_at      timestamptz NOT NULL,
    payload          json NOT NULL,
    prev_hash        bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash             bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (ledger_id, sequence),
    UNIQUE (stream_type, stream_id, stream_version)
);

CREATE FUNCTION events_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_reject_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_reject_change();

GRANT SELECT, INSERT ON events TO saas_api_app;
-- tern created its version table before this migration ran; the service
-- reads it to report readiness.
GRANT SELECT ON public.schema_version TO saas_api_app;
GRANT SELECT, INSERT, UPDATE ON ledgers TO saas_api_app;

-- Read tables. They are projections of the events and are written only by
-- the projection code, inline in the command's transaction or by a rebuild.
-- version is the entity's stream version, served as its ETag.

CREATE TABLE users (
    id           text COLLATE "C" PRIMARY KEY,
    email        text NOT NULL,
    display_name text NOT NULL,
    is_active    boolean NOT NULL DEFAULT true,
    version      bigint NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE organisations (
    id         text COLLATE "C" PRIMARY KEY,
    name       text NOT NULL,
    slug       text NOT NULL,
    version    bigint NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX organisations_slug_key ON organisations (slug);

CREATE TABLE memberships (
    organisation_id text COLLATE "C" NOT NULL,
    id              text COLLATE "C" NOT NULL,
    user_id         text COLLATE "C" NOT NULL,
    role            text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    version         bigint NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (organisation_id, id)
);
CREATE UNIQUE INDEX memberships_organisation_user_key ON memberships (organisation_id, user_id);
CREATE INDEX memberships_user_idx ON memberships (user_id, organisation_id);

-- Secrets live outside the events, in small mutable tables written in the
-- same transaction as the event that introduces them. Rebuilds never touch
-- them.
CREATE TABLE user_credentials (
    user_id       text COLLATE "C" PRIMARY KEY,
    password_hash text NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE, DELETE ON users, organisations, memberships TO saas_api_app;
GRANT SELECT, INSERT, UPDATE ON user_credentials TO saas_api_app;
