-- Projects, API keys and idempotency records.

-- pg_trgm answers substring searches on project names from an index;
-- btree_gin lets that index lead with the organisation, like every other
-- tenant index. Both are trusted extensions: a database owner may create them.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gin;

CREATE TABLE projects (
    organisation_id       text COLLATE "C" NOT NULL,
    id                    text COLLATE "C" NOT NULL,
    name                  text NOT NULL,
    description           text,
    status                text NOT NULL CHECK (status IN ('active', 'archived')),
    created_by_user_id    text COLLATE "C",
    created_by_api_key_id text COLLATE "C",
    updated_by_user_id    text COLLATE "C",
    updated_by_api_key_id text COLLATE "C",
    deleted_at            timestamptz,
    version               bigint NOT NULL,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    PRIMARY KEY (organisation_id, id)
);
-- One index per sort order, each led by the organisation and ending in the
-- id tie-breaker, so a page (offset or keyset) is an index range scan.
-- Soft-deleted projects never appear in lists, so they are left out.
CREATE INDEX projects_created_idx ON projects (organisation_id, created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX projects_name_idx ON projects (organisation_id, lower(name), id) WHERE deleted_at IS NULL;
CREATE INDEX projects_status_idx ON projects (organisation_id, status, id) WHERE deleted_at IS NULL;
CREATE INDEX projects_status_created_idx ON projects (organisation_id, status, created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX projects_status_name_idx ON projects (organisation_id, status, lower(name), id) WHERE deleted_at IS NULL;
CREATE INDEX projects_name_trgm_idx ON projects USING gin (organisation_id, lower(name) gin_trgm_ops) WHERE deleted_at IS NULL;

-- Live projects per organisation and status, kept by the projection so that
-- a list's total costs one index lookup instead of counting a million rows.
-- Its rows change only under the organisation's ledger lock, so the counter
-- adds no contention of its own.
CREATE TABLE project_counts (
    organisation_id text COLLATE "C" NOT NULL,
    status          text NOT NULL,
    live            bigint NOT NULL CHECK (live >= 0),
    PRIMARY KEY (organisation_id, status)
);

CREATE TABLE api_keys (
    organisation_id    text COLLATE "C" NOT NULL,
    id                 text COLLATE "C" NOT NULL,
    name               text NOT NULL,
    key_prefix         text NOT NULL,
    created_by_user_id text COLLATE "C",
    revoked_at         timestamptz,
    version            bigint NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (organisation_id, id)
);

-- The secret part of an API key: its SHA-256, looked up on every request
-- that presents a key. Written with the api_key.created event, never
-- projected, never rebuilt.
CREATE TABLE api_key_secrets (
    key_hash        bytea PRIMARY KEY CHECK (length(key_hash) = 32),
    organisation_id text COLLATE "C" NOT NULL,
    api_key_id      text COLLATE "C" NOT NULL,
    UNIQUE (organisation_id, api_key_id)
);

-- Operational data, not a domain fact: when a key was last used. It lives
-- outside the projected tables so that a rebuild neither needs nor loses it.
CREATE TABLE api_key_usage (
    organisation_id text COLLATE "C" NOT NULL,
    api_key_id      text COLLATE "C" NOT NULL,
    last_used_at    timestamptz NOT NULL,
    PRIMARY KEY (organisation_id, api_key_id)
);

-- Stored results of requests sent with an Idempotency-Key. The primary key
-- is the scope; a concurrent request with the same scope blocks on it until
-- the first transaction ends, then replays its result.
CREATE TABLE idempotency_records (
    principal_type  text NOT NULL,
    principal_id    text COLLATE "C" NOT NULL,
    organisation_id text COLLATE "C" NOT NULL, -- '' for POST /orgs
    idempotency_key text NOT NULL,
    method          text NOT NULL,
    path            text NOT NULL,
    request_hash    bytea NOT NULL,
    status_code     integer NOT NULL,
    response_body   bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (principal_type, principal_id, organisation_id, idempotency_key, method, path)
);
CREATE INDEX idempotency_records_expires_idx ON idempotency_records (expires_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON projects, project_counts, api_keys TO saas_api_app;
GRANT SELECT, INSERT ON api_key_secrets TO saas_api_app;
GRANT SELECT, INSERT, UPDATE ON api_key_usage TO saas_api_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_records TO saas_api_app;
